"""pipeline/run/outcome.py: the exit codes' meanings, the tally's reasons, the stop line and the
runs-table row, as tables."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.plan.actions import SKIP
from pipeline.run.outcome import EXIT_MEANINGS, ExitCode, RunResult, Tally, exit_meaning, stop_reason
from pipeline.run.progress import Counters
from pipeline.store.schema import RUNS_SCHEMA

T0 = datetime(2026, 12, 2, tzinfo=timezone.utc)


def test_every_exit_code_has_a_meaning():
    assert set(EXIT_MEANINGS) == set(ExitCode) and [int(c) for c in ExitCode] == [0, 1, 2, 3, 4]
    assert exit_meaning(4) == "the API could not be reached: nothing was submitted"
    assert exit_meaning(3) == EXIT_MEANINGS[ExitCode.STOPPED] and exit_meaning(None) is None


STOPS = [  # (stopped because, internal error, unfinished rows) -> the line
    ("budget", "internal error in task: X", 2, "budget"),
    (None, "internal error in task: X", 2, "internal error in task: X"),
    (None, None, 2, "2 rows unfinished"),
    (None, None, 0, None),
]


@pytest.mark.parametrize("because, internal, unfinished, line", STOPS)
def test_the_stop_line(because, internal, unfinished, line):
    assert stop_reason(because, internal, unfinished) == line


def test_failures_keep_this_runs_reason_else_the_ledgers():
    tally = Tally(failures={"b": "moderated"})
    assert tally.failure_reasons({"c", "b", "a"}, {"a": "old reason", "b": "ledger says"}) == [
        ("a", "old reason"), ("b", "moderated"), ("c", "")]


def test_unfinished_rows_are_listed_with_a_reason_only_when_this_run_left_them():
    tally = Tally(unfinished={"b": "timed out", "z": "not unfinished any more"})
    assert tally.unfinished_reasons({"a", "b"}) == [("b", "timed out")]


def test_a_runs_row_has_every_column_of_the_runs_table():
    counters = Counters(submitted=4)
    result = RunResult(run_id="r1", exit_code=ExitCode.FAILED_ROWS, stop_reason=None, counters=counters,
                       credits_estimated=60, credits_charged=45, rows_finished=3, rows_failed=1, rows_expired=0,
                       rows_unfinished=0, requests=20, rate_limited=1, started_at=T0, ended_at=T0)
    plan = SimpleNamespace(manifest=Path("m.yaml"), rows=SimpleNamespace(height=6), counts={SKIP: 2})
    row = result.to_runs_row(plan, emulated=True, log_path=Path("logs/r1.jsonl"))
    assert list(row) == list(RUNS_SCHEMA)
    assert (row["rows_submitted"], row["rows_skipped"], row["exit_code"], row["account_user_id"], row["log_path"]) == (
        4, 2, 1, None, "logs/r1.jsonl")
