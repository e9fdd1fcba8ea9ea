"""Decides what an attempt may cost before it is sent: grok-imagine-video by its documented
table, every other model by an upper bound read from the public catalog.

`GET /v2/models?modality=video` gives `costMin`, `costMax` and `pricingMode` (`flat`,
`per-second`, `per-output`) per model (openapi.json, ModelCatalogEntry); what the numbers are per
is not documented (CONTRACT.md, "The other video models"). So the reading taken is the one that
can only over-estimate:
- `flat`: costMax for the job;
- `per-second`: costMax for every second of the clip (the model's longest clip when the row asks
  for no duration);
- `per-output`: costMax for each output, and a video job makes one.
Fractions round up. A model the catalog does not price (missing, no costMax, another mode) has no
estimate: the plan refuses its rows rather than guess (run/catalog.py), since --max-credits and the
balance check must hold for any reading of the catalog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.models import DEFAULT_MODEL, MODELS, VideoModel

MODES = ("flat", "per-second", "per-output")


@dataclass(frozen=True)
class CatalogPrice:
    model: str
    mode: str
    cost_min: float | None
    cost_max: float


def _number(value: Any) -> float | None:
    """A cost as the catalog may spell it (a number, or a number in text); None if unreadable."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def read_catalog(answer: Any) -> dict[str, CatalogPrice]:
    """The video models the catalog prices, liberally read: entries that are not objects, not
    video, or carry no usable costMax and mode are left out (and so unpriced)."""
    entries = answer.get("models") if isinstance(answer, dict) else answer
    prices: dict[str, CatalogPrice] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        if entry.get("modality") not in (None, "video"):
            continue
        cost_max, mode = _number(entry.get("costMax")), entry.get("pricingMode")
        if cost_max is None or mode not in MODES:
            continue
        prices[entry["id"]] = CatalogPrice(entry["id"], mode, _number(entry.get("costMin")), cost_max)
    return prices


def upper_bound(model: VideoModel, duration: int | None, prices: dict[str, CatalogPrice]) -> int | None:
    """The most one attempt of `model` can cost; None when nothing says (then it is not run)."""
    if model.credits:
        return model.credits_for(duration) if duration in model.credits else None
    price = prices.get(model.name)
    if price is None:
        return None
    if price.mode == "per-second":
        seconds = duration if duration is not None else model.longest
        if seconds is None:
            return None
        return math.ceil(price.cost_max * seconds)
    return math.ceil(price.cost_max)


def estimate_is_bound(model: str | None) -> bool:
    """Whether a row's credits_estimated is an upper bound read from the catalog (shown "up to")
    rather than the model's price: every model but one with a documented table (grok). A row
    written before models had a name is grok's."""
    known = MODELS.get(model or DEFAULT_MODEL)
    return not (known and known.credits)


def unpriced(models: set[str], prices: dict[str, CatalogPrice]) -> list[str]:
    """The models among `models` that neither a table nor the catalog prices."""
    return sorted(name for name in models if not MODELS[name].credits and name not in prices)
