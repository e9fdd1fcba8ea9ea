"""pipeline/models.py: the one table of what a model accepts and costs agrees with openapi.json,
and the request body it writes is one the API's own schema accepts, every parameter explicit."""

from __future__ import annotations

import pytest

from pipeline.models import DEFAULT_MODEL, GROK_IMAGINE_VIDEO, MODELS, get_model
from tests.conftest import SCHEMAS, assert_valid

REQUEST = SCHEMAS["GrokImagineVideoRequest"]
PARAMS = REQUEST["properties"]["grokImagineVideoParams"]["properties"]


def test_the_table_is_openapi_s():
    model = GROK_IMAGINE_VIDEO
    assert REQUEST["properties"]["model"]["enum"] == list(MODELS) == [DEFAULT_MODEL]
    assert model.params_field in REQUEST["properties"]
    assert [choice["enum"][0] for choice in PARAMS["duration"]["anyOf"]] == list(model.durations)
    assert PARAMS["aspect_ratio"]["enum"] == list(model.aspect_ratios)
    assert PARAMS["reference_images"]["maxItems"] == model.max_reference_images
    prompt = REQUEST["properties"]["prompt"]
    assert (prompt["minLength"], prompt["maxLength"]) == (model.prompt_min_chars, model.prompt_max_chars)
    assert model.default_duration in model.durations and model.default_aspect_ratio in model.aspect_ratios


@pytest.mark.parametrize("duration, credits", [(6, 10), (10, 15), (15, 25)])
def test_credits_of_a_clip(duration, credits):
    assert GROK_IMAGINE_VIDEO.credits_for(duration) == credits


@pytest.mark.parametrize("ratio", GROK_IMAGINE_VIDEO.aspect_ratios)
def test_frame_sizes_have_a_short_side_of_720_and_the_ratio_s_shape(ratio):
    width, height = GROK_IMAGINE_VIDEO.frame_size(ratio)
    across, down = map(int, ratio.split(":"))
    assert min(width, height) == 720 and width * down == height * across


def test_the_request_body_spells_out_every_parameter():
    model = GROK_IMAGINE_VIDEO
    plain = model.request_body("a red fox", 6, "16:9")
    assert plain == {"model": "grok-imagine-video", "prompt": "a red fox",
                     "grokImagineVideoParams": {"duration": 6, "aspect_ratio": "16:9"}}
    full = model.request_body("a red fox", 15, "9:16", ("https://x.test/a.png",), webhook_url="https://hooks.test/v")
    assert full["grokImagineVideoParams"]["reference_images"] == ["https://x.test/a.png"]
    assert (full["webhookUrl"], full["webhookEvents"]) == ("https://hooks.test/v", ["completed", "failed"])
    for body in (plain, full):
        assert_valid(body, "GrokImagineVideoRequest")


def test_an_unknown_model_is_named_with_the_known_ones():
    assert get_model("grok-imagine-video") is GROK_IMAGINE_VIDEO
    with pytest.raises(KeyError, match="unknown model 'sora-2'; known: grok-imagine-video"):
        get_model("sora-2")
