"""The runner's wiring, driven in-process against the real emulator over a socket: a small plan
runs to DOWNLOADED with one job and one submit per row, a stop before the first submit sends
nothing, and an interrupt stops the run with its message and exit 3.

Covers: pipeline/run/runner.py pipeline/run/submit.py pipeline/run/follow.py pipeline/run/fetch.py pipeline/run/intake.py pipeline/run/work.py
"""

from __future__ import annotations

import json
from pathlib import Path

from deltalake import DeltaTable

from pipeline.api.client import ApiClient, RequestGate
from pipeline.manifest.load import load_manifest
from pipeline.plan.reviewed import make_reviewed_plan
from pipeline.run.outcome import ExitCode
from pipeline.run.runlog import RunLog
from pipeline.run.runner import Runner, RunOptions
from pipeline.run.work import Run
from pipeline.store.ledger import Ledger, read_ledger
from pipeline.store.verdicts import read_verdicts
from tests.harness import TEST_KEY, jobs_per_key, prompts, write_manifest


async def run_plan(tmp: Path, emu, rows: int, before=None):
    """Plan `rows` prompts against a fresh ledger and run them; `before(runner)` is called first."""
    manifest = write_manifest(tmp / "batch.yaml", prompts(rows))
    ledger_path = tmp / "ledger.parquet"
    ledger = Ledger.open(ledger_path, run_id="test-run")
    plan = make_reviewed_plan(load_manifest(manifest), ledger, read_verdicts(ledger_path), retry_failed=False,
                              manifest=manifest)
    log = RunLog(tmp / "run.jsonl")
    options = RunOptions(out_dir=tmp, rpm=None, poll_min_interval=0.05, poll_max_interval=0.2,
                         ledger_path=ledger_path, job_timeout=None)
    async with ApiClient(emu.base_url, TEST_KEY, gate=RequestGate(None)) as client:
        runner = Runner(ledger, client, plan, options, log, progress_interval=60, progress_bars=False)
        client.should_stop = runner.control.stopped
        if before is not None:
            before(runner)
        result = await runner.run()
        runner.log_run_end()
    log.close()
    ledger.close()
    events = [json.loads(line) for line in (tmp / "run.jsonl").read_text().splitlines()]
    return runner, result, events


async def test_a_small_plan_runs_to_downloaded_with_one_job_per_row(emulator, tmp_path):
    emu = await emulator()
    runner, result, events = await run_plan(tmp_path, emu, 3)
    assert isinstance(runner, Run)  # the interface the steps name is the runner's
    assert result.exit_code == ExitCode.OK and result.stop_reason is None
    assert (result.rows_submitted, result.rows_finished, result.rows_failed, result.rows_unfinished) == (3, 3, 0, 0)
    rows = read_ledger(tmp_path / "ledger.parquet")
    assert set(rows["status"]) == {"DOWNLOADED"} and rows.height == 3
    assert all(Path(p).is_file() for p in rows["output_path"])
    assert all(len(jobs) == 1 for jobs in jobs_per_key(emu.stats()).values())
    kinds = [e["event"] for e in events]
    # One request path per row: one submit, one submitted, one download.
    assert (kinds.count("submit"), kinds.count("submitted"), kinds.count("download")) == (3, 3, 3)
    stats = events[-1]["ledger"]  # run_end: the table's commits and commit conflicts beside the journal's
    merges = [c for c in DeltaTable(str(tmp_path / "ledger.parquet")).history() if c["operation"] == "MERGE"]
    # counted before the close's last checkpoint, so at most the table's merges; a lone writer never conflicts
    assert events[-1]["event"] == "run_end" and stats["conflicts"] == 0 and stats["commits"] <= len(merges)
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    for key in rows["job_key"]:
        mine = [e["event"] for e in events if e.get("job_key") == key]
        assert mine.index("submit") < mine.index("submitted") < mine.index("download")
    assert runner.counters.downloaded == 3 and runner.counters.planned == 3


async def test_submits_stopped_before_the_run_send_nothing(emulator, tmp_path):
    emu = await emulator()
    runner, result, events = await run_plan(tmp_path, emu, 2, before=lambda r: r.control.stop_submitting("told to"))
    assert result.exit_code == ExitCode.STOPPED and result.stop_reason == "told to"
    assert emu.stats()["jobs"] == [] and result.rows_submitted == 0
    assert [e["reason"] for e in events if e["event"] == "stop_submitting"] == ["told to"]
    assert not any(e["event"] == "submit" for e in events)


async def test_an_interrupt_with_nothing_in_the_air_stops_at_once(emulator, tmp_path, capsys):
    emu = await emulator()
    runner, result, events = await run_plan(tmp_path, emu, 2, before=lambda r: r.control.interrupt("SIGINT"))
    assert "SIGINT: no new submits; saving and stopping" in capsys.readouterr().out
    assert runner.control.hard_stopped and runner.control.stopped()
    assert result.exit_code == ExitCode.STOPPED and result.stop_reason == "interrupted (SIGINT)"
    assert emu.stats()["jobs"] == []
