"""pipeline/emulator/frames.py: the clip a job makes, per model, aspect ratio and resolution, as a
table. That the served video really has this length and size is tests/emulator/test_contract.py's."""

from __future__ import annotations

import pytest

from pipeline.emulator.frames import Clip, clip_of, default_seconds
from pipeline.models import GROK_IMAGINE_VIDEO, MODELS


@pytest.mark.parametrize("name, block, clip", [
    # grok: CONTRACT.md's sizes exactly, its documented 6 s and 16:9 by default
    ("grok-imagine-video", {}, Clip(6, 1280, 720)),
    ("grok-imagine-video", {"duration": 15, "aspect_ratio": "3:2"}, Clip(15, 1080, 720)),
    # the resolution asked sets the short side
    ("seedance-1-lite", {"resolution": "480p", "aspect_ratio": "9:21", "duration": 10}, Clip(10, 480, 1120)),
    ("seedance-2", {"resolution": "4k", "aspect_ratio": "16:9"}, Clip(5, 3840, 2160)),
    ("seedance-2", {"aspect_ratio": "adaptive"}, Clip(5, 1920, 1080)),  # adaptive: 16:9
    ("hailuo-02", {"resolution": "1080p", "duration": 10}, Clip(10, 1920, 1080)),
    ("hailuo-02", {}, Clip(6, 1366, 768)),  # no ratio to ask: 16:9; the family's 768p
    ("sora-2", {"resolution": "high", "aspect_ratio": "9:16"}, Clip(4, 1080, 1920)),
    ("sora-2-pro", {"duration": 12}, Clip(12, 1280, 720)),  # standard
    ("midjourney-video", {"start_image": "https://x.test/a.png", "resolution": "hd"}, Clip(5, 1280, 720)),
    ("midjourney-video", {"start_image": "https://x.test/a.png"}, Clip(5, 854, 480)),  # sd by default
    ("midjourney-video", {"start_image": "https://x.test/a.png", "resolution": "sd"}, Clip(5, 854, 480)),
    # Kling's mode is its resolution
    ("kling-3.0", {"mode": "4k", "aspect_ratio": "1:1", "duration": 3}, Clip(3, 2160, 2160)),
    ("kling-3.0", {"mode": "pro", "aspect_ratio": "9:16"}, Clip(5, 1080, 1920)),
    ("kling-3.0-motion-control", {"mode": "std"}, Clip(5, 1280, 720)),
    ("luma-ray-2", {"aspect_ratio": "21:9", "duration": 9}, Clip(9, 1680, 720)),
    # Veo's free text, read as W:H; beyond 3:1 drawn at 3:1; unreadable or 0: 16:9
    ("veo-3.1", {"aspect_ratio": "9:16", "resolution": "1080p"}, Clip(8, 1080, 1920)),
    ("veo-3.1", {"aspect_ratio": "5:4", "duration": 4}, Clip(4, 900, 720)),
    ("veo-3.1", {"aspect_ratio": "1:100"}, Clip(8, 720, 2160)),
    ("veo-3.1", {"aspect_ratio": "0:9"}, Clip(8, 1280, 720)),
    ("veo-3.1", {}, Clip(8, 1280, 720)),
    ("wan-2.7", {"duration": 2, "aspect_ratio": "4:3"}, Clip(2, 960, 720)),
])
def test_clip_of(name, block, clip):
    assert clip_of(MODELS[name], block) == clip


def test_every_default_is_a_length_the_model_makes():
    for model in MODELS.values():
        seconds = default_seconds(model)
        assert seconds in model.durations or not model.durations, model.name
    assert default_seconds(GROK_IMAGINE_VIDEO) == 6 and default_seconds(MODELS["seedance-1.5-pro"]) == 4


def test_every_grok_ratio_keeps_the_contracts_size():
    for ratio, size in GROK_IMAGINE_VIDEO.frame_sizes.items():
        assert clip_of(GROK_IMAGINE_VIDEO, {"aspect_ratio": ratio})[1:] == size
