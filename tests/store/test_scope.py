"""`--run ID|last|all` and `--manifest PATH` as one filter over ledger rows: "the last run" is
the latest that had work to do, and a run or manifest the ledger never saw is refused, said."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from pipeline.store.ledger import Ledger
from pipeline.store.scope import ALL, LAST, ScopeError, last_run_id, resolve_run, rows_in_scope, scope_filter


def runs(tmp_path: Path) -> pl.DataFrame:
    manifest = str((tmp_path / "night.jsonl").resolve())
    return pl.DataFrame({
        "run_id": ["night", "rerun"],
        "started_at": [datetime(2026, 11, 24, 1, tzinfo=timezone.utc), datetime(2026, 11, 24, 7, tzinfo=timezone.utc)],
        "rows_planned": [2, 2], "rows_skipped": [0, 2],  # the rerun found every row done
        "manifest": [manifest, manifest],
    })


def test_the_last_run_is_the_latest_that_had_work_and_all_is_no_filter(tmp_path):
    table = runs(tmp_path)
    assert last_run_id(table) == "night" and resolve_run(table, LAST) == "night"
    assert resolve_run(table, ALL) is None and resolve_run(table, "rerun") == "rerun"
    assert last_run_id(table.filter(pl.col("run_id") == "rerun")) == "rerun"  # none had work: the latest


@pytest.mark.parametrize("run, manifest, message", [
    ("nope", None, "no run 'nope' in this ledger"),
    (ALL, "other.jsonl", "no run of .*other.jsonl in this ledger"),
])
def test_a_run_or_manifest_the_ledger_never_saw_is_refused(tmp_path, run, manifest, message):
    with pytest.raises(ScopeError, match=message):
        scope_filter(runs(tmp_path), run, manifest and tmp_path / manifest)
    with pytest.raises(ScopeError, match="no run is recorded in this ledger yet"):
        resolve_run(runs(tmp_path).clear(), LAST)


def test_rows_in_scope_keeps_the_rows_of_the_run_and_manifest(tmp_path):
    table = runs(tmp_path)
    with Ledger.open(tmp_path / "ledger.parquet", run_id="night") as ledger:
        ledger.record("koi", status="DOWNLOADED", manifest=table["manifest"][0])
        ledger.record("carp", status="DOWNLOADED", manifest=table["manifest"][0], run_id="earlier")
        scoped = rows_in_scope(ledger, scope_filter(table, LAST, tmp_path / "night.jsonl"))
        assert scoped["job_key"].to_list() == ["koi"]
        assert sorted(rows_in_scope(ledger, scope_filter(table, ALL))["job_key"]) == ["carp", "koi"]
