"""pipeline/models/__init__.py: the model table against the contract (CONTRACT.md's credits, defaults and
frame sizes; openapi.json's rules, as tests/openapi_schemas.json) and the request bodies it builds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.models import DEFAULT_MODEL, GROK_IMAGINE_VIDEO, MODELS, get_model
from tests.conftest import SCHEMAS, assert_valid, beside_the_clone

CONTRACT = Path(__file__).resolve().parents[1].parent / "shared" / "apiframe-v2" / "CONTRACT.md"
REQUEST = SCHEMAS["GrokImagineVideoRequest"]
PARAMS = REQUEST["properties"]["grokImagineVideoParams"]["properties"]
MODEL = GROK_IMAGINE_VIDEO


@pytest.fixture(scope="module")
def contract() -> str:
    return beside_the_clone(CONTRACT).read_text()


def test_credits_per_duration_are_the_contracts(contract):
    line = next(line for line in contract.splitlines() if line.startswith("Credit cost"))
    documented = {int(s): int(c) for s, c in re.findall(r"(\d+) s = (\d+) credits", line)}
    assert documented == {6: 10, 10: 15, 15: 25}  # the line was read, not an empty match
    assert MODEL.credits == documented
    assert {d: MODEL.credits_for(d) for d in MODEL.durations} == documented


def test_frame_sizes_are_the_contracts_assumed_ones(contract):
    paragraph = contract[contract.index("Frame size per aspect ratio"):][:400]
    documented = {ratio: (int(w), int(h)) for ratio, w, h in re.findall(r"(\d+:\d+) (\d+)x(\d+)", paragraph)}
    assert len(documented) == 7
    assert MODEL.frame_sizes == documented
    assert all(min(MODEL.frame_size(r)) == 720 for r in MODEL.aspect_ratios)  # short side 720 (720p)


def test_defaults_and_limits_are_the_contracts(contract):
    assert "default 6 (doc)" in contract and "default `16:9` (doc)" in contract
    assert (MODEL.default_duration, MODEL.default_aspect_ratio) == (6, "16:9")
    assert "string, 1..5000 characters" in contract and "at most 7" in contract
    assert (MODEL.prompt_min_chars, MODEL.prompt_max_chars, MODEL.max_reference_images) == (1, 5000, 7)


def test_the_table_accepts_exactly_what_openapi_allows():
    assert MODEL.name in REQUEST["properties"]["model"]["enum"]
    assert set(MODEL.durations) == {choice["enum"][0] for choice in PARAMS["duration"]["anyOf"]}
    assert MODEL.aspect_ratios == tuple(PARAMS["aspect_ratio"]["enum"])  # in the spec's order
    assert MODEL.max_reference_images == PARAMS["reference_images"]["maxItems"]
    prompt = REQUEST["properties"]["prompt"]
    assert (MODEL.prompt_min_chars, MODEL.prompt_max_chars) == (prompt["minLength"], prompt["maxLength"])
    assert MODEL.params_field in REQUEST["properties"]


@pytest.mark.parametrize("duration, ratio, refs, hook", [
    (6, "16:9", (), None),
    (15, "2:3", ["https://cdn.example/a.png"], None),
    (10, "1:1", tuple(f"https://cdn.example/{i}.png" for i in range(7)), "https://hooks.example/x"),
])
def test_request_bodies_spell_out_every_parameter_and_match_the_schema(duration, ratio, refs, hook):
    body = MODEL.request_body("a koi under a bridge", duration, ratio, refs, webhook_url=hook)
    assert_valid(body, "GrokImagineVideoRequest")
    params = {"duration": duration, "aspect_ratio": ratio} | ({"reference_images": list(refs)} if refs else {})
    expected = {"model": "grok-imagine-video", "prompt": "a koi under a bridge", "grokImagineVideoParams": params}
    if hook:  # both events a run waits for; never `progress`, which would only add traffic
        expected |= {"webhookUrl": hook, "webhookEvents": ["completed", "failed"]}
    assert body == expected  # reference_images a list (JSON), never the tuple given


def test_models_are_found_by_name_and_an_unknown_one_names_the_known():
    assert get_model(DEFAULT_MODEL) is MODEL and MODELS[MODEL.name] is MODEL
    assert len(MODELS) == 41 and get_model("sora-2").name == "sora-2"  # every model of openapi.json
    with pytest.raises(KeyError) as unknown:
        get_model("sora-9")
    assert unknown.value.args[0] == f"unknown model 'sora-9'; known: {', '.join(MODELS)}"
    assert "kling-3.0" in unknown.value.args[0] and "veo-3.1-fast" in unknown.value.args[0]
    with pytest.raises(KeyError):
        MODEL.credits_for(7)  # a duration the API does not sell has no price, never a guess
