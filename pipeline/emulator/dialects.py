"""Ways the real API may differ from our first assumptions, each a switch of the emulator.

CONTRACT.md marks which facts are spec, SDK or assumed; every dialect here is a reading of the
evidence that a client must survive. `--dialect a,b` (or `all`) turns them on together.
"""

from __future__ import annotations

import argparse

DIALECTS: dict[str, str] = {
    "result-string": "a COMPLETED job's result is the bare video URL (as in the SDK's test fixtures)",
    "result-list": "a COMPLETED job's result is a list of {url} objects",
    "submit-id": "a submit answers {id, status} instead of {jobId, status}",
    "ignore-status-filter": "GET /v2/jobs ignores ?status= and lists jobs of every status",
    "ignore-model-filter": "GET /v2/jobs ignores ?model= and lists jobs of every model",
    "list-4xx": "GET /v2/jobs answers 400, so jobs can only be read one by one",
    "conflict-while-in-flight": "a replayed Idempotency-Key gets 409 for a few seconds after its create",
    "cdn-redirect": ("result URLs are on another host and redirect to a signed URL served as "
                     "binary/octet-stream"),
    "retry-after-date": "a 429's Retry-After is an HTTP-date, not seconds",
    "read-lag": "a new job is 404 and missing from lists for a moment",
    "stuck": "one job in seven never finishes",
}
ALL = "all"

# How long the in-flight and read-lag windows last, in real seconds (not scaled with time_scale:
# they model the API's own machinery, not generation).
CONFLICT_WINDOW_S = 1.5
READ_LAG_S = 1.0
STUCK_EVERY = 7


def parse_dialects(text: str) -> tuple[str, ...]:
    """`a,b` or `all` -> the dialect names; ValueError names the unknown ones and the known."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == [ALL]:
        return tuple(DIALECTS)
    unknown = [name for name in names if name not in DIALECTS]
    if unknown:
        raise ValueError(f"unknown dialect {', '.join(unknown)}; known: {', '.join(DIALECTS)}, or all")
    return tuple(dict.fromkeys(names))


def emulator_dialects(text: str) -> tuple[str, ...]:
    """argparse type for --dialect."""
    try:
        return parse_dialects(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
