"""Decides how the takes of one prompt are shown side by side, for the review page and the report.

A take is a ledger row: one prompt made by one model with its parameters (a matrix row's
combinations, two manifest rows with the same prompt, a regenerated row's earlier versions). The
takes of a prompt form a group: the rows with the same prompt text, an earlier version
(`<key>@<hash>`) with its current row's, whatever prompt it was made from. Groups come in the
order of their first take; inside a group the takes keep the order they had.

What each take says about itself is decided here once: its parameters shortly, its credits
("up to N" where the estimate is the catalog's upper bound: every model but the one whose price
is documented), how long the API took to make it, and the shape of its frame.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import polars as pl

from pipeline.models import DEFAULT_MODEL, MODELS
from pipeline.models.pricing import estimate_is_bound
from pipeline.store.archive import base_key_col, is_archived_col

GROUP = "group"  # the column grouped() adds: the prompt its takes share
SHORT_CHARS = 32  # a parameter's value shown longer than this is cut, the whole in its title


def grouped(frame: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    """`frame` (with job_key, prompt and the `order` columns) sorted by `order`, then its takes of
    one prompt brought together where the first of them stands, with the GROUP column."""
    current = frame.filter(~is_archived_col()).select(_base="job_key", _said="prompt")
    words = pl.coalesce("_said", "prompt", "job_key")  # an earlier take goes with its current row
    return (frame.with_columns(_base=base_key_col()).join(current, on="_base", how="left")
            .sort(order, nulls_last=True).with_row_index("_at")
            .with_columns(words.alias(GROUP), _first=pl.col("_at").min().over(words))
            .sort("_first", "_at").drop("_base", "_said", "_at", "_first"))


def credits_text(charged: int | None, estimated: int | None, model: str | None) -> str:
    """'10 / 10 cr' (charged / estimated), '12 / up to 40 cr', '– / ? cr' for a row not priced yet."""
    said = "–" if charged is None else str(charged)
    if estimated is None:
        return f"{said} / ? cr"
    return f"{said} / {'up to ' if estimate_is_bound(model) else ''}{estimated} cr"


def generation_seconds(submitted_at: datetime | None, completed_at: datetime | None) -> float | None:
    """How long the API took to make the take: submitted to completed."""
    if submitted_at is None or completed_at is None or completed_at < submitted_at:
        return None
    return (completed_at - submitted_at).total_seconds()


def duration_text(seconds: float | None) -> str | None:
    """'42 s', '3 m 05 s', '1 h 02 m'."""
    if seconds is None:
        return None
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} m {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} m"


def _short(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(map(_short, value))
    return json.dumps(value, separators=(",", ":"))


def _cut(whole: str) -> str:
    return whole if len(whole) <= SHORT_CHARS else whole[:SHORT_CHARS - 1].rstrip() + "…"


def shown_params(params: str | None) -> list[tuple[str, str, str]]:
    """The `params` JSON of a row as (name, value cut to SHORT_CHARS, whole value), keys sorted."""
    try:
        found = json.loads(params) if params else {}
    except ValueError:
        return [("params", _cut(params), params)]
    if not isinstance(found, dict):
        found = {"params": found}
    return [(name, _cut(_short(found[name])), _short(found[name])) for name in sorted(found)]


def frame_ratio(row: dict[str, Any]) -> str:
    """The CSS aspect-ratio of a take's frame: the probed size, else the model's known size for the
    asked ratio, else the asked ratio, else 16 / 9."""
    if row.get("video_width") and row.get("video_height"):
        return f"{row['video_width']} / {row['video_height']}"
    known = MODELS.get(row.get("model") or DEFAULT_MODEL)
    size = known.frame_size(row.get("aspect_ratio")) if known else None
    if size:
        return f"{size[0]} / {size[1]}"
    ratio = (row.get("aspect_ratio") or "").split(":")
    if len(ratio) == 2 and all(part.strip().isdigit() and int(part) > 0 for part in ratio):
        return f"{int(ratio[0])} / {int(ratio[1])}"
    return "16 / 9"


def take_facts(row: dict[str, Any]) -> dict[str, Any]:
    """What a take's card says of it, beside its status and prompt."""
    seconds = generation_seconds(row.get("submitted_at"), row.get("completed_at"))
    return {"params": shown_params(row.get("params")),
            "credits_text": credits_text(row.get("credits_charged"), row.get("credits_estimated"), row.get("model")),
            "estimate_bound": estimate_is_bound(row.get("model")),
            "generation_s": seconds, "generation": duration_text(seconds), "ratio": frame_ratio(row)}
