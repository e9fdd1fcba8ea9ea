"""pipeline/run/attempts.py's table: what the body and the Idempotency-Key of an attempt are made of."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.api.uploads import LocalImage
from pipeline.run.attempts import body_bytes, idempotency_key, intent_fields, key_request, request_body

ROW = {"model": "grok-imagine-video", "prompt": "a lighthouse at dusk", "duration": 6, "aspect_ratio": "16:9"}
IMAGE = LocalImage(Path("ref.png"), b"png bytes", hashlib.sha256(b"png bytes").hexdigest())
NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)


def test_body_bytes_are_canonical_json():
    assert body_bytes({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    assert body_bytes({"a": 1, "b": 2}) == body_bytes({"b": 2, "a": 1})


def test_the_key_names_the_row_the_attempt_and_the_request():
    request = b'{"prompt":"x"}'
    key = idempotency_key("scene-1", 2, request)
    assert key == f"vb-scene-1-a2-{hashlib.sha256(request).hexdigest()[:16]}"


KEYS = [  # (what changes, row, refs) -> the key changes?
    ("nothing", ROW, [], False),
    ("the prompt", {**ROW, "prompt": "another"}, [], True),
    ("the duration", {**ROW, "duration": 10}, [], True),
    ("a local image (named by its content)", ROW, [IMAGE], True),
]


@pytest.mark.parametrize("name, row, refs, changes", KEYS, ids=[k[0] for k in KEYS])
def test_what_makes_a_new_key(name, row, refs, changes):
    base = idempotency_key("k", 1, key_request(ROW, []))
    assert (idempotency_key("k", 1, key_request(row, refs)) != base) is changes


def test_the_key_ignores_the_webhook_and_the_upload_url():
    """A rerun that uploads again (a new URL) or moved its tunnel reaches the same key."""
    key_body = json.loads(key_request(ROW, [IMAGE]))
    assert IMAGE.sha256 in json.dumps(key_body)
    sent = json.loads(request_body(ROW, ["https://uploads.example/1.png"], "https://hooks.example/x"))
    assert "https://hooks.example/x" in json.dumps(sent) and "https://hooks.example/x" not in json.dumps(key_body)


INTENTS = [  # (attempts before, charged before) -> attempt, credits_prior, credits_charged
    (0, 0, 1, 0, 0),
    (1, 15, 2, 15, 15),
    (3, 40, 4, 40, 40),
]


@pytest.mark.parametrize("before, charged, attempt, prior, now_charged", INTENTS)
def test_an_intent_starts_afresh_and_keeps_what_earlier_attempts_cost(before, charged, attempt, prior, now_charged):
    body = request_body(ROW, [], None)
    fields = intent_fields("scene-1", ROW, [], body, attempts_before=before, charged=charged, now=NOW)
    assert (fields["attempts"], fields["credits_prior"], fields["credits_charged"]) == (attempt, prior, now_charged)
    assert fields["status"] == "PENDING" and fields["request_body"] == body.decode()
    assert fields["idempotency_key"] == idempotency_key("scene-1", attempt, key_request(ROW, []))
    assert {fields[k] for k in ("job_id", "video_url", "error", "completed_at")} == {None}
    assert fields["expired"] is False and fields["first_sent_at"] == NOW
    assert {k: fields[k] for k in ROW} == ROW
