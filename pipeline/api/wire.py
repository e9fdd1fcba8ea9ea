"""Reading the API's answers liberally: the fields whose shape the spec leaves open.

Every function here takes what the API sent and returns a plain value or None ("could not
read it"); none raises on a surprising shape. What None means for money is decided elsewhere
(pipeline/run/transitions.py), and it is never "generate again".

Evidence (../shared/apiframe-v2/CONTRACT.md and the official Node SDK, commit 9f9b464):
- `result` is untyped in openapi.json (`"result": {}`); the SDK's test fixtures return a bare URL
  string (test/jobs.test.ts: `result: 'https://cdn/x.png'`); product pages have shown
  `{"videoUrl": url}` and `{"videos": [url]}`. So: a string, a list, or an object with
  `videoUrl`, `url` or `videos`, whose items may be strings or objects with `url`.
- `Retry-After`: whole seconds or an HTTP-date (SDK src/http.ts `parseRetryAfter`).
- Timestamps are RFC 3339 (`format: date-time`); we also accept one without an offset (UTC) and
  numeric epoch seconds.
"""

from __future__ import annotations

import email.utils
import json
import time
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

RETRY_AFTER_MAX_S = 300.0


class ApiStatus(StrEnum):
    """A job's `status` as the API reports it (openapi.json): the API's words, not the ledger's."""

    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


GENERATING = (ApiStatus.QUEUED, ApiStatus.PROCESSING)
ENDED = (ApiStatus.COMPLETED, ApiStatus.FAILED, ApiStatus.CANCELLED)
_URL_KEYS = ("videoUrl", "url", "video_url")


def _url(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict):
        for key in _URL_KEYS:
            if isinstance(value.get(key), str) and value[key].strip():
                return value[key].strip()
    return None


def result_url(result: Any) -> str | None:
    """The first video URL in a job's `result`, whatever its shape; None when there is none."""
    if isinstance(result, list):
        return next((url for url in map(_url, result) if url), None)
    if isinstance(result, dict):
        direct = _url(result)
        if direct:
            return direct
        for key in ("videos", "urls", "files"):
            if isinstance(result.get(key), list):
                return result_url(result[key])
        return None
    return _url(result)


def job_id_of(answer: Any) -> str | None:
    """The job id in a submit answer or a job object: `jobId` (spec) or `id`."""
    if not isinstance(answer, dict):
        return None
    for key in ("jobId", "id", "job_id"):
        value = answer.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def parse_api_time(value: Any) -> float | None:
    """Epoch seconds from an RFC 3339 string (no offset means UTC) or a number of epoch seconds."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) / (1000.0 if value > 1e11 else 1.0)  # milliseconds, by their size
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return parse_api_time(float(text))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait, clamped to 0..300; None when missing or unreadable (the caller backs off)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(RETRY_AFTER_MAX_S, max(0.0, seconds))


def request_shape(body: Any) -> tuple | None:
    """(model, prompt, duration, aspect ratio, references, the other params), the model's own
    documented defaults filled in."""
    from pipeline.models import SHARED_PARAMS, get_model  # the one table of what a model accepts and defaults to

    if not isinstance(body, dict):
        return None
    try:
        model = get_model(body.get("model"))
    except (KeyError, TypeError):
        return None  # not a model we submit to: never ours
    params = body.get(model.params_field)
    if not isinstance(params, dict):  # liberal: any `...Params` object, or none (all defaults)
        params = next((v for k, v in body.items() if k.endswith("Params") and isinstance(v, dict)), {})
    references = params.get("reference_images") or []
    # The model's other params take part too: one prompt on one model may be asked at two
    # resolutions (a matrix), and each job must be matched to its own row.
    others = json.dumps({k: v for k, v in params.items() if k not in SHARED_PARAMS},
                        sort_keys=True, default=str)
    return (model.name, body.get("prompt"), params.get("duration", model.default_duration),
            params.get("aspect_ratio", model.default_aspect_ratio),
            tuple(references) if isinstance(references, list) else references, others)


def same_request(listed_input: Any, journaled_body: dict[str, Any]) -> bool:
    """Is a listed job's `input` (the request as the API accepted it) the body we journaled?

    Compared on what makes the video (model, prompt, duration, aspect ratio, references, params), with
    the documented defaults filled in, so an API that echoes defaults or drops our webhook
    fields still matches; a job with any other prompt or setting never does.
    """
    mine = request_shape(journaled_body)
    return mine is not None and mine[1] is not None and request_shape(listed_input) == mine
