"""What each video model accepts and what it costs: one table for validation, planning, the
emulator and the docs.

Every model's parameters come from schemas.json, trimmed from openapi.json's own
`GenerateVideoRequest` by `python -m pipeline.models.trim` (CONTRACT.md, "The other video
models"). Prices, defaults and frame sizes are documented only for grok-imagine-video
(CONTRACT.md, "Submit"), so only that model carries them; every other model is priced from the
public catalog (pricing.py) and its frame size is recorded, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

SCHEMAS = json.loads(Path(__file__).with_name("schemas.json").read_text())["models"]
# The manifest's own fields that land in a model's params block under the same name.
SHARED_PARAMS = ("duration", "aspect_ratio", "reference_images")


def _choices(schema: dict[str, Any]) -> tuple | None:
    """The finite values a parameter takes: its enum, its anyOf of enums, or an integer range."""
    if "enum" in schema:
        return tuple(schema["enum"])
    if "anyOf" in schema and all("enum" in option for option in schema["anyOf"]):
        return tuple(value for option in schema["anyOf"] for value in option["enum"])
    if schema.get("type") == "integer" and "minimum" in schema and "maximum" in schema:
        low, high = int(schema["minimum"]), int(schema["maximum"])
        return tuple(range(low, high + 1)) if high - low <= 100 else None  # a seed's range is no list
    return None


def _is_image_url(schema: dict[str, Any]) -> bool:
    if schema.get("format") == "uri":
        return True
    items = schema.get("items")
    return schema.get("type") == "array" and isinstance(items, dict) and items.get("format") == "uri"


def uploadable(param: str) -> bool:
    """Whether a local file may stand for an image-URL parameter (start_image, last_frame,
    reference_images...): it is uploaded. Video and audio URLs (reference_videos, audio,
    first_clip) must be URLs."""
    return not any(word in param for word in ("video", "audio", "clip"))


@dataclass(frozen=True)
class VideoModel:
    name: str
    schema: dict[str, Any] = field(repr=False, compare=False)  # the request body's JSON schema
    # Documented for grok-imagine-video only (CONTRACT.md); empty elsewhere.
    credits: dict[int, int] = field(default_factory=dict)  # duration in seconds -> credits charged
    frame_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # aspect ratio -> (w, h)
    default_duration: int | None = None
    default_aspect_ratio: str | None = None

    @cached_property
    def params_field(self) -> str:
        """The `<family>Params` block of the request body."""
        return next(key for key in self.schema["properties"] if key.endswith("Params"))

    @property
    def family(self) -> str:
        return self.params_field.removesuffix("Params")

    @cached_property
    def params(self) -> dict[str, dict[str, Any]]:
        """Each parameter of the params block and its schema."""
        return self.schema["properties"][self.params_field].get("properties", {})

    @cached_property
    def durations(self) -> tuple[int, ...]:
        """The clip lengths the model makes, in seconds (empty: it takes no duration)."""
        return tuple(int(d) for d in _choices(self.params.get("duration", {})) or ())

    @cached_property
    def aspect_ratios(self) -> tuple[str, ...] | None:
        """The aspect ratios the model takes; None if it takes any text (Veo) or none at all."""
        return _choices(self.params["aspect_ratio"]) if "aspect_ratio" in self.params else None

    @cached_property
    def image_params(self) -> tuple[str, ...]:
        """Parameters holding image (or video, audio) URLs: a local file there is uploaded."""
        return tuple(name for name, schema in self.params.items() if _is_image_url(schema))

    @property
    def upload_params(self) -> tuple[str, ...]:
        """The URL parameters a manifest may give a local file for (uploaded, as reference images are)."""
        return tuple(name for name in self.image_params if uploadable(name))

    @property
    def max_reference_images(self) -> int:
        return int(self.params.get("reference_images", {}).get("maxItems", 0))

    @property
    def prompt_max_chars(self) -> int:
        return int(self.schema["properties"]["prompt"].get("maxLength", 4000))

    @property
    def prompt_min_chars(self) -> int:
        return int(self.schema["properties"]["prompt"].get("minLength", 1))

    def takes(self, param: str) -> bool:
        return param in self.params

    @property
    def longest(self) -> int | None:
        """The longest clip the model makes: what an estimate assumes when no duration is asked."""
        return max(self.durations) if self.durations else None

    def credits_for(self, duration: int) -> int:
        return self.credits[duration]

    def frame_size(self, aspect_ratio: str | None) -> tuple[int, int] | None:
        """The frame size a clip must have, where it is known (grok only); None: record it."""
        return self.frame_sizes.get(aspect_ratio) if aspect_ratio else None

    def request_body(
        self,
        prompt: str,
        duration: int | None,
        aspect_ratio: str | None,
        reference_images: list[str] | tuple[str, ...] = (),
        webhook_url: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON body of POST /v2/videos/generate.

        Grok's defaults are spelled out so that the body, and so the job, never depends on a
        default the API might change; other models get what the manifest asked for, nothing more.
        The params block is always sent (three models require it, openapi.json)."""
        block: dict[str, Any] = {}
        if duration is not None:
            block["duration"] = duration
        if aspect_ratio is not None:
            block["aspect_ratio"] = aspect_ratio
        if reference_images:
            block["reference_images"] = list(reference_images)
        block.update(params or {})
        body: dict[str, Any] = {"model": self.name, "prompt": prompt, self.params_field: block}
        if webhook_url:
            body["webhookUrl"] = webhook_url
            body["webhookEvents"] = ["completed", "failed"]
        return body


GROK_IMAGINE_VIDEO = VideoModel(
    name="grok-imagine-video",
    schema=SCHEMAS["grok-imagine-video"],
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
)

MODELS: dict[str, VideoModel] = {
    name: GROK_IMAGINE_VIDEO if name == GROK_IMAGINE_VIDEO.name else VideoModel(name=name, schema=schema)
    for name, schema in SCHEMAS.items()
}
DEFAULT_MODEL = GROK_IMAGINE_VIDEO.name


def get_model(name: str) -> VideoModel:
    """The model called `name`; KeyError names the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
