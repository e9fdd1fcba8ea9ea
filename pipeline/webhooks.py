"""Optional webhook receiver: Apiframe's signed events as hints that a job has news.

An event is never trusted as a job's state (its body is only partly documented): a verified
event for a job we are waiting on just makes the tracker poll sooner. Polling stays on as the
safety net, so a lost or forged webhook costs nothing but latency.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

from aiohttp import web

MAX_BODY = 64 * 1024


def signature(api_key: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the raw body, keyed by the raw sha256 digest of the API key."""
    key = hashlib.sha256(api_key.encode()).digest()
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(api_key: str, body: bytes, header: str | None) -> bool:
    # As bytes: compare_digest raises TypeError on a non-ASCII str, a forged header's 500.
    return bool(header) and hmac.compare_digest(signature(api_key, body).encode(),
                                                header.strip().encode("utf-8", "replace"))


class WebhookReceiver:
    """Serves POST on any path at host:port; calls `on_hint(job_id)` for each verified event."""

    def __init__(self, api_key: str, on_hint: Callable[[str], None], host: str, port: int):
        self._key = api_key
        self.on_hint = on_hint
        self.host, self.port = host, port
        self.received = 0
        self.rejected = 0
        self._runner: web.AppRunner | None = None

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
        job_id = event.get("jobId") if isinstance(event, dict) else None
        if isinstance(job_id, str):
            self.on_hint(job_id)
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
