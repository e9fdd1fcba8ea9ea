"""`--notify URL`: tell a chat channel or a scheduler that the batch ended, whatever the outcome.

One JSON POST: a Slack-compatible `text` plus the run summary's fields. A failed delivery (no
connection, a timeout, a 5xx or 429) is retried with doubling waits; a 4xx other than 429 will
not get better and is not. Delivery never changes the run's exit code: the batch's outcome is
the batch's, not the chat server's.

The URL often carries a secret (Slack's webhook URLs are bearer tokens): it is registered with
redact() so it never appears in a log line, an error or the summary.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from pipeline.redact import redact, register_secret

ATTEMPTS = 4
FIRST_DELAY_S = 1.0  # then 2 s, 4 s
TIMEOUT_S = 10.0


class NotifyUrlError(ValueError):
    pass


def check_url(url: str) -> str:
    """The URL if it can be posted to; registered as a secret either way, before any message names it."""
    register_secret(url)
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail) >= 8:  # a token in the path may turn up without the host (short paths are no secret)
        register_secret(tail)
    if parts.password:
        register_secret(parts.password)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyUrlError("--notify needs an http:// or https:// URL")
    return url


@dataclass
class Delivery:
    delivered: bool
    attempts: int
    error: str | None  # the last failure, redacted

    def as_dict(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "attempts": self.attempts, "error": self.error}


async def post(url: str, payload: dict[str, Any], *, attempts: int = ATTEMPTS, first_delay: float = FIRST_DELAY_S,
               timeout: float = TIMEOUT_S, on_attempt: Callable[[int, str | None], None] | None = None) -> Delivery:
    """POST `payload` as JSON until a 2xx, a hopeless answer, or `attempts` tries."""
    import aiohttp  # lazy: every run imports this module for check_url; only --notify needs aiohttp

    check_url(url)
    error: str | None = None
    tried = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for tried in range(1, attempts + 1):
            retry = True
            try:
                async with session.post(url, json=payload) as answer:
                    await answer.read()
                    if 200 <= answer.status < 300:
                        error = None
                    else:
                        error = f"HTTP {answer.status}"
                        retry = answer.status >= 500 or answer.status == 429
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                error = redact(f"{type(exc).__name__}: {exc}")
            if on_attempt is not None:
                on_attempt(tried, error)
            if error is None or not retry:
                break
            if tried < attempts:
                await asyncio.sleep(first_delay * 2 ** (tried - 1))
    return Delivery(delivered=error is None, attempts=tried, error=error)


def notify(url: str, payload: dict[str, Any], **options: Any) -> Delivery:
    """post() for synchronous callers (the CLI and run_batch, after the run's event loop ended)."""
    return asyncio.run(post(url, payload, **options))
