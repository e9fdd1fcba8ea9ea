"""pipeline/emulator/validation.py: POST /v2/videos/generate's body rules, answered the way the
API's Zod validation reports them (JSON path -> messages, in the order Zod finds them).
tests/emulator/test_contract.py sends such bodies over real sockets; this pins every message."""

from __future__ import annotations

import pytest

from pipeline.emulator.validation import validate_generate

P = "grokImagineVideoParams"
MODEL = "grok-imagine-video"

CASES = [
    ("not an object", [], {"": ["Expected object"]}),
    ("empty", {}, {"model": ["Required"], "prompt": ["Required"]}),
    ("unknown model and key", {"model": "sora", "prompt": 5, "x": 1},
     {"model": ["Invalid enum value. Expected one of: grok-imagine-video"], "x": ["Unrecognized key"],
      "prompt": ["Expected string"]}),
    ("every top-level and params rule", {
        "model": MODEL, "prompt": "", "webhookUrl": "not a url", "webhookEvents": ["completed", "nope"],
        P: {"duration": "6", "aspect_ratio": "21:9", "reference_images": ["x", "https://x.test/a.png"], "fps": 2}},
     {"prompt": ["String must contain at least 1 character(s)"], "webhookUrl": ["Invalid url"],
      "webhookEvents.1": ["Invalid enum value. Expected one of: progress, completed, failed"],
      f"{P}.fps": ["Unrecognized key"], f"{P}.duration": ["Expected number"],
      f"{P}.aspect_ratio": ["Invalid enum value. Expected one of: 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3"],
      f"{P}.reference_images.0": ["Invalid url"]}),
    ("too long, empty events, params not an object", {"model": MODEL, "prompt": "x" * 5001, "webhookEvents": [],
                                                      P: []},
     {"prompt": ["String must contain at most 5000 character(s)"], "webhookEvents": ["Expected a non-empty array"],
      P: ["Expected object"]}),
    ("a duration it does not make, images not a list", {"model": MODEL, "prompt": "ok",
                                                        P: {"duration": 7, "reference_images": "x"}},
     {f"{P}.duration": ["Invalid literal value, expected one of [6, 10, 15]"],
      f"{P}.reference_images": ["Expected array"]}),
    ("a yes/no duration", {"model": MODEL, "prompt": "ok", P: {"duration": True}},
     {f"{P}.duration": ["Expected number"]}),
    ("eight images", {"model": MODEL, "prompt": "ok",
                      P: {"reference_images": [f"https://x.test/{i}" for i in range(8)]}},
     {f"{P}.reference_images": ["Array must contain at most 7 element(s)"]}),
    ("null params", {"model": MODEL, "prompt": "ok", P: None}, {}),
    ("valid", {"model": MODEL, "prompt": "ok", "webhookUrl": "https://hooks.test/a", "webhookEvents": ["failed"],
               P: {"duration": 6, "aspect_ratio": "16:9", "reference_images": ["https://x.test/a.png"]}}, {}),
]


@pytest.mark.parametrize("name, body, errors", CASES, ids=[c[0] for c in CASES])
def test_generate_body_errors(name, body, errors):
    found = validate_generate(body)
    assert found == errors and list(found) == list(errors)  # the same paths, in the same order
