"""Decides what each planned attempt of a catalog-priced model may cost: its upper bound
(models/pricing.py, the reading of the catalog that can only over-estimate), filled into the
plan's `credits_estimated` where the manifest had no documented price. So `--max-credits`, the
balance check and "up to N credits" hold for any meaning the catalog's numbers may have."""

from __future__ import annotations

import polars as pl

from pipeline.models import MODELS
from pipeline.models.pricing import CatalogPrice, upper_bound
from pipeline.plan.actions import SPENDING, Plan


def needs_catalog(plan: Plan) -> bool:
    """Whether a row the plan would pay for waits for a price only the catalog can give (a rerun
    with nothing to start reads no catalog: it makes no request it does not need)."""
    return not _waiting(plan.rows).is_empty()


def _waiting(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.filter(pl.col("credits_estimated").is_null() & pl.col("action").is_in(list(SPENDING)))


def price_plan(plan: Plan, prices: dict[str, CatalogPrice]) -> list[str]:
    """Fill the plan's missing estimates from the catalog; the models whose rows would spend and
    still have no price (the plan must not run them: nothing bounds what they cost)."""
    rows = plan.rows
    missing = rows.filter(pl.col("credits_estimated").is_null()).select("model", "duration").unique()
    bounds = missing.with_columns(_bound=pl.Series(
        [upper_bound(MODELS[model], duration, prices) if model in MODELS else None
         for model, duration in missing.iter_rows()], dtype=pl.Int64))
    plan.rows = (rows.join(bounds, on=["model", "duration"], how="left", nulls_equal=True, maintain_order="left")
                 .with_columns(pl.coalesce("credits_estimated", "_bound").alias("credits_estimated")).drop("_bound"))
    return sorted(set(_waiting(plan.rows)["model"]))
