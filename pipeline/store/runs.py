"""The runs table: `runs.parquet` beside the ledger, one row per run (schema.RUNS_SCHEMA),
written by the run that holds the ledger's lock (Ledger.append_run) and read by status, report,
review, export and --metrics-file. A row is built by runner.RunResult.to_runs_row only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.store.atomic import replace_atomic
from pipeline.store.faults import StorageFault, disk_fault
from pipeline.store.parts import write_parquet
from pipeline.store.schema import RUNS_SCHEMA, conform


class RunsCorrupt(StorageFault):
    """runs.parquet cannot be read: named, never taken for an empty history."""


def runs_path(ledger_path: str | Path) -> Path:
    return Path(ledger_path).with_name("runs.parquet")


def read_runs(ledger_path: str | Path) -> pl.DataFrame:
    """runs.parquet beside the ledger at `ledger_path` (empty if no run has ended yet)."""
    path = runs_path(ledger_path)
    try:
        return conform(pl.read_parquet(path), RUNS_SCHEMA)
    except FileNotFoundError:
        return pl.DataFrame(schema=RUNS_SCHEMA)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise RunsCorrupt(f"{path} cannot be read ({str(exc).splitlines()[0][:120]}); nothing was changed: "
                          "restore it from a backup (or move it aside to start a new runs table), then run again"
                          ) from None


def append_run(ledger_path: str | Path, run: dict[str, Any]) -> None:
    """Add one run's row (absent columns null): the whole small table is rewritten atomically."""
    path = runs_path(ledger_path)
    row = pl.DataFrame([{name: run.get(name) for name in RUNS_SCHEMA}], schema=RUNS_SCHEMA, orient="row")
    table = pl.concat([read_runs(ledger_path), row])
    try:
        replace_atomic(path, lambda out: write_parquet(table, out))
    except OSError as exc:
        raise disk_fault(exc, path) from None
