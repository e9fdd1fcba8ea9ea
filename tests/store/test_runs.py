"""The runs table beside the ledger: one row a run, appended atomically, read back in the layout
of today even when an earlier version wrote fewer columns.

Covers: pipeline/store/schema.py"""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

from pipeline.store.runs import append_run, read_runs, runs_path
from pipeline.store.schema import RUNS_SCHEMA

STARTED = datetime(2026, 11, 24, 1, 0, tzinfo=timezone.utc)


def test_runs_are_appended_in_order_absent_columns_null(tmp_path):
    ledger = tmp_path / "ledger.parquet"
    assert read_runs(ledger).schema == pl.Schema(RUNS_SCHEMA) and read_runs(ledger).height == 0
    append_run(ledger, {"run_id": "r1", "started_at": STARTED, "exit_code": 0})
    append_run(ledger, {"run_id": "r2", "exit_code": 3})
    runs = read_runs(ledger)
    assert runs["run_id"].to_list() == ["r1", "r2"] and runs["exit_code"].to_list() == [0, 3]
    assert runs["started_at"].to_list() == [STARTED, None]
    assert [p.name for p in tmp_path.iterdir()] == ["runs.parquet"]  # no temporary left


def test_a_table_from_an_earlier_version_reads_in_today_s_layout(tmp_path):
    ledger = tmp_path / "ledger.parquet"
    pl.DataFrame({"exit_code": [0], "run_id": ["old"]}).write_parquet(runs_path(ledger))
    runs = read_runs(ledger)
    assert runs.columns == list(RUNS_SCHEMA) and runs.row(0, named=True)["run_id"] == "old"
    assert runs.row(0, named=True)["stop_reason"] is None
