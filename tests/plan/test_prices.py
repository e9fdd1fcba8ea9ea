"""plan/prices.py: a catalog-priced model's rows get the catalog's upper bound, a model the catalog
does not price is named when its rows would spend, and a grok row keeps its documented price."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.manifest.load import load_manifest
from pipeline.models.pricing import read_catalog
from pipeline.plan.actions import SKIP, SUBMIT, Plan
from pipeline.plan.prices import needs_catalog, price_plan

MANIFEST = """
defaults: {duration: 6}
jobs:
  - {prompt: a grok clip}
  - {prompt: a veo clip, model: veo-3.1-fast}
  - {prompt: a veo clip, model: veo-3.1-fast, duration: 8}
  - {prompt: a midjourney clip, model: midjourney-video, params: {start_image: "https://example.com/a.png"}}
  - {prompt: a kling clip, model: kling-2.1, duration: 10}
"""
CATALOG = {"models": [
    {"id": "veo-3.1-fast", "modality": "video", "pricingMode": "per-second", "costMin": 1, "costMax": 2.5},
    {"id": "midjourney-video", "modality": "video", "pricingMode": "per-output", "costMin": 10, "costMax": "12.2"},
    {"id": "kling-2.1", "modality": "image", "pricingMode": "flat", "costMax": 99},  # not video: ignored
]}


def _plan(tmp_path: Path, action: str) -> Plan:
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST)
    return Plan(manifest=path, rows=load_manifest(path).with_columns(action=pl.lit(action)))


def test_catalog_rows_get_their_upper_bound_and_grok_its_table(tmp_path):
    plan = _plan(tmp_path, SUBMIT)
    assert needs_catalog(plan)
    unpriced = price_plan(plan, read_catalog(CATALOG))
    estimates = dict(zip(plan.rows["prompt"] + " " + plan.rows["duration"].cast(pl.String).fill_null("-"),
                         plan.rows["credits_estimated"]))
    assert estimates == {"a grok clip 6": 10, "a veo clip 6": 15, "a veo clip 8": 20,  # 2.5 a second
                         "a midjourney clip -": 13,  # one output, 12.2 rounded up
                         "a kling clip 10": None}
    assert unpriced == ["kling-2.1"]


def test_rows_that_spend_nothing_need_no_catalog_and_name_no_model(tmp_path):
    plan = _plan(tmp_path, SKIP)
    assert not needs_catalog(plan)  # a rerun with nothing to start reads no catalog
    assert price_plan(plan, read_catalog(CATALOG)) == []
