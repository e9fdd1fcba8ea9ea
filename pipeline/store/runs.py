"""The runs table: `runs.parquet` beside the ledger, one row per run (schema.RUNS_SCHEMA),
written by the run that holds the ledger's lock (Ledger.append_run) and read by status, report,
review, export and --metrics-file. A row is built by runner.RunResult.to_runs_row only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.store.atomic import replace_atomic
from pipeline.store.schema import RUNS_SCHEMA, conform


def runs_path(ledger_path: str | Path) -> Path:
    return Path(ledger_path).with_name("runs.parquet")


def read_runs(ledger_path: str | Path) -> pl.DataFrame:
    """runs.parquet beside the ledger at `ledger_path` (empty if no run has ended yet)."""
    path = runs_path(ledger_path)
    if not path.exists():
        return pl.DataFrame(schema=RUNS_SCHEMA)
    return conform(pl.read_parquet(path), RUNS_SCHEMA)


def append_run(ledger_path: str | Path, run: dict[str, Any]) -> None:
    """Add one run's row (absent columns null): the whole small table is rewritten atomically."""
    row = pl.DataFrame([{name: run.get(name) for name in RUNS_SCHEMA}], schema=RUNS_SCHEMA, orient="row")
    replace_atomic(runs_path(ledger_path), pl.concat([read_runs(ledger_path), row]).write_parquet)
