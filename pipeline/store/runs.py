"""The runs table: one row per run (schema.RUNS_SCHEMA), written by the run that holds the ledger
(Ledger.append_run) and read by status, report, review, export and --metrics-file. A row is built
by runner.RunResult.to_runs_row only.

Where: `runs.parquet` beside a local ledger; for a remote ledger, a Delta table in the store at
`<ledger>/_videobatch/runs`, so every machine's runs are in one table (appends never conflict; a
name starting with `_` is never taken for the ledger's data, nor vacuumed with it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError

from pipeline.store.atomic import replace_atomic
from pipeline.store.faults import StorageFault, disk_fault, table_fault
from pipeline.store.parts import write_parquet
from pipeline.store.schema import RUNS_SCHEMA, conform
from pipeline.store.state import where_of


class RunsCorrupt(StorageFault):
    """runs.parquet cannot be read: named, never taken for an empty history."""


def runs_path(ledger_path: str | Path) -> Path:
    return Path(ledger_path).with_name("runs.parquet")


def _remote_runs(ledger_path: str | Path) -> str | None:
    where = where_of(Path(ledger_path))
    return where.child("_videobatch").child("runs").url if where.remote else None


def read_runs(ledger_path: str | Path) -> pl.DataFrame:
    """The runs table of the ledger at `ledger_path` (empty if no run has ended yet)."""
    remote = _remote_runs(ledger_path)
    if remote is not None:
        try:
            return conform(pl.read_delta(remote), RUNS_SCHEMA) if DeltaTable.is_deltatable(remote) else \
                pl.DataFrame(schema=RUNS_SCHEMA)
        except (pl.exceptions.PolarsError, DeltaError, OSError) as exc:
            raise RunsCorrupt(f"the runs table {remote} cannot be read ({str(exc).splitlines()[0][:120]}); nothing "
                              "was changed: check the store and its credentials in the environment, then run again"
                              ) from None
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
    row = pl.DataFrame([{name: run.get(name) for name in RUNS_SCHEMA}], schema=RUNS_SCHEMA, orient="row")
    remote = _remote_runs(ledger_path)
    if remote is not None:
        try:
            write_deltalake(remote, row, mode="append")  # the Arrow C stream: no pyarrow at runtime
        except (DeltaError, OSError) as exc:
            raise table_fault(exc, remote) from None
        return
    path = runs_path(ledger_path)
    table = pl.concat([read_runs(ledger_path), row])
    try:
        replace_atomic(path, lambda out: write_parquet(table, out))
    except OSError as exc:
        raise disk_fault(exc, path) from None
