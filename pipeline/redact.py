"""Keep API keys out of everything we print, log or store."""

from __future__ import annotations

import re

# Apiframe keys start with `afk_`; anything shaped like one is masked even if it is not ours.
_KEY_SHAPE = re.compile(r"afk_[A-Za-z0-9_\-]{4,}")
_known_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret so redact() masks it wherever it turns up."""
    if secret and len(secret) >= 4:
        _known_secrets.add(secret)


def redact(text: str) -> str:
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return _KEY_SHAPE.sub("afk_***", text)
