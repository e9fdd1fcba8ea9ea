"""Decides what the emulator charges for a job of each model, and the public catalog
(`GET /v2/models`) it serves, both from one tariff per model so they cannot disagree.

Only grok-imagine-video's prices are documented (CONTRACT.md: 6/10/15 s = 10/15/25); every other
tariff here is the emulator's own invention, chosen so all three catalog pricing modes are
exercised. A tariff is a base price at the cheapest settings times a factor per costly setting
(resolution, mode, audio); a setting the request leaves out costs 1x (the emulator reads a
model's default as its cheapest setting). `costMin`/`costMax` are the cheapest and the dearest
reading of the same tariff (a few models with no costly setting list a costMax a little above
their one price), so a charge always lies within what pricing.upper_bound makes of the catalog,
and is usually below it. Grok's entry is flat 10..25, its documented table's range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipeline.models import MODELS, VideoModel, _choices

# The catalog's pricingMode values (openapi.json, ModelCatalogEntry).
FLAT, PER_SECOND, PER_OUTPUT = "flat", "per-second", "per-output"
MODALITIES = ("image", "video", "music")

RESOLUTION_COST = {"720p": 1.5, "1080p": 2.0, "4k": 4.0}  # 480p and a left-out resolution: 1x


@dataclass(frozen=True)
class Tariff:
    mode: str  # the catalog's pricingMode
    base: float  # credits at the cheapest settings: per second (per-second), else per job
    factors: dict[str, dict[Any, float]] = field(default_factory=dict)  # param -> {value: x}
    by_length: bool = False  # flat / per-output: scaled by the clip's length over the shortest
    table: dict[int, int] = field(default_factory=dict)  # a documented price per duration (grok)
    headroom: float = 1.0  # the catalog's costMax over the dearest charge: a range wider than the price

    def _factor(self, model: VideoModel, block: dict[str, Any]) -> float:
        factor = 1.0
        for param, costs in self.factors.items():
            if model.takes(param):
                factor *= costs.get(_hashable(block.get(param)), 1.0)
        return factor

    def _dearest(self, model: VideoModel) -> float:
        """The factor of the dearest settings this model takes (seedance-1-lite has no 4k)."""
        factor = 1.0
        for param, costs in self.factors.items():
            if model.takes(param):
                taken = _choices(model.params[param])
                factor *= max([1.0, *(cost for value, cost in costs.items() if taken is None or value in taken)])
        return factor

    def _length(self, model: VideoModel, seconds: int) -> float:
        return seconds / min(model.durations) if self.by_length and model.durations else 1.0

    def charge(self, model: VideoModel, block: dict[str, Any], seconds: int) -> int:
        """The credits one job costs: `seconds` is the clip the job makes (asked or default)."""
        if self.table:
            return self.table[seconds]
        rate = self.base * self._factor(model, block)
        return math.ceil(rate * (seconds if self.mode == PER_SECOND else self._length(model, seconds)))

    def costs(self, model: VideoModel) -> tuple[float, float]:
        """(costMin, costMax) for the catalog: per second for per-second, else per job."""
        if self.table:
            return float(min(self.table.values())), float(max(self.table.values()))
        dearest = self.base * self._dearest(model)
        if self.mode != PER_SECOND and self.by_length and model.durations:
            dearest *= self._length(model, max(model.durations))
        return float(self.base), dearest * self.headroom


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _family(pricing_mode: str, base: float, headroom: float = 1.0, **factors: dict[Any, float]) -> Tariff:
    return Tariff(pricing_mode, base, factors, by_length=pricing_mode != PER_SECOND, headroom=headroom)


AUDIO = {True: 2.0}
TARIFFS: dict[str, Tariff] = {
    "grok-imagine-video": Tariff(FLAT, 10, table=MODELS["grok-imagine-video"].credits),
    **{name: _family(FLAT, base, resolution={"1080p": 1.5}) for name, base in
       (("hailuo-02", 30), ("hailuo-03", 35), ("hailuo-2.3", 30), ("hailuo-2.3-fast", 20))},
    **{name: _family(PER_SECOND, 4, resolution={"1080p": 1.5}) for name in ("happyhorse-1.0", "happyhorse-1.1")},
    "kling-2.1": _family(PER_SECOND, 5, mode={"pro": 1.75}),
    # Models with no costly setting: the catalog's range is wider than what they charge.
    "kling-2.1-master": _family(PER_SECOND, 14, headroom=1.25),
    "kling-2.5-turbo-pro": _family(PER_SECOND, 7, headroom=1.25),
    "kling-2.6": _family(PER_SECOND, 7, generate_audio=AUDIO),
    **{name: _family(PER_SECOND, 8, mode={"pro": 1.5, "4k": 3.0}, generate_audio={True: 1.5})
       for name in ("kling-3.0", "kling-3.0-omni")},
    "kling-3.0-motion-control": _family(FLAT, 60, mode={"pro": 1.5}),
    "luma-ray-2": _family(PER_OUTPUT, 40),
    "luma-ray-flash-2": _family(PER_OUTPUT, 15),
    "midjourney-video": _family(PER_OUTPUT, 20, resolution={"hd": 2.0}),
    "runway-gen4-turbo": _family(PER_SECOND, 5, headroom=1.2),
    "runway-gen4.5": _family(PER_SECOND, 12, headroom=1.25),
    **{name: _family(FLAT, base, resolution=RESOLUTION_COST, generate_audio={True: 1.25}) for name, base in
       (("seedance-1-lite", 12), ("seedance-1-pro", 20), ("seedance-1-pro-fast", 10), ("seedance-1.5-pro", 20),
        ("seedance-2", 25), ("seedance-2-fast", 15), ("seedance-2-mini", 8), ("seedance-2.5", 30))},
    "sora-2": _family(PER_SECOND, 10, resolution={"high": 1.5}),
    "sora-2-pro": _family(PER_SECOND, 30, resolution={"high": 1.5}),
    **{name: _family(PER_SECOND, base, resolution={"1080p": 1.25}, generate_audio=AUDIO) for name, base in
       (("veo-2", 25), ("veo-3", 20), ("veo-3-fast", 10), ("veo-3.1", 20), ("veo-3.1-fast", 10),
        ("veo-3.1-lite", 5))},
    **{name: _family(FLAT, base, resolution=RESOLUTION_COST) for name, base in
       (("wan-2.5", 25), ("wan-2.5-fast", 15), ("wan-2.6", 25), ("wan-2.6-flash", 12))},
    "wan-2.7": _family(PER_SECOND, 6, resolution={"1080p": 1.5}),
    "wan-2.7-r2v": _family(PER_SECOND, 8, resolution={"1080p": 1.5}),
}
# A few entries of other modalities: a client asking without ?modality= must filter them out.
OTHER_ENTRIES = (
    {"id": "flux-pro", "label": "Flux Pro", "modality": "image", "pricingMode": PER_OUTPUT,
     "costMin": 4, "costMax": 8, "description": "Image model (emulated catalog entry)"},
    {"id": "midjourney", "label": "Midjourney", "modality": "image", "pricingMode": PER_OUTPUT,
     "costMin": 8, "costMax": 16, "description": "Image model (emulated catalog entry)"},
    {"id": "suno-v4", "label": "Suno v4", "modality": "music", "pricingMode": FLAT,
     "costMin": 10, "costMax": 10, "description": "Music model (emulated catalog entry)"},
)


def charge(model: VideoModel, block: dict[str, Any], seconds: int) -> int:
    """What a job of `model` with params `block`, making a clip of `seconds`, is charged."""
    return TARIFFS[model.name].charge(model, block, seconds)


def _label(name: str) -> str:
    return " ".join(word.upper() if word in ("hd", "sd") else word.capitalize() for word in name.split("-"))


def video_entries() -> list[dict[str, Any]]:
    entries = []
    for name, model in MODELS.items():
        tariff = TARIFFS[name]
        cost_min, cost_max = tariff.costs(model)
        entries.append({"id": name, "label": _label(name), "modality": "video", "pricingMode": tariff.mode,
                        "costMin": cost_min, "costMax": cost_max,
                        "description": f"{model.family} video model (emulated catalog entry)"})
    return entries


def catalog(modality: str | None) -> dict[str, list[dict[str, Any]]]:
    """The answer of GET /v2/models?modality=...; None: every modality."""
    entries = video_entries() + [dict(entry) for entry in OTHER_ENTRIES]
    return {"models": [entry for entry in entries if modality in (None, entry["modality"])]}
