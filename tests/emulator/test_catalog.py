"""pipeline/emulator/catalog.py: what the emulator charges never exceeds the upper bound
pricing.upper_bound reads from the catalog it serves, for every model and every combination of
the settings it prices; grok keeps its documented table and its catalog entry agrees with it.
The catalog over real sockets (public, filtered, validated against openapi.json) is in
tests/emulator/test_contract.py.

Covers: pipeline/models/pricing.py
"""

from __future__ import annotations

import itertools

import pytest

from pipeline.emulator.catalog import FLAT, PER_OUTPUT, PER_SECOND, TARIFFS, catalog, charge
from pipeline.emulator.frames import default_seconds
from pipeline.models import GROK_IMAGINE_VIDEO, MODELS, _choices
from pipeline.models.pricing import read_catalog, upper_bound

PRICES = read_catalog(catalog("video"))


def settings(model):
    """Every combination of the values of the parameters the tariff prices (and none of them)."""
    priced = [name for name in TARIFFS[model.name].factors if model.takes(name)]
    values = [(None, *(_choices(model.params[name]) or (True, False))) for name in priced]
    for combination in itertools.product(*values):
        yield {name: value for name, value in zip(priced, combination) if value is not None}


@pytest.mark.parametrize("name", list(MODELS))
def test_a_charge_never_exceeds_the_catalogs_upper_bound(name):
    model = MODELS[name]
    below = checked = 0
    for block in settings(model):
        for asked in (*model.durations, None):
            seconds = asked if asked is not None else default_seconds(model)
            bound = upper_bound(model, asked, PRICES)
            if bound is None:  # grok without a duration: the run always sends one
                assert model is GROK_IMAGINE_VIDEO
                continue
            cost = charge(model, {**block, **({"duration": asked} if asked else {})}, seconds)
            assert 0 < cost <= bound, (name, block, asked, cost, bound)
            checked += 1
            below += cost < bound
    assert checked >= 2
    if model is not GROK_IMAGINE_VIDEO:
        assert below > checked / 2, (name, below, checked)  # usually below: the bound over-estimates


def test_every_pricing_mode_is_served_and_every_video_model_is_priced():
    assert set(PRICES) == set(MODELS)
    assert {price.mode for price in PRICES.values()} == {FLAT, PER_SECOND, PER_OUTPUT}
    # A model that makes no duration cannot be priced per second (the bound would have no length).
    assert all(PRICES[name].mode != PER_SECOND for name, model in MODELS.items() if not model.durations)
    assert all(price.cost_min <= price.cost_max for price in PRICES.values())


def test_grok_keeps_its_documented_table_and_its_entry_agrees():
    documented = {6: 10, 10: 15, 15: 25}
    assert {d: charge(GROK_IMAGINE_VIDEO, {"duration": d}, d) for d in documented} == documented
    grok = PRICES["grok-imagine-video"]
    assert (grok.mode, grok.cost_min, grok.cost_max) == (FLAT, 10, 25)
    assert all(upper_bound(GROK_IMAGINE_VIDEO, d, PRICES) == c for d, c in documented.items())


@pytest.mark.parametrize("name, block, seconds, credits", [
    ("veo-3.1", {}, 8, 160),  # 20 a second
    ("veo-3.1", {"resolution": "1080p", "generate_audio": True}, 8, 400),  # 20 x 1.25 x 2 a second
    ("kling-3.0", {"mode": "4k"}, 5, 120),
    ("hailuo-02", {"resolution": "1080p"}, 10, 75),  # flat: 30 x 1.5 x 10/6
    ("midjourney-video", {"resolution": "hd"}, 5, 40),  # per output
    ("seedance-1-lite", {"resolution": "480p"}, 5, 12),
])
def test_some_charges_by_hand(name, block, seconds, credits):
    assert charge(MODELS[name], block, seconds) == credits


def test_without_modality_other_entries_come_too():
    every = catalog(None)["models"]
    assert {entry["modality"] for entry in every} == {"video", "image", "music"}
    assert read_catalog(every).keys() == set(MODELS)  # a reader keeps the video ones only
    assert [entry["modality"] for entry in catalog("image")["models"]] == ["image", "image"]
