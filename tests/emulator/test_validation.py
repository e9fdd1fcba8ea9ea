"""The emulator's 400s: pipeline/models/validate.py's body_errors, openapi.json's schema of each
model checked with jsonschema, answered the way the API's Zod validation reports them (JSON path
-> messages). tests/emulator/test_contract.py sends such bodies over real sockets; this pins every
message.

Covers: pipeline/models/validate.py
"""

from __future__ import annotations

import pytest

from pipeline.models import MODELS
from pipeline.models.validate import body_errors

P = "grokImagineVideoParams"
MODEL = "grok-imagine-video"

CASES = [
    ("not an object", [], {"": ["Expected object"]}),
    ("empty: the model decides the rest", {}, {"model": ["Required"]}),
    ("unknown model", {"model": "sora", "prompt": 5, "x": 1},
     {"model": [f"Invalid enum value. Expected one of: {', '.join(MODELS)}"]}),
    ("every top-level and params rule", {
        "model": MODEL, "prompt": "", "webhookUrl": "not a url", "webhookEvents": ["completed", "nope"],
        P: {"duration": "6", "aspect_ratio": "21:9", "reference_images": ["x", "https://x.test/a.png"], "fps": 2}},
     {"prompt": ["String must contain at least 1 character(s)"], "webhookUrl": ["Invalid url"],
      "webhookEvents.1": ["Invalid enum value. Expected one of: progress, completed, failed"],
      f"{P}.fps": ["Unrecognized key"], f"{P}.duration": ["Expected number, received string"],
      f"{P}.aspect_ratio": ["Invalid enum value. Expected one of: 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3"],
      f"{P}.reference_images.0": ["Invalid url"]}),
    ("too long, empty events, params not an object", {"model": MODEL, "prompt": "x" * 5001, "webhookEvents": [],
                                                      P: []},
     {"prompt": ["String must contain at most 5000 character(s)"],
      "webhookEvents": ["Array must contain at least 1 element(s)"], P: ["Expected object, received array"]}),
    ("a duration it does not make, images not a list", {"model": MODEL, "prompt": "ok",
                                                        P: {"duration": 7, "reference_images": "x"}},
     {f"{P}.duration": ["Invalid literal value, expected one of [6, 10, 15]"],
      f"{P}.reference_images": ["Expected array, received string"]}),
    ("a yes/no duration", {"model": MODEL, "prompt": "ok", P: {"duration": True}},
     {f"{P}.duration": ["Expected number, received boolean"]}),
    ("eight images", {"model": MODEL, "prompt": "ok",
                      P: {"reference_images": [f"https://x.test/{i}" for i in range(8)]}},
     {f"{P}.reference_images": ["Array must contain at most 7 element(s)"]}),
    ("null params: not an object (openapi.json has no nullable block)", {"model": MODEL, "prompt": "ok", P: None},
     {P: ["Expected object, received null"]}),
    ("valid", {"model": MODEL, "prompt": "ok", "webhookUrl": "https://hooks.test/a", "webhookEvents": ["failed"],
               P: {"duration": 6, "aspect_ratio": "16:9", "reference_images": ["https://x.test/a.png"]}}, {}),
    # Other models, by their own schemas.
    ("kling-3.0: a range, an enum, a ratio it lacks, another family's block",
     {"model": "kling-3.0", "prompt": "ok", "klingParams": {"duration": 2, "mode": "ultra", "aspect_ratio": "4:3"},
      "veoParams": {}},
     {"veoParams": ["Unrecognized key"], "klingParams.duration": ["Number must be greater than or equal to 3"],
      "klingParams.mode": ["Invalid enum value. Expected one of: standard, pro, 4k"],
      "klingParams.aspect_ratio": ["Invalid enum value. Expected one of: 16:9, 9:16, 1:1"]}),
    ("veo-3.1: free-text ratio must read W:H, a whole seed", {"model": "veo-3.1", "prompt": "ok",
                                                              "veoParams": {"aspect_ratio": "wide", "seed": 1.5}},
     {"veoParams.aspect_ratio": ["Invalid"], "veoParams.seed": ["Expected integer, received number"]}),
    ("midjourney-video: its block and start_image are required", {"model": "midjourney-video", "prompt": "ok"},
     {"midjourneyVideoParams": ["Required"]}),
    ("midjourney-video: start_image inside the block", {"model": "midjourney-video", "prompt": "ok",
                                                        "midjourneyVideoParams": {"resolution": "4k"}},
     {"midjourneyVideoParams.start_image": ["Required"],
      "midjourneyVideoParams.resolution": ["Invalid enum value. Expected one of: sd, hd"]}),
    ("sora-2 valid", {"model": "sora-2", "prompt": "ok", "soraParams": {"duration": 12, "resolution": "high"}}, {}),
]


@pytest.mark.parametrize("name, body, errors", CASES, ids=[c[0] for c in CASES])
def test_generate_body_errors(name, body, errors):
    assert body_errors(body) == errors


def test_the_longest_prompt_of_each_model_passes_and_one_more_character_is_named():
    for name, model in MODELS.items():
        block = {"image": "https://x.test/i.png", "video": "https://x.test/v.mp4"} \
            if name == "kling-3.0-motion-control" else {"start_image": "https://x.test/i.png"} \
            if name == "midjourney-video" else {}
        body = {"model": name, "prompt": "p" * model.prompt_max_chars, model.params_field: block}
        assert body_errors(body) == {}, name
        body["prompt"] += "p"
        assert body_errors(body) == {"prompt": [f"String must contain at most {model.prompt_max_chars} character(s)"]}
