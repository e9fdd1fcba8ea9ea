"""The text `videobatch plan` and `videobatch run` print for people, from a real plan and summaries.

The commands print it through tests/scenarios/ (test_run.py reads the plan's and the run's lines);
here are the rules of the text alone: what is listed, what is cut, and which lines only some
plans and runs have.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipeline.batch import plan_batch
from pipeline.reports.console import format_balance, format_plan, format_start, format_summary
from pipeline.reports.summary import BatchSummary
from pipeline.run.outcome import EXIT_BAD_INPUT, EXIT_FAILED_ROWS, EXIT_OK, EXIT_STOPPED, EXIT_UNREACHABLE
from tests.harness import prompts, write_manifest

NOW = datetime(2026, 11, 24, 1, 2, 3, tzinfo=timezone.utc)


@pytest.fixture
def plan_of(tmp_path):
    def make(n: int):
        manifest = write_manifest(tmp_path / "m.yaml", prompts(n))
        summary = plan_batch(manifest, ledger=tmp_path / "ledger.parquet", check_balance=False)
        assert summary.plan is not None, summary.error
        return summary.plan
    return make


def test_a_plan_lists_its_first_40_rows_and_what_a_run_would_do(plan_of, tmp_path):
    plan = plan_of(45)
    lines = format_plan(plan, tmp_path / "ledger.parquet", show_all=False).splitlines()
    assert lines[0] == f"plan for {plan.manifest} (ledger {tmp_path / 'ledger.parquet'})"
    assert lines[1].split() == ["row", "job_key", "dur", "aspect", "credits", "action"]
    rows = lines[2:42]
    assert [line.split()[0] for line in rows] == [str(n) for n in range(1, 41)]
    assert all(line.rstrip().endswith("submit") for line in rows), rows
    assert lines[42] == "  ... 5 more rows (--all lists them)"
    assert f"  jobs in manifest: 45, {plan.credits_total} credits for all of them" in lines
    assert "  to submit: 45 new, 0 resumed with their original key, 0 retried, 0 new versions of edited rows" in lines
    assert lines[-1] == f"  a run would spend at most {plan.credits_to_spend} credits"
    assert not any("review" in line or "earlier versions" in line or "note:" in line for line in lines)


def test_all_lists_every_row(plan_of, tmp_path):
    lines = format_plan(plan_of(45), tmp_path / "ledger.parquet", show_all=True).splitlines()
    assert sum(line.rstrip().endswith("submit") for line in lines) == 45
    assert not any("more rows" in line for line in lines)


@pytest.mark.parametrize("balance, to_spend, line", [
    (500, 400, "  balance: 500 credits (covers the plan)"),
    (400, 400, "  balance: 400 credits (covers the plan)"),
    (100, 400, "  balance: 100 credits (SHORT by 300: top up, or run with --max-credits 100)"),
])
def test_the_balance_against_the_plan(balance, to_spend, line):
    assert format_balance(balance, to_spend) == line


def test_a_run_announces_its_plan(plan_of):
    plan = plan_of(3)
    assert format_start("r1", plan, "emulator") == (
        f"run r1 on emulator: 3 jobs, 0 already done, up to {plan.credits_to_spend} credits to spend")


def _summary(exit_code: int, *, failed: int = 0, unfinished: int = 0, expired: int = 0,
             stop_reason: str | None = None) -> BatchSummary:
    return BatchSummary(
        command="run", manifest="m.yaml", exit_code=exit_code, started_at=NOW, ended_at=NOW, run_id="r1",
        stop_reason=stop_reason,
        rows={"downloaded": 3, "skipped": 1, "failed": failed, "unfinished": unfinished, "expired": expired},
        credits={"estimated": 60, "charged": 40}, requests={"total": 12, "rate_limited": 2},
        failed=[{"job_key": f"f{n}", "error": None if n == 0 else f"boom {n}"} for n in range(failed)],
        unfinished=[{"job_key": f"u{n}", "reason": "still generating"} for n in range(unfinished)],
        ledger={"credits": {"charged": 400}},
        paths={"ledger": "out/ledger.parquet", "log": "out/logs/r1.jsonl", "report": "out/report.html",
               "videos": "out/videos"})


def test_a_run_that_finished_says_where_everything_is():
    text = format_summary(_summary(EXIT_OK))
    assert text.splitlines() == [
        "",
        "run r1 ended with exit code 0",
        "  rows: 3 downloaded now, 1 skipped (already done), 0 failed or rejected, 0 unfinished",
        "  credits: 60 estimated and 40 charged this run; 400 charged in this ledger to date",
        "  requests: 12 (2 rate-limited)",
        "  videos: out/videos",
        "  ledger: out/ledger.parquet   log: out/logs/r1.jsonl",
        "  report: videobatch report --ledger out/ledger.parquet  (writes out/report.html)",
    ]


def test_failures_and_unfinished_rows_are_listed_up_to_20_each():
    lines = format_summary(_summary(EXIT_FAILED_ROWS, failed=25, unfinished=21, expired=2)).splitlines()
    assert "  2 results expired before download: run again with --retry-failed to generate them again" in lines
    failed = [line for line in lines if line.startswith("  FAILED ")]
    assert failed[:2] == ["  FAILED f0: ", "  FAILED f1: boom 1"] and len(failed) == 20
    assert "  ... 5 more failures: videobatch status --ledger out/ledger.parquet" in lines
    assert len([line for line in lines if line.startswith("  UNFINISHED ")]) == 20
    assert "  ... 1 more unfinished rows: --summary-json lists them all" in lines
    assert not any("stopped early" in line for line in lines)


def test_a_run_stopped_early_says_why_and_lists_what_is_left():
    lines = format_summary(_summary(EXIT_STOPPED, unfinished=2, stop_reason="the deadline 07:00")).splitlines()
    assert lines[1] == "run r1 ended with exit code 3: the deadline 07:00"
    assert len([line for line in lines if line.startswith("  UNFINISHED ")]) == 2
    # The next command ("the same command again") is next_step.py's, printed after this text.
    assert not any(line.startswith("next: ") or "run the same command again" in line for line in lines)


@pytest.mark.parametrize("code", [EXIT_BAD_INPUT, EXIT_UNREACHABLE])
def test_a_run_that_submitted_nothing_says_its_one_reason_once_not_per_row(code):
    lines = format_summary(_summary(code, unfinished=3, stop_reason="could not connect")).splitlines()
    assert lines[1] == f"run r1 ended with exit code {code}: could not connect"
    assert not [line for line in lines if line.startswith("  UNFINISHED ")]
