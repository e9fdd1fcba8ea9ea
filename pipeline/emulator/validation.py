"""Decides whether a POST /v2/videos/generate body is valid for grok-imagine-video, by openapi.json's rules.

Errors come back the way the API's Zod validation reports them: a map from JSON path to messages.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pipeline.models import MODELS

TOP_LEVEL = ("model", "prompt", "webhookUrl", "webhookEvents")
WEBHOOK_EVENTS = ("progress", "completed", "failed")


def _is_uri(value: Any) -> bool:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _add(errors: dict[str, list[str]], path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


def validate_generate(body: Any) -> dict[str, list[str]]:
    """{json_path: [messages]}; empty when the body is valid."""
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict):
        _add(errors, "", "Expected object")
        return errors
    model = MODELS.get(body.get("model")) if isinstance(body.get("model"), str) else None
    if "model" not in body:
        _add(errors, "model", "Required")
    elif model is None:
        _add(errors, "model", f"Invalid enum value. Expected one of: {', '.join(MODELS)}")
    model = model or next(iter(MODELS.values()))
    params_field = model.params_field
    for key in body:
        if key not in TOP_LEVEL and key != params_field:
            _add(errors, key, "Unrecognized key")
    _check_top_level(errors, body, model)
    params = body.get(params_field)
    if params is None:
        return errors
    if not isinstance(params, dict):
        _add(errors, params_field, "Expected object")
        return errors
    _check_params(errors, params, model)
    return errors


def _check_top_level(errors: dict[str, list[str]], body: dict, model) -> None:
    """prompt, webhookUrl and webhookEvents."""
    prompt = body.get("prompt")
    if "prompt" not in body:
        _add(errors, "prompt", "Required")
    elif not isinstance(prompt, str):
        _add(errors, "prompt", "Expected string")
    elif len(prompt) < model.prompt_min_chars:
        _add(errors, "prompt", f"String must contain at least {model.prompt_min_chars} character(s)")
    elif len(prompt) > model.prompt_max_chars:
        _add(errors, "prompt", f"String must contain at most {model.prompt_max_chars} character(s)")
    if "webhookUrl" in body and not _is_uri(body["webhookUrl"]):
        _add(errors, "webhookUrl", "Invalid url")
    if "webhookEvents" in body:
        events = body["webhookEvents"]
        if not isinstance(events, list) or not events:
            _add(errors, "webhookEvents", "Expected a non-empty array")
        else:
            for i, event in enumerate(events):
                if event not in WEBHOOK_EVENTS:
                    _add(errors, f"webhookEvents.{i}",
                         f"Invalid enum value. Expected one of: {', '.join(WEBHOOK_EVENTS)}")


def _check_params(errors: dict[str, list[str]], params: dict, model) -> None:
    """The model's parameters object (`grokImagineVideoParams`): duration, aspect_ratio, reference_images."""
    params_field = model.params_field
    for key in params:
        if key not in ("duration", "aspect_ratio", "reference_images"):
            _add(errors, f"{params_field}.{key}", "Unrecognized key")
    if "duration" in params:
        duration = params["duration"]
        if not _is_number(duration):
            _add(errors, f"{params_field}.duration", "Expected number")
        elif duration not in model.durations:
            _add(errors, f"{params_field}.duration", f"Invalid literal value, expected one of {list(model.durations)}")
    if "aspect_ratio" in params and params["aspect_ratio"] not in model.aspect_ratios:
        _add(errors, f"{params_field}.aspect_ratio",
             f"Invalid enum value. Expected one of: {', '.join(model.aspect_ratios)}")
    if "reference_images" in params:
        refs = params["reference_images"]
        if not isinstance(refs, list):
            _add(errors, f"{params_field}.reference_images", "Expected array")
        else:
            if len(refs) > model.max_reference_images:
                _add(errors, f"{params_field}.reference_images",
                     f"Array must contain at most {model.max_reference_images} element(s)")
            for i, ref in enumerate(refs):
                if not _is_uri(ref):
                    _add(errors, f"{params_field}.reference_images.{i}", "Invalid url")
