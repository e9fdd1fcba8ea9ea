"""pipeline/redact.py: registered secrets and anything shaped like an Apiframe key are masked,
wherever in a text they sit: nested JSON, URLs, tracebacks."""

from __future__ import annotations

import json

import pytest

from pipeline import redact as redact_module
from pipeline.redact import redact, register_secret

KEY = "afk_live_Q2w3E4r5T6y7"


@pytest.fixture(autouse=True)
def no_secrets_yet(monkeypatch):
    """Each test starts with no registered secret (the set is process-wide)."""
    monkeypatch.setattr(redact_module, "_known_secrets", set())


@pytest.mark.parametrize("text, shown", [
    (f"key {KEY} leaked", "key afk_*** leaked"),
    (f"https://api.example/v2/jobs?key={KEY}&x=1", "https://api.example/v2/jobs?key=afk_***&x=1"),
    (f"https://u:{KEY}@host/path", "https://u:afk_***@host/path"),
    (f"{KEY},afk_other-key_99", "afk_***,afk_***"),  # underscores and dashes belong to the key
    (f"{KEY}.", "afk_***."),  # a full stop ends it
    ("afk_abc", "afk_abc"),  # too short to be a key
    ("AFK_LIVE_Q2w3E4r5T6y7", "AFK_LIVE_Q2w3E4r5T6y7"),  # the prefix is lower case
    ("no key here", "no key here"),
    ("", ""),
])
def test_anything_shaped_like_a_key_is_masked(text, shown):
    assert redact(text) == shown


def test_a_key_in_nested_json_is_masked_and_the_json_still_parses():
    doc = {"request": {"headers": {"X-API-Key": KEY}, "urls": [f"https://h/cb?token={KEY}"]},
           "errors": [{"detail": f"bad key {KEY}"}]}
    masked = redact(json.dumps(doc))
    assert KEY not in masked and masked.count("afk_***") == 3
    assert json.loads(masked)["request"]["headers"]["X-API-Key"] == "afk_***"


def test_a_registered_secret_of_any_shape_is_masked():
    secret = "hunter2-correct-horse"
    assert redact(f"password {secret}") == f"password {secret}"  # not key-shaped: only once known
    register_secret(secret)
    assert redact(f"{{\"a\": [\"{secret}\", \"x{secret}y\"]}}") == '{"a": ["***", "x***y"]}'
    assert redact(f"https://h/?s={secret}&t={secret}") == "https://h/?s=***&t=***"


def test_a_registered_key_is_masked_whole_not_left_as_a_tail():
    register_secret(KEY)
    assert redact(f"key={KEY}") == "key=***"


@pytest.mark.parametrize("secret", [None, "", "abc"])
def test_empty_and_very_short_secrets_are_not_registered(secret):
    register_secret(secret)
    assert redact_module._known_secrets == set()
    assert redact("abc and a and b") == "abc and a and b"  # masking "a" or "abc" would garble everything
