"""What a ledger says at a glance: counts, credits, the last run and what failed. Pure: frames in, dict out.

Its words are the run summary's (pipeline/reports/summary.py): the ledger's figures at the top level are
a summary's `ledger`, and `last_run` carries a summary's `exit_meaning`, `rows` and `credits`
beside the runs table's own columns.

The ledger comes in lazily (Ledger.scan()); its rows are aggregated where they stream, and only
the FAILED and REJECTED rows are collected, six columns of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from pipeline.store.archive import is_archived_col
from pipeline.store.verdicts import review_counts
from pipeline.store.schema import FAILED, REJECTED, STATUSES
from pipeline.reports.by_model import model_books, model_lines, only_grok
from pipeline.reports.summary import SUMMARY_VERSION
from pipeline.run.outcome import exit_meaning

# What status and the report read of each row: nothing else is read from the ledger.
STATUS_COLUMNS = ["job_key", "manifest", "row", "variation", "status", "duration", "attempts", "error",
                  "expired", "credits_estimated", "credits_charged", "model"]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _credits(frame: pl.LazyFrame, by: str) -> pl.DataFrame:
    return frame.group_by(by).agg(
        pl.len().alias("jobs"), pl.col("credits_estimated").sum().alias("estimated"),
        pl.col("credits_charged").sum().alias("charged")).collect()


def _duration_credits(ledger: pl.LazyFrame) -> dict[str, dict[str, int]]:
    """Jobs and credits by clip length; "none" for models that take no duration (hailuo, ...)."""
    return {"none" if row["duration"] is None else str(row["duration"]):
            {"jobs": row["jobs"], "estimated": int(row["estimated"] or 0), "charged": int(row["charged"] or 0)}
            for row in _credits(ledger, "duration").sort("duration", nulls_last=False).iter_rows(named=True)}


def _run_figures(run: dict[str, Any]) -> dict[str, Any]:
    """A runs-table row in a run summary's words."""
    planned, skipped, downloaded, failed = (run[f"rows_{n}"] or 0 for n in ("planned", "skipped", "finished", "failed"))
    return {"exit_meaning": exit_meaning(run["exit_code"]),
            "rows": {"planned": planned, "skipped": skipped, "submitted": run["rows_submitted"] or 0,
                     "downloaded": downloaded, "failed": failed,
                     "unfinished": max(0, planned - skipped - downloaded - failed)},
            "credits": {"estimated": run["credits_estimated"] or 0, "charged": run["credits_charged"] or 0}}


def summarize(ledger: pl.DataFrame | pl.LazyFrame, runs: pl.DataFrame) -> dict[str, Any]:
    """JSON-ready totals of a ledger (a frame or a lazy scan of its current state) and its runs table."""
    ledger = ledger.lazy()
    by_status = {status: 0 for status in STATUSES}
    credits_by_status = {}
    for row in _credits(ledger, "status").iter_rows(named=True):
        by_status[row["status"]] = row["jobs"]
        credits_by_status[row["status"]] = {"estimated": int(row["estimated"] or 0), "charged": int(row["charged"] or 0)}
    credits_by_duration = _duration_credits(ledger)
    # A row edited under the same id keeps its old version as `<key>@<hash>` (store/archive.py):
    # a paid job, but not a row anyone wants now. Counted apart, so 10 rows never read as 12.
    rows_by_status = {status: 0 for status in STATUSES}
    versions_by_status = {status: 0 for status in STATUSES}
    for archived, status, n in ledger.group_by(is_archived_col().alias("archived"), "status").len().collect().iter_rows():
        (versions_by_status if archived else rows_by_status)[status] = n
    totals = ledger.select(
        pl.len().alias("jobs"), pl.col("credits_estimated").sum().alias("estimated"),
        pl.col("credits_charged").sum().alias("charged"),
        pl.col("expired").fill_null(False).sum().alias("expired")).collect().row(0, named=True)
    failed = (ledger.filter(pl.col("status").is_in([FAILED, REJECTED]))
              .select("job_key", "manifest", "row", "variation", "status", "attempts", "error")
              .sort("manifest", "row", "variation").collect())
    last_run = None
    if runs.height:
        last = runs.sort("started_at").row(-1, named=True)
        last_run = {name: _iso(value) for name, value in last.items()} | _run_figures(last)
    return {
        "version": SUMMARY_VERSION,
        "jobs": totals["jobs"],  # every row of the ledger: the wanted rows and their earlier versions
        "by_status": by_status,
        "rows": sum(rows_by_status.values()),  # the manifests' current rows (base keys)
        "rows_by_status": rows_by_status,
        "versions": sum(versions_by_status.values()),  # earlier versions of edited rows, kept
        "versions_by_status": versions_by_status,
        "credits": {"estimated": int(totals["estimated"] or 0), "charged": int(totals["charged"] or 0),
                    "by_status": credits_by_status, "by_duration": credits_by_duration},
        "by_model": model_books(ledger),  # every job, as `jobs`: a summary's ledger.by_model
        "expired": int(totals["expired"] or 0),
        "runs": runs.height,
        "review": review_counts(ledger),  # approve/reject/regenerate/undecided; {} without with_review()
        "last_run": last_run,
        "failed": [{"job_key": r["job_key"], "manifest": r["manifest"], "row": r["row"], "status": r["status"],
                    "attempts": r["attempts"], "error": r["error"]}
                   for r in failed.iter_rows(named=True)],
    }


def _by_status(counts: dict[str, int]) -> str:
    return "  " + ", ".join(f"{status} {n}" for status, n in counts.items() if n)


def format_status(summary: dict[str, Any]) -> str:
    lines = [f"rows: {summary['rows']}", _by_status(summary["rows_by_status"]) if summary["rows"]
             else "  (the ledger is empty: nothing was made in it yet; next: videobatch run MANIFEST)"
             if not summary["jobs"] else "  (none: only earlier versions)"]
    if summary["versions"]:
        lines.append(f"earlier versions of edited rows, kept with their videos: {summary['versions']}")
        lines.append(_by_status(summary["versions_by_status"]))
    credits = summary["credits"]
    lines.append(f"credits: {credits['charged']} charged, {credits['estimated']} estimated")
    for duration, figures in credits["by_duration"].items():
        length = f"{duration:>3} s clips" if duration != "none" else "no duration"
        lines.append(f"  {length}: {figures['jobs']} jobs, {figures['charged']} charged, "
                     f"{figures['estimated']} estimated")
    if not only_grok(summary["by_model"]):  # a grok-only ledger reads as it did before models
        lines.append('by model (charged beside estimated; "up to": the catalog\'s upper bound):')
        lines += model_lines(summary["by_model"])
    if summary["expired"]:
        lines.append(f"expired results: {summary['expired']} (run again with --retry-failed to regenerate)")
    review = summary.get("review") or {}
    if sum(review.values()) - review.get("undecided", 0):
        lines.append(f"review: {review['approve']} approved, {review['reject']} rejected, "
                     f"{review['regenerate']} to regenerate, {review['undecided']} undecided")
    run = summary["last_run"]
    if run:
        lines.append(f"last run: {run['run_id']} on {run['manifest']}, ended {run['ended_at']} "
                     f"with exit code {run['exit_code']} ({run['rows_finished']} downloaded, "
                     f"{run['rows_failed']} failed, {run['credits_charged']} credits charged)")
    else:
        lines.append("last run: none recorded")
    if summary["failed"]:
        lines.append(f"failed rows: {len(summary['failed'])}")
        for row in summary["failed"][:50]:
            lines.append(f"  {row['status']:<8} {row['job_key']} (row {row['row']}, {row['attempts']} attempts): "
                         f"{row['error'] or 'no reason recorded'}")
        if len(summary["failed"]) > 50:
            lines.append(f"  ... {len(summary['failed']) - 50} more (--json lists them all)")
    return "\n".join(lines)
