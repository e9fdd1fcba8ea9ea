"""pipeline/models/pricing.py: what an attempt may cost before it is sent. Grok by its documented
table; every other model by the catalog's costMax read so that it can only over-estimate; a model
nothing prices has no estimate (never a guess); the catalog is read liberally."""

from __future__ import annotations

import pytest

from pipeline.models import GROK_IMAGINE_VIDEO, get_model
from pipeline.models.pricing import CatalogPrice, read_catalog, unpriced, upper_bound

CATALOG = {"models": [
    {"id": "veo-3.1-fast", "modality": "video", "pricingMode": "per-second", "costMin": 10, "costMax": 12.5},
    {"id": "kling-3.0", "modality": "video", "pricingMode": "flat", "costMin": 20, "costMax": 40.2},
    {"id": "midjourney-video", "modality": "video", "pricingMode": "per-output", "costMin": 30, "costMax": 30},
    {"id": "hailuo-02", "modality": "video", "pricingMode": "per-second", "costMax": 3},
    {"id": "grok-imagine-video", "modality": "video", "pricingMode": "flat", "costMax": 1},
]}
PRICES = read_catalog(CATALOG)


@pytest.mark.parametrize("model, duration, bound", [
    ("veo-3.1-fast", 8, 100),  # per-second: costMax for every second asked
    ("veo-3.1-fast", 4, 50),
    ("veo-3.1-fast", None, 100),  # no duration asked: the model's longest clip (8 s)
    ("kling-3.0", 5, 41),  # flat: costMax for the job, rounded up
    ("kling-3.0", 15, 41),
    ("midjourney-video", None, 30),  # per-output: a video job makes one output
    ("hailuo-02", 10, 30),
    ("hailuo-02", None, 30),  # longest of 6, 10
])
def test_the_upper_bound_of_each_pricing_mode(model, duration, bound):
    assert upper_bound(get_model(model), duration, PRICES) == bound


def test_grok_keeps_its_documented_table_whatever_the_catalog_says():
    assert {d: upper_bound(GROK_IMAGINE_VIDEO, d, PRICES) for d in (6, 10, 15)} == {6: 10, 10: 15, 15: 25}
    assert upper_bound(GROK_IMAGINE_VIDEO, 7, PRICES) is None  # a length the API does not sell: no price
    assert upper_bound(GROK_IMAGINE_VIDEO, 6, {}) == 10  # no catalog needed


def test_a_model_nothing_prices_has_no_estimate_and_is_named():
    assert upper_bound(get_model("sora-2"), 8, PRICES) is None
    assert upper_bound(get_model("kling-3.0-motion-control"), None, read_catalog([
        {"id": "kling-3.0-motion-control", "pricingMode": "per-second", "costMax": 5}])) is None  # no duration at all
    assert unpriced({"sora-2", "veo-3", "kling-3.0", "grok-imagine-video", "midjourney-video"}, PRICES) == [
        "sora-2", "veo-3"]
    assert unpriced(set(), PRICES) == []


def test_the_catalog_is_read_liberally():
    odd = [
        "not an entry",
        {"modality": "video", "pricingMode": "flat", "costMax": 5},  # no id
        {"id": 7, "pricingMode": "flat", "costMax": 5},  # an id that is no name
        {"id": "sora-2", "modality": "image", "pricingMode": "flat", "costMax": 5},  # not video
        {"id": "veo-3", "pricingMode": "per-token", "costMax": 5},  # a mode we cannot bound
        {"id": "veo-2", "pricingMode": "flat"},  # no costMax
        {"id": "wan-2.5", "pricingMode": "flat", "costMax": True},  # a yes/no is no cost
        {"id": "wan-2.6", "pricingMode": "flat", "costMax": -3},
        {"id": "wan-2.7", "pricingMode": "flat", "costMax": "NaN"},
        {"id": "seedance-2", "pricingMode": "per-second", "costMax": "2.5", "costMin": "cheap"},  # text numbers
        {"id": "luma-ray-2", "modality": None, "pricingMode": "flat", "costMax": 9, "extra": {"new": 1}},
    ]
    assert read_catalog(odd) == read_catalog({"models": odd}) == {
        "seedance-2": CatalogPrice("seedance-2", "per-second", None, 2.5),
        "luma-ray-2": CatalogPrice("luma-ray-2", "flat", None, 9.0),
    }
    assert upper_bound(get_model("seedance-2"), 15, read_catalog(odd)) == 38  # 2.5 x 15 = 37.5, up
    for answer in (None, "down", 42, {"models": "none"}, {"data": []}):
        assert read_catalog(answer) == {}


def test_no_reading_of_a_price_can_come_out_under_any_charge_the_catalog_allows():
    """costMax for the whole clip bounds a flat, per-output or per-second charge of up to costMax
    (per second) for every length the model makes."""
    for name, price in PRICES.items():
        model = get_model(name)
        if model.credits:
            continue
        for duration in model.durations or (None,):
            bound = upper_bound(model, duration, PRICES)
            seconds = duration or model.longest or 1
            assert bound >= price.cost_max * (seconds if price.mode == "per-second" else 1), (name, duration)
