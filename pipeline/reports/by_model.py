"""Decides how the books break down by model: per model its jobs, how they stand, and the credits
estimated against the credits charged, so a team learns what each model really costs.

Pure: a frame (eager or lazy) with `model`, `status`, `credits_estimated` and `credits_charged`
in, a JSON-ready dict out. `status --json`, the run and plan summaries and their text all use it.
A row written before models had a name (model null) is grok-imagine-video's, as its key says.
grok-imagine-video's estimate comes from its documented table; every other model's is the
catalog's upper bound (models/pricing.py), shown as "up to".
"""

from __future__ import annotations

from typing import Any

import polars as pl

from pipeline.models import DEFAULT_MODEL
from pipeline.models.pricing import estimate_is_bound
from pipeline.store.schema import DOWNLOADED, FAILED, IN_FLIGHT, PENDING, REJECTED

# How a job stands, in the words of the run summary's rows.
OUTCOMES = {"downloaded": (DOWNLOADED,), "failed": (FAILED, REJECTED), "in_flight": IN_FLIGHT,
            "pending": (PENDING,)}
TABLE, CATALOG = "table", "catalog"  # where a model's estimate comes from


def priced_by(model: str) -> str:
    """`table` for a model with documented prices (grok), else `catalog`: an upper bound."""
    return CATALOG if estimate_is_bound(model) else TABLE


def model_books(frame: pl.DataFrame | pl.LazyFrame) -> dict[str, dict[str, Any]]:
    """{model: {jobs, downloaded, failed, in_flight, pending, credits: {estimated, charged}, priced_by}}."""
    grouped = frame.lazy().group_by(pl.col("model").fill_null(DEFAULT_MODEL)).agg(
        pl.len().alias("jobs"),
        *(pl.col("status").is_in(list(states)).sum().alias(name) for name, states in OUTCOMES.items()),
        pl.col("credits_estimated").sum().alias("estimated"),
        pl.col("credits_charged").sum().alias("charged"),
    ).sort("model").collect()
    return {row["model"]: {"jobs": row["jobs"], **{name: int(row[name]) for name in OUTCOMES},
                           "credits": {"estimated": int(row["estimated"] or 0), "charged": int(row["charged"] or 0)},
                           "priced_by": priced_by(row["model"])}
            for row in grouped.iter_rows(named=True)}


def only_grok(books: dict[str, dict[str, Any]]) -> bool:
    """True when every job is grok-imagine-video's: the text then prints as it did before models."""
    return set(books) <= {DEFAULT_MODEL}


def model_lines(books: dict[str, dict[str, Any]], indent: str = "  ") -> list[str]:
    """One line a model: its jobs by outcome, credits charged beside the estimate."""
    width = max((len(name) for name in books), default=0)
    lines = []
    for name, figures in books.items():
        outcomes = ", ".join(f"{figures[key]} {key.replace('_', ' ')}" for key in OUTCOMES if figures[key])
        credits = figures["credits"]
        bound = "up to " if figures["priced_by"] == CATALOG else ""
        lines.append(f"{indent}{name:<{width}}  {figures['jobs']} jobs ({outcomes or 'none'}): "
                     f"{credits['charged']} charged, {bound}{credits['estimated']} estimated")
    return lines


def plan_books(rows: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """A plan's rows by model, as the ledger holds them now (a row never submitted is pending)."""
    return model_books(rows.select(
        "model", "credits_estimated", pl.col("ledger_status").fill_null(PENDING).alias("status"),
        pl.col("ledger_credits_charged").alias("credits_charged")))
