"""The books by model: `videobatch status` (text and --json) and a run's summary break jobs,
outcomes and credits down by model, estimates of catalog-priced models read "up to", and a
grok-only ledger prints as it did before models.

A real grok batch against the emulator writes the ledger and its runs table; rows of other models
are then recorded into the same ledger, as a run of them leaves them (the emulator's catalog
prices them on branch h21-emu; the books read only the ledger's columns).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from pipeline.batch import plan_batch
from pipeline.models import DEFAULT_MODEL
from pipeline.reports.by_model import model_books, model_lines
from pipeline.reports.console import format_summary
from pipeline.reports.summary import BatchSummary
from pipeline.store.ledger import Ledger
from tests.harness import cli_env, failed_then_finished, ledger, prompts, run_args, run_cli, write_manifest
from tests.reports.test_summary import assert_summary

OFFLINE = cli_env("http://127.0.0.1:9")  # status reads files only

# Rows of other models as runs leave them: (key, model, status, duration, estimated, charged).
OTHERS = [
    ("keeper-kling", "kling-3.0", "DOWNLOADED", 5, 60, 42),
    ("keeper-kling-2", "kling-3.0", "SUBMITTED", 10, 120, None),
    ("beam-veo", "veo-3.1-fast", "DOWNLOADED", 8, 96, 80),
    ("beam-veo-2", "veo-3.1-fast", "FAILED", 8, 96, 0),
    ("stairs-hailuo", "hailuo-02", "PENDING", None, 50, None),
]


def status(tmp_path: Path, *more: str):
    done = run_cli("status", "--ledger", str(tmp_path / "ledger.parquet"), *more, env=OFFLINE, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def grok_batch(emulator_thread, tmp_path):
    """Two real runs: 2 grok rows FAILED, 4 DOWNLOADED."""
    for done in failed_then_finished(emulator_thread(), tmp_path):
        assert done.returncode == 1, done.stdout + done.stderr
    return ledger(tmp_path)


def test_a_grok_only_ledger_prints_as_before_models(grok_batch, tmp_path):
    text = status(tmp_path)
    assert "by model" not in text and "up to" not in text
    books = json.loads(status(tmp_path, "--json"))["by_model"]
    assert list(books) == [DEFAULT_MODEL]
    grok = books[DEFAULT_MODEL]
    assert (grok["jobs"], grok["downloaded"], grok["failed"], grok["in_flight"], grok["pending"]) == (6, 4, 2, 0, 0)
    assert grok["credits"] == {"estimated": grok_batch["credits_estimated"].sum(),
                               "charged": grok_batch["credits_charged"].sum()}
    assert grok["priced_by"] == "table"


def test_status_breaks_a_mixed_ledger_down_by_model(grok_batch, tmp_path):
    with Ledger.open(tmp_path / "ledger.parquet", run_id="later") as book:
        for key, model, state, duration, estimated, charged in OTHERS:
            book.record(key, model=model, status=state, duration=duration, credits_estimated=estimated,
                        credits_charged=charged, attempts=1, prompt=key, manifest=str(tmp_path / "m2.yaml"))
        book.record("legacy", model=None, status="DOWNLOADED", duration=6, credits_estimated=10,
                    credits_charged=10, attempts=1, prompt="written before models")
    rows = ledger(tmp_path)
    summary = json.loads(status(tmp_path, "--json"))
    books = summary["by_model"]
    assert list(books) == sorted(["grok-imagine-video", "kling-3.0", "veo-3.1-fast", "hailuo-02"])
    assert sum(b["jobs"] for b in books.values()) == summary["jobs"] == rows.height == 12
    assert sum(b["credits"]["charged"] for b in books.values()) == summary["credits"]["charged"]
    assert sum(b["credits"]["estimated"] for b in books.values()) == summary["credits"]["estimated"]
    # The row written before models had names is grok's, as its key says.
    grok = rows.filter(pl.col("model").fill_null(DEFAULT_MODEL) == DEFAULT_MODEL)
    assert books[DEFAULT_MODEL]["jobs"] == grok.height == 7
    assert books[DEFAULT_MODEL]["credits"]["charged"] == grok["credits_charged"].sum()
    assert books["kling-3.0"] == {"jobs": 2, "downloaded": 1, "failed": 0, "in_flight": 1, "pending": 0,
                                  "credits": {"estimated": 180, "charged": 42}, "priced_by": "catalog"}
    assert books["veo-3.1-fast"]["failed"] == 1 and books["veo-3.1-fast"]["credits"]["charged"] == 80
    assert books["hailuo-02"]["pending"] == 1
    assert summary["credits"]["by_duration"]["none"] == {"jobs": 1, "estimated": 50, "charged": 0}

    lines = status(tmp_path).splitlines()
    assert "  no duration: 1 jobs, 0 charged, 50 estimated" in lines
    start = lines.index('by model (charged beside estimated; "up to": the catalog\'s upper bound):')
    assert lines[start + 1:start + 5] == [
        f"  grok-imagine-video  7 jobs (5 downloaded, 2 failed): {grok['credits_charged'].sum()} charged, "
        f"{grok['credits_estimated'].sum()} estimated",
        "  hailuo-02           1 jobs (1 pending): 0 charged, up to 50 estimated",
        "  kling-3.0           2 jobs (1 downloaded, 1 in flight): 42 charged, up to 180 estimated",
        "  veo-3.1-fast        2 jobs (1 downloaded, 1 failed): 80 charged, up to 192 estimated",
    ]


def test_the_run_summary_and_the_plan_break_the_manifest_down_by_model(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    out = tmp_path / "summary.json"
    done = run_cli(*run_args(manifest, tmp_path, "--summary-json", str(out)), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "by model" not in done.stdout  # grok only: the run's end prints as before
    document = json.loads(out.read_text())
    assert_summary(document)
    rows = ledger(tmp_path)
    expected = {"jobs": 3, "downloaded": 3, "failed": 0, "in_flight": 0, "pending": 0,
                "credits": {"estimated": rows["credits_estimated"].sum(), "charged": rows["credits_charged"].sum()},
                "priced_by": "table"}
    assert document["by_model"] == {DEFAULT_MODEL: expected}
    assert document["ledger"]["by_model"] == {DEFAULT_MODEL: expected}
    assert document["credits"]["charged"] == expected["credits"]["charged"]

    planned = plan_batch(manifest, ledger=tmp_path / "ledger.parquet", check_balance=False).to_dict()
    assert_summary(planned)
    assert planned["by_model"] == {DEFAULT_MODEL: expected}


MIXED = [  # (model, its own fields): each row valid for its model's schema
    ("grok-imagine-video", {"duration": 6, "aspect_ratio": "9:16"}),
    ("veo-3.1-fast", {"duration": 8, "aspect_ratio": "16:9", "params": {"resolution": "1080p"}}),
    ("kling-3.0", {"duration": 5, "params": {"mode": "pro", "negative_prompt": "blurry"}}),
    ("hailuo-02", {"duration": 6}),
]


def test_a_mixed_run_gives_each_models_books_as_the_api_charged_them(emulator_thread, tmp_path):
    emu = emulator_thread()
    jobs = [{"id": f"{model}-{i}", "prompt": f"take {i}: a lighthouse at dusk", "model": model, **fields}
            for model, fields in MIXED for i in range(2)]
    manifest = write_manifest(tmp_path / "m.yaml", jobs)
    out = tmp_path / "summary.json"
    done = run_cli(*run_args(manifest, tmp_path, "--summary-json", str(out)), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(out.read_text())
    assert_summary(document)
    stats, rows = emu.stats(), ledger(tmp_path)
    assert len(stats["jobs"]) == rows.height == len(jobs)  # one paid job per wanted row
    assert rows["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"]
    books = document["by_model"]
    assert list(books) == sorted(model for model, _ in MIXED)
    for model, _ in MIXED:
        mine = rows.filter(pl.col("model") == model)
        assert books[model] == {
            "jobs": 2, "downloaded": 2, "failed": 0, "in_flight": 0, "pending": 0,
            "credits": {"estimated": mine["credits_estimated"].sum(), "charged": stats["credits_by_model"][model]},
            "priced_by": "table" if model == DEFAULT_MODEL else "catalog"}
        assert books[model]["credits"]["charged"] <= books[model]["credits"]["estimated"]  # an upper bound holds
    assert document["ledger"]["by_model"] == books == json.loads(status(tmp_path, "--json"))["by_model"]
    for text in (done.stdout, status(tmp_path)):
        kling = books["kling-3.0"]["credits"]
        assert f"kling-3.0           2 jobs (2 downloaded): {kling['charged']} charged, up to {kling['estimated']} estimated" \
            in text, text


def test_model_lines_say_up_to_only_for_catalog_prices():
    frame = pl.DataFrame({"model": ["grok-imagine-video", "sora-2", "no-such-model"],
                          "status": ["DOWNLOADED", "PROCESSING", "REJECTED"],
                          "credits_estimated": [10, 40, None], "credits_charged": [10, None, None]})
    books = model_books(frame)
    assert [b["priced_by"] for b in books.values()] == ["table", "catalog", "catalog"]
    assert model_lines(books, "") == [
        "grok-imagine-video  1 jobs (1 downloaded): 10 charged, 10 estimated",
        "no-such-model       1 jobs (1 failed): 0 charged, up to 0 estimated",
        "sora-2              1 jobs (1 in flight): 0 charged, up to 40 estimated",
    ]


def test_a_mixed_run_end_lists_its_models_and_a_grok_run_does_not():
    now = datetime(2026, 12, 2, tzinfo=timezone.utc)
    frame = pl.DataFrame({"model": ["grok-imagine-video", "kling-3.0"], "status": ["DOWNLOADED", "DOWNLOADED"],
                          "credits_estimated": [10, 60], "credits_charged": [10, 42]})

    def end(books):
        return format_summary(BatchSummary(
            command="run", manifest="m.yaml", exit_code=0, started_at=now, ended_at=now, run_id="r1",
            rows={"downloaded": 2, "skipped": 0, "failed": 0, "unfinished": 0, "expired": 0},
            credits={"estimated": 70, "charged": 52}, by_model=books, requests={"total": 8, "rate_limited": 0},
            ledger={"credits": {"charged": 52}}, paths={"ledger": "l", "log": "g", "report": "r", "videos": "v"},
        )).splitlines()

    mixed = end(model_books(frame))
    at = mixed.index('  by model (charged beside estimated; "up to": the catalog\'s upper bound):')
    assert mixed[at + 1:at + 3] == ["    grok-imagine-video  1 jobs (1 downloaded): 10 charged, 10 estimated",
                                    "    kling-3.0           1 jobs (1 downloaded): 42 charged, up to 60 estimated"]
    assert mixed[at - 1].startswith("  credits: 70 estimated and 52 charged this run")
    assert not any("by model" in line for line in end(model_books(frame.head(1))))
