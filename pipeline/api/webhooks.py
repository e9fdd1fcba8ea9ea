"""Optional webhook receiver: Apiframe's signed events as hints that a job has news.

An event is never trusted as a job's state (its body is only partly documented): a verified
event for a job we are waiting on just makes the tracker poll sooner. Polling stays on as the
safety net, so a lost or forged webhook costs nothing but latency.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from pipeline.api.wire import job_id_of
from pipeline.http_server import Site

MAX_BODY = 64 * 1024


def signature(api_key: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the raw body, keyed by the raw sha256 digest of the API key."""
    key = hashlib.sha256(api_key.encode()).digest()
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(api_key: str, body: bytes, header: str | None) -> bool:
    """`sha256=<hex>` or the bare hex, in either case (the SDK's `parseSignature`), compared in
    constant time as bytes (compare_digest raises on a non-ASCII str: a forged header's 500)."""
    if not header:
        return False
    given = header.strip()
    if given[:7].lower() == "sha256=":
        given = given[7:]
    expected = signature(api_key, body).removeprefix("sha256=")
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


def event_kind(event: dict) -> str | None:
    """The event's kind: `type` (an SDK comment) or `event` (documentation pages)."""
    kind = event.get("type", event.get("event"))
    return kind if isinstance(kind, str) else None


class WebhookReceiver:
    """Serves POST on any path at host:port; calls `on_hint(job_id)` for each verified event."""

    def __init__(self, api_key: str, on_hint: Callable[[str], None], host: str, port: int):
        self._key = api_key
        self.on_hint = on_hint
        self.host, self.port = host, port  # after start(), the port it got (0 picks a free one)
        self.received = 0
        self.rejected = 0
        self.kinds: Counter[str] = Counter()
        self._site = Site()

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()  # the whole body, however it arrives; the app caps its size
        except web.HTTPRequestEntityTooLarge:
            body = None
        if body is None or not verify(self._key, body, request.headers.get("X-Webhook-Signature")):
            self.rejected += 1
            return web.json_response({"error": "bad signature"}, status=401)
        try:
            event = json.loads(body)
        except ValueError:
            self.rejected += 1
            return web.json_response({"error": "not JSON"}, status=400)
        self.received += 1
        job_id = job_id_of(event)
        if job_id is None and isinstance(event, dict):  # some senders nest the job
            job_id = job_id_of(event.get("data")) or job_id_of(event.get("job"))
        if job_id is not None:
            self.kinds[event_kind(event) or "unknown"] += 1
            self.on_hint(job_id)
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/{tail:.*}", self._handle)
        _, self.port = await self._site.start(app, self.host, self.port)

    async def stop(self) -> None:
        await self._site.stop()
