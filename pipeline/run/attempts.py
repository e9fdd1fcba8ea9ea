"""Decides what an attempt sends: its exact request body, its Idempotency-Key, and the ledger
fields of its intent. Pure: no I/O, no clock (the caller passes the time)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pipeline.api.uploads import LocalImage
from pipeline.models import get_model
from pipeline.run.references import named, named_params, row_duration
from pipeline.store.schema import PENDING


def body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def idempotency_key(job_key: str, attempt: int, request: bytes) -> str:
    """Derived from what the row asks for: `request` is the body with each local reference image
    named by its content's sha256 and no webhook (`key_request`), never a URL the API handed back.
    So a rerun that lost its journal and uploads again reaches the same key: within 24 h the API
    answers with the original job, or a 409 for the new body (CONTRACT.md, Idempotency-Key; the
    SDK's ConflictError), after which the job is found by content (run/submit.py,
    `Submitter._adopt_by_content`) or the row stays in flight: never a second paid job."""
    return f"vb-{job_key}-a{attempt}-{hashlib.sha256(request).hexdigest()[:16]}"


def key_request(row: dict[str, Any], refs: list[str | LocalImage], params: dict[str, Any] | None = None) -> bytes:
    """The request a key is derived from. The webhook is left out: where events go is not what
    the row asks for, and a tunnel's URL that changed since must not make a new key. A row
    without params (every grok row) gives the very bytes, and so the key, it always gave."""
    body = get_model(row["model"]).request_body(row["prompt"], row_duration(row), row["aspect_ratio"],
                                              [named(ref) for ref in refs], params=named_params(params or {}))
    return body_bytes(body)


def request_body(row: dict[str, Any], references: list[str], webhook_url: str | None,
                 params: dict[str, Any] | None = None) -> bytes:
    """The bytes sent: the uploaded images' URLs and the webhook, where `key_request` names the
    images by content and leaves the webhook out."""
    return body_bytes(get_model(row["model"]).request_body(row["prompt"], row_duration(row), row["aspect_ratio"],
                                                           references, webhook_url=webhook_url, params=params))


def intent_fields(job_key: str, row: dict[str, Any], refs: list[str | LocalImage], body: bytes, *,
                  attempts_before: int, charged: int, now: datetime,
                  params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ledger fields of a new attempt's intent, journaled before its request leaves."""
    attempt = attempts_before + 1
    # What earlier attempts cost stays on the row.
    return dict(
        **row, status=PENDING, attempts=attempt,
        idempotency_key=idempotency_key(job_key, attempt, key_request(row, refs, params)),
        request_body=body.decode(), credits_prior=charged, credits_charged=charged, job_id=None,
        video_url=None, expired=False, error=None, completed_at=None, first_sent_at=now,
    )
