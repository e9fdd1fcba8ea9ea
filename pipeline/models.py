"""What each model accepts and what it costs: one table for validation, planning and the emulator.

Facts come from ../shared/apiframe-v2/CONTRACT.md (openapi.json for the rules, the product
documentation for credits and defaults). Frame sizes are assumed there: short side 720.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VideoModel:
    name: str
    params_field: str  # the `<model>Params` block of the request body
    credits: dict[int, int]  # clip duration in seconds -> credits charged
    frame_sizes: dict[str, tuple[int, int]]  # aspect ratio -> (width, height)
    default_duration: int
    default_aspect_ratio: str
    max_reference_images: int
    prompt_max_chars: int
    prompt_min_chars: int = 1

    @property
    def durations(self) -> tuple[int, ...]:
        return tuple(self.credits)

    @property
    def aspect_ratios(self) -> tuple[str, ...]:
        return tuple(self.frame_sizes)

    def credits_for(self, duration: int) -> int:
        return self.credits[duration]

    def frame_size(self, aspect_ratio: str) -> tuple[int, int]:
        return self.frame_sizes[aspect_ratio]

    def request_body(
        self,
        prompt: str,
        duration: int,
        aspect_ratio: str,
        reference_images: list[str] | tuple[str, ...] = (),
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        """The JSON body of POST /v2/videos/generate, every parameter explicit.

        Defaults are spelled out so that the body, and so the job, never depends on a default
        the API might change.
        """
        params: dict[str, Any] = {"duration": duration, "aspect_ratio": aspect_ratio}
        if reference_images:
            params["reference_images"] = list(reference_images)
        body: dict[str, Any] = {"model": self.name, "prompt": prompt, self.params_field: params}
        if webhook_url:
            body["webhookUrl"] = webhook_url
            body["webhookEvents"] = ["completed", "failed"]
        return body


GROK_IMAGINE_VIDEO = VideoModel(
    name="grok-imagine-video",
    params_field="grokImagineVideoParams",
    credits={6: 10, 10: 15, 15: 25},
    frame_sizes={
        "1:1": (720, 720),
        "16:9": (1280, 720),
        "9:16": (720, 1280),
        "4:3": (960, 720),
        "3:4": (720, 960),
        "3:2": (1080, 720),
        "2:3": (720, 1080),
    },
    default_duration=6,
    default_aspect_ratio="16:9",
    max_reference_images=7,
    prompt_max_chars=5000,
)

MODELS: dict[str, VideoModel] = {GROK_IMAGINE_VIDEO.name: GROK_IMAGINE_VIDEO}
DEFAULT_MODEL = GROK_IMAGINE_VIDEO.name


def get_model(name: str) -> VideoModel:
    """The model called `name`; KeyError names the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
