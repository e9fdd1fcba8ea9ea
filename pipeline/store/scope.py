"""Which ledger rows a reader looks at: `--run ID|last|all` and `--manifest PATH`.

Shared by `report`, `review` and `export`, so "the rows of the last run" means one thing. A row
belongs to a run when that run last changed it (the ledger's `run_id`). "The last run" is the
latest run that had work to do: a no-op rerun (every row already downloaded) changes no row, and
the morning's page should still show the night's clips. The result is a Polars expression, so it
filters an eager frame or a lazy scan alike.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

LAST = "last"
ALL = "all"


class ScopeError(ValueError):
    """A --run or --manifest that names nothing in this ledger."""


def resolve_run(runs: pl.DataFrame, run: str) -> str | None:
    """The run id that `run` names (None for `all`); ScopeError when the runs table lacks it."""
    if run == ALL:
        return None
    if run == LAST:
        if not runs.height:
            raise ScopeError("no run is recorded in this ledger yet: use --run all, or run a batch first")
        return last_run_id(runs)
    if run not in set(runs["run_id"].to_list()):
        raise ScopeError(f"no run {run!r} in this ledger: `videobatch status` names the last one; "
                         "or use --run last or --run all")
    return run


def resolve_manifest(runs: pl.DataFrame, manifest: Path | str | None) -> str | None:
    """The manifest path as the ledger records it (None: every manifest); ScopeError when no run
    recorded in this ledger ran it, so a mistyped path is said, not shown as an empty page.
    A ledger without a runs table cannot tell, and is not refused."""
    if manifest is None:
        return None
    path = str(Path(manifest).resolve())
    if runs.height and path not in set(runs["manifest"].to_list()):
        known = sorted(set(runs["manifest"].drop_nulls().to_list()))
        raise ScopeError(f"no run of {path} in this ledger (its runs ran {', '.join(known)}): "
                         "check the path, or leave --manifest out")
    return path


def last_run_id(runs: pl.DataFrame) -> str:
    """The latest run that had rows to work on (the latest run of all if none had)."""
    ordered = runs.sort("started_at")
    worked = ordered.filter(pl.col("rows_planned").fill_null(0) > pl.col("rows_skipped").fill_null(0))
    return (worked if worked.height else ordered)["run_id"][-1]


def rows_in_scope(ledger, condition: pl.Expr) -> pl.DataFrame:
    """The whole current rows `condition` keeps, from a `store.ledger.Ledger`. The condition is
    judged on a scan of the columns it names (job_key, run_id, manifest) and only the rows it
    keeps are read whole, so a year of history is never held for one night's clips."""
    keys = ledger.scan(["run_id", "manifest"]).filter(condition).select("job_key").collect()
    return ledger.rows(keys["job_key"])


def scope_filter(runs: pl.DataFrame, run: str = LAST, manifest: Path | str | None = None) -> pl.Expr:
    """A filter over ledger rows for `--run` (an id, `last` or `all`) and an optional `--manifest`."""
    condition = pl.lit(True)
    run_id = resolve_run(runs, run)
    if run_id is not None:
        condition = condition & (pl.col("run_id") == run_id)
    manifest = resolve_manifest(runs, manifest)
    if manifest is not None:
        condition = condition & (pl.col("manifest") == manifest)
    return condition
