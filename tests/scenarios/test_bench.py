"""`make bench` at toy sizes: the benchmark runs end to end and its counts hold together.

Figures of speed are the benchmark's business, not a test's; what is checked here are counts that
must be right at any size (every job made once, nothing sent on a rerun of finished work, bulk
tracking cheaper in requests than per-job polling).

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/runner.py pipeline/plan/actions.py benchmarks/models_section.py
benchmarks/layout_section.py benchmarks/writers_section.py
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.history import ROWS_PER_NIGHT
from tests.harness import REPO


@pytest.mark.slow
def test_quick_bench_runs_and_its_counts_hold(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    tracking, overhead, resume = results["tracking"], results["overhead"], results["resume"]
    jobs = tracking["jobs"]
    assert tracking["ours"]["jobs_created"] == jobs and tracking["sdk"]["jobs_created"] == jobs
    assert tracking["ours"]["rate_limited"] == 0  # --rpm equal to the emulator's limit
    assert tracking["ours"]["requests"] < tracking["sdk"]["requests"]
    assert tracking["ours"]["requests_by_route"].get("GET /v2/jobs", 0) > 0  # tracked by the list
    assert overhead["jobs_created"] == overhead["jobs"]
    assert overhead["journal_fsyncs"] < overhead["journal_records"]  # group commit shares fsyncs
    assert resume["csv"]["api_requests"] == 0 and resume["yaml"]["api_requests"] == 0
    history = results["history"]
    assert history["history"]["noop"]["api_requests"] == 0 == history["empty"]["noop"]["api_requests"]
    assert history["history"]["run"]["ledger"]["records"] > 0  # the 10-job run wrote to the ledger
    run_ledger = history["history"]["run"]["ledger"]  # run_end's ledger stats carry the table's
    assert {"commits", "conflicts"} <= set(run_ledger) and run_ledger["conflicts"] == 0  # a lone writer
    assert set(history["ratio"]) == {"run", "noop", "plan", "status", "report", "export", "review"}
    assert history["history"]["review"]["clips"] == history["run_jobs"]  # the last run's clips, not the history
    assert "requests per job" in done.stdout and str(out) in done.stdout
    assert f"ledger with {history['rows']} rows of history" in done.stdout
    layout = results["layout"]["by_layout"]  # a checkpoint's MERGE of 20 rows, by table layout
    for figures in layout.values():
        assert figures["rows_updated"] == results["layout"]["changed"] and figures["files_removed"] >= 1
    assert layout["night, batch"]["rows_copied"] + layout["night, batch"]["rows_updated"] == ROWS_PER_NIGHT
    assert layout["none"]["rows_copied"] + layout["none"]["rows_updated"] == results["layout"]["rows"]  # all of it
    assert "l. MERGE of 20 changed rows into tonight's partition" in done.stdout
    writers = results["writers"]  # two runs of two manifests into one ledger on S3 at once
    for side, wanted in ((writers["two"], ["alpha.csv", "beta.csv"]), (writers["one"], ["both.csv"])):
        assert side["rows"] == side["keys"] == side["downloaded"] == 2 * writers["jobs"]  # one row per job
        assert side["ledger_credits"] == side["server_credits"] > 0 and side["batches"] == wanted
    assert writers["two"]["conflicts"] == 0  # two manifests' partitions never conflict
    assert len(writers["two"]["commits_by_writer"]) == 2 and min(writers["two"]["commits_by_writer"]) >= 1
    assert "w. two writers" in done.stdout
    unfiltered = tracking["ours_unfiltered"]
    assert unfiltered["jobs_created"] == jobs and unfiltered["requests_per_job"] > 0
    for name in ("stuck", "all"):  # the quick run's dialects: the books balance under each
        figures = results["dialects"][name]
        assert figures["ledger_credits"] == figures["server_credits"] and figures["cdn_key_leaks"] == 0
        assert figures["exit_code"] == 3  # a stuck job is left in flight, named, with exit 3
    review = results["review"]
    if "skipped" not in review:  # a machine without Chromium says so in the table instead
        for visit in ("cold", "warm"):  # prompts of four takes side by side: the selected box's players
            assert review["grouped"][visit]["videos_in_page"] == review["grouped"]["takes"] == 4
        for visit in ("cold", "warm"):  # paged: a first chunk of cards, one <video> (the selected card's)
            figures = review["ours"][visit]
            assert figures["cards_in_page"] < review["clips"] and figures["videos_in_page"] == 1
            assert figures["ready_s"] <= figures["usable_s"]
    assert f"r. review page, {review['clips']} clips in headless Chromium" in done.stdout
    models = results["models"]  # the mixed-model batch: every row made once, the books per model balance
    mixed, grok = models["mixed"], models["grok_only"]
    assert mixed["jobs"] == grok["jobs"] == models["models"] * models["prompts"]
    assert mixed["jobs_created"] == mixed["jobs"] and grok["jobs_created"] == grok["jobs"]
    assert len(mixed["by_model"]) == models["models"] and list(grok["by_model"]) == ["grok-imagine-video"]
    for figures in mixed["by_model"].values():
        assert figures["charged"] == figures["server_charged"] and 0 < figures["charged"] <= figures["estimated"]
        assert figures["downloaded"] == figures["jobs"] == models["prompts"]
    assert mixed["requests_by_route"]["GET /v2/models"] == 1  # the catalog, read once
    assert f"m. mixed-model batch, {models['models']} models x {models['prompts']} prompts" in done.stdout
