"""Decides the clip a job makes: its length and frame size, per model, aspect ratio and resolution.

grok-imagine-video keeps CONTRACT.md's sizes (short side 720) and its documented 6 s default.
Other models' sizes are not documented; the emulator draws a plausible one: the short side from
the resolution asked (480p/720p/768p/1080p, 4k = 2160, Sora standard/high = 720/1080,
Midjourney sd/hd = 480/720, Kling's mode standard/pro/4k = 720/1080/2160) or the family's usual
one, the long side from the aspect ratio. Veo's free-text ratio is read as "W:H"; a ratio left
out, unreadable or `adaptive` is 16:9, and one beyond 3:1 is drawn at 3:1 (a test double need
not encode a 720x72000 frame). A clip left without a duration is the model's usual default.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from pipeline.models import VideoModel

SHORT_SIDE = {"480p": 480, "720p": 720, "768p": 768, "1080p": 1080, "4k": 2160, "standard": 720, "std": 720,
              "high": 1080, "pro": 1080, "sd": 480, "hd": 720}
FAMILY_SHORT_SIDE = {"hailuo": 768, "seedance": 1080, "midjourneyVideo": 480}  # others: 720
FAMILY_SECONDS = {"veo": 8, "sora": 4, "hailuo": 6}  # others: 5 s where the model makes it
WIDEST = 3.0
RATIO = re.compile(r"^(\d+):(\d+)$")


class Clip(NamedTuple):
    seconds: int
    width: int
    height: int


def default_seconds(model: VideoModel) -> int:
    """The clip length when the request asks none."""
    if model.default_duration is not None:
        return model.default_duration
    usual = FAMILY_SECONDS.get(model.family, 5)
    if not model.durations or usual in model.durations:
        return usual
    return min(model.durations)


def _ratio(aspect_ratio: Any) -> float:
    match = RATIO.match(aspect_ratio) if isinstance(aspect_ratio, str) else None
    if match is None or 0 in (int(match[1]), int(match[2])):
        return 16 / 9
    return min(WIDEST, max(1 / WIDEST, int(match[1]) / int(match[2])))


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def frame_size(model: VideoModel, block: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of the clip a job of `model` with params `block` makes."""
    aspect_ratio = block.get("aspect_ratio")
    documented = model.frame_size(aspect_ratio or model.default_aspect_ratio)
    if documented is not None:
        return documented
    short = (SHORT_SIDE.get(block.get("resolution")) or SHORT_SIDE.get(block.get("mode"))
             or FAMILY_SHORT_SIDE.get(model.family, 720))
    ratio = _ratio(aspect_ratio)
    return (_even(short * ratio), short) if ratio >= 1 else (short, _even(short / ratio))


def clip_of(model: VideoModel, block: dict[str, Any]) -> Clip:
    """The clip a job makes: the duration asked (or the default) and its frame size."""
    duration = block.get("duration")
    seconds = int(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) \
        else default_seconds(model)
    return Clip(seconds, *frame_size(model, block))
