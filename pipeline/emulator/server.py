"""The emulator's HTTP face, I/O: Apiframe v2 routes, a CDN, and a side door for tests.

`/v2/*` behaves like the API: key check, sliding-window rate limit, injected faults, then the
route; the model catalog (`/v2/models`) is public, so it skips the key and the key's rate limit. `/cdn/*` serves videos and uploads like a CDN (no key, no rate limit: cdn.py). `/_emulator/*`
is outside the API: server-side truth (`stats`) and live reconfiguration (`config`).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import threading
import time
import uuid
from typing import Any

from aiohttp import web

from pipeline.emulator.catalog import MODALITIES, catalog, charge
from pipeline.emulator.cdn import Cdn, drop
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.dialects import CONFLICT_WINDOW_S, READ_LAG_S
from pipeline.emulator.frames import clip_of
from pipeline.emulator.ratelimit import SlidingWindow
from pipeline.emulator.state import EmulatorState, canonical, iso
from pipeline.emulator.webhooks import WebhookSender
from pipeline.http_server import Site
from pipeline.models import get_model
from pipeline.models.validate import body_errors

MAX_IDEMPOTENCY_KEY = 255
IN_FLIGHT_GRACE_S = 0.05
MAX_UPLOAD_IMAGE = 25 * 1024 * 1024
IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
               (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))
STATE_KEY = web.AppKey("state", EmulatorState)
PUBLIC_PATHS = ("/v2/models",)  # no key, so no per-key rate limit either (openapi.json: security [])


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class EmulatorServer:
    def __init__(self, config: EmulatorConfig):
        self.config = config
        self.state = EmulatorState(config)
        self.window = SlidingWindow(config.rpm, config.rate_window_seconds)
        self.cdn = Cdn(config, self.state, self._settle)
        self.webhooks = WebhookSender(config.api_key)
        self.base_url = ""
        self.cdn_key_leaks = 0  # CDN requests that carried an X-API-Key: must stay 0

    def set_base_url(self, base_url: str) -> None:
        self.base_url = base_url
        self.cdn.url = base_url.replace("//127.0.0.1:", "//localhost:") if self.config.speaks("cdn-redirect") else base_url

    @property
    def cdn_url(self) -> str:
        """Where result URLs point: another host under the cdn-redirect dialect."""
        return self.cdn.url

    def _lagging(self, job, now: float) -> bool:
        return self.config.speaks("read-lag") and now - job.created < READ_LAG_S

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._api_gate], client_max_size=MAX_UPLOAD_IMAGE + 1024 * 1024)
        app[STATE_KEY] = self.state
        r = app.router
        r.add_post("/v2/videos/generate", self.generate)
        r.add_get("/v2/jobs", self.list_jobs)
        r.add_get("/v2/jobs/{id}", self.get_job)
        r.add_get("/v2/me", self.me)
        r.add_get("/v2/models", self.models)
        r.add_post("/v2/uploads", self.upload)
        r.add_get("/cdn/videos/{id}.mp4", self.cdn.video)
        r.add_get("/cdn/uploads/{id}/{name}", self.cdn.upload)
        r.add_get("/signed/videos/{id}.mp4", self.cdn.signed_video)
        r.add_get("/_emulator/stats", self.stats)
        r.add_post("/_emulator/config", self.configure_route)
        app.on_cleanup.append(lambda _app: self.webhooks.close())
        return app

    # -- the gate every /v2 request passes --

    @web.middleware
    async def _api_gate(self, request: web.Request, handler):
        if not request.path.startswith("/v2/"):
            if request.headers.get("X-API-Key") and request.path.startswith(("/cdn/", "/signed/")) \
                    and self.cdn_url != self.base_url:
                self.cdn_key_leaks += 1  # the key went to a host that is not the API's
            return await handler(request)
        state = self.state
        resource = request.match_info.route.resource
        route = f"{request.method} {resource.canonical if resource else request.path}"
        state.requests[route] += 1
        state.user_agents[request.headers.get("User-Agent", "")] += 1
        self._settle()
        response = await self._api(request, handler, state)
        # On the emulated clock (aiohttp only sets Date when none is set): what a client measures
        # its clock offset from.
        response.headers["Date"] = email.utils.formatdate(self.config.now(), usegmt=True)
        response.headers["x-request-id"] = f"req_{uuid.uuid4().hex[:20]}"  # as the SDK reads it
        return response

    async def _api(self, request: web.Request, handler, state: EmulatorState) -> web.StreamResponse:
        if state.roll("reset_connection"):
            return drop(request)
        if state.roll("slow_response"):
            await asyncio.sleep(state.faults.slow_seconds)
        if request.path in PUBLIC_PATHS:
            if state.roll("error_503"):
                return _error(503, "Service temporarily unavailable")
            return await handler(request)
        key = request.headers.get("X-API-Key")
        if not key or key != state.api_key:
            return _error(401, "Invalid or missing API key")
        now = time.monotonic()
        issued, not_before = state.not_before.get(key, (0.0, 0.0))
        # A request that arrives well after a 429 went out, and before its Retry-After ran out,
        # was sent by a client that ignored it (ones already in flight get 50 ms of grace).
        if issued + IN_FLIGHT_GRACE_S < now < not_before:
            state.retry_after_violations += 1
        retry_after = self.window.admit(key, now)
        if retry_after is not None:
            state.rate_limited += 1
            if now >= not_before:
                state.not_before[key] = (now, now + retry_after - IN_FLIGHT_GRACE_S)
            header = str(retry_after)
            if self.config.speaks("retry-after-date"):  # RFC 7231's other form: whole seconds, rounded up
                header = email.utils.formatdate(self.config.now() + retry_after + 1, usegmt=True)
            return web.json_response({"error": "Rate limit exceeded"}, status=429,
                                     headers={"Retry-After": header})
        if state.roll("error_503"):
            return _error(503, "Service temporarily unavailable")
        return await handler(request)

    def _settle(self) -> None:
        for job in self.state.advance():
            if job.webhook_url:
                event = "completed" if job.final == "COMPLETED" else "failed"
                if event in job.webhook_events:
                    self.webhooks.send(job, event, self.state.job_json(job, self.cdn_url, self.config.now()))

    # -- API routes --

    async def generate(self, request: web.Request) -> web.Response:
        state = self.state
        idem = request.headers.get("Idempotency-Key")
        if idem is not None and (len(idem) > MAX_IDEMPOTENCY_KEY or not idem):
            return _error(400, "Invalid Idempotency-Key",
                          details={"Idempotency-Key": [f"String must contain at most {MAX_IDEMPOTENCY_KEY} character(s)"]})
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "Invalid JSON body", details={"": ["Invalid JSON"]})
        details = body_errors(body)
        if details:
            return _error(400, "Validation failed", details=details)
        now = self.config.now()
        job = state.job_for_key(idem, now) if idem is not None else None
        if job is not None:
            if job.body_canonical != canonical(body):
                return _error(409, "Idempotency-Key was already used with a different request body")
            if self.config.speaks("conflict-while-in-flight") and now - job.created < CONFLICT_WINDOW_S:
                return _error(409, "A request with this Idempotency-Key is still being processed")
            return self._accepted(job, job.status(now)[0])
        model = get_model(body["model"])
        block = body.get(model.params_field) or {}
        price = charge(model, block, clip_of(model, block).seconds)
        if state.balance < price:
            return web.json_response({"error": "Insufficient credits", "creditsRequired": price,
                                      "creditsAvailable": max(0, state.balance)}, status=402)
        job = state.create_job(body, idem, price)
        if state.roll("drop_after_create"):
            return drop(request)
        if state.roll("answer_without_id"):
            return web.json_response({"status": "QUEUED"}, status=202)
        return self._accepted(job, "QUEUED")

    def _accepted(self, job, status: str) -> web.Response:
        id_field = "id" if self.config.speaks("submit-id") else "jobId"
        return web.json_response({id_field: job.id, "status": status}, status=202)

    def _job_or_error(self, job_id: str):
        try:
            uuid.UUID(job_id)
        except ValueError:
            return None, _error(400, "Invalid job id: expected a UUID")
        job = self.state.jobs.get(job_id)
        if job is None or self._lagging(job, self.config.now()):
            return None, _error(404, "Job not found, or owned by a different user")
        return job, None

    async def get_job(self, request: web.Request) -> web.Response:
        job, error = self._job_or_error(request.match_info["id"])
        if error:
            return error
        return web.json_response(self.state.job_json(job, self.cdn_url, self.config.now()))

    async def list_jobs(self, request: web.Request) -> web.Response:
        q = request.query
        self.state.list_models[q.get("model", "")] += 1
        if self.config.speaks("list-4xx"):
            return _error(400, "Invalid query parameters", details={"": ["Listing is not available for this key"]})
        details: dict[str, list[str]] = {}
        status = q.get("status")
        if status is not None and status not in ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"):
            details["status"] = ["Invalid enum value"]
        limit_text = q.get("limit", "20")
        limit = int(limit_text) if limit_text.isdigit() else -1
        if not 1 <= limit <= 100:
            details["limit"] = ["Number must be between 1 and 100"]
        start = len(self.state.order) - 1
        if "cursor" in q:
            try:
                start = int(base64.urlsafe_b64decode(q["cursor"].encode()).decode().removeprefix("seq:")) - 1
                if start < -1:
                    raise ValueError
            except (ValueError, UnicodeDecodeError):
                details["cursor"] = ["Invalid cursor"]
        for name in ("scope",):
            if name in q and q[name] not in ("user", "team"):
                details[name] = ["Invalid enum value"]
        if details:
            return _error(400, "Invalid query parameters", details=details)
        if self.config.speaks("ignore-status-filter"):
            status = None
        model = None if self.config.speaks("ignore-model-filter") else q.get("model")
        now = self.config.now()
        page, last_seq, seq = [], None, start
        order = self.state.order
        while seq >= 0 and len(page) < limit:
            job = order[seq]
            if (status is None or job.status(now)[0] == status) and not self._lagging(job, now):
                if model in (None, job.model):
                    page.append(self.state.job_json(job, self.cdn_url, now))  # with `input` (spec)
                    last_seq = seq
            seq -= 1
        has_more = len(page) == limit and seq >= 0
        cursor = base64.urlsafe_b64encode(f"seq:{last_seq}".encode()).decode() if has_more else None
        return web.json_response({"jobs": page, "nextCursor": cursor, "hasMore": has_more})

    async def me(self, request: web.Request) -> web.Response:
        state = self.state
        return web.json_response({
            "user": {"id": state.user_id, "email": "emulator@videobatch.local", "role": "OWNER"},
            "team": {"id": state.team_id, "name": "Emulated team", "credits": max(0, state.balance),
                     "plan": "emulator", "customerId": None},
            "apiKey": {"id": state.key_id, "name": "emulator key", "prefix": state.api_key[:8]},
        })

    async def models(self, request: web.Request) -> web.Response:
        """The public catalog (no key): every video model with its price range (catalog.py)."""
        modality = request.query.get("modality")
        if modality is not None and modality not in MODALITIES:
            expected = " | ".join(f"'{name}'" for name in MODALITIES)
            return _error(400, "Invalid query parameters",
                          details={"modality": [f"Invalid enum value. Expected {expected}, received '{modality}'"]})
        return web.json_response(catalog(modality))

    async def upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return _error(400, "Expected multipart/form-data", details={"file": ["Required"]})
        reader = await request.multipart()
        data = name = None
        async for part in reader:
            if part.name == "file":
                name = part.filename or "upload"
                data = await part.read(decode=False)
                break
        if data is None:
            return _error(400, "No file", details={"file": ["Required"]})
        if len(data) > MAX_UPLOAD_IMAGE:
            return _error(400, "File too large", details={"file": ["At most 25 MB for images"]})
        ctype = next((t for magic, t in IMAGE_TYPES if data.startswith(magic)), None)
        if ctype is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            ctype = "image/webp"
        if ctype is None:
            return _error(400, "Unsupported file type", details={"file": ["PNG, JPEG, WebP or GIF expected"]})
        upload_id = str(uuid.uuid4())
        safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100] or "upload"
        self.state.add_upload(upload_id, data, ctype, safe_name)
        expires = self.config.now() + self.config.upload_lifetime_s
        return web.json_response({
            "id": upload_id, "url": f"{self.base_url}/cdn/uploads/{upload_id}/{safe_name}", "kind": "image",
            "contentType": ctype, "byteSize": len(data), "expiresAt": iso(expires)}, status=201)

    # -- side door --

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(await self.stats_snapshot())

    async def stats_snapshot(self) -> dict[str, Any]:
        self._settle()
        for job in self.state.order:
            if job.final == "COMPLETED" and job.served_sha256 is None:
                await self.cdn.clip(job)
        return {**self.state.stats(), "cdn_key_leaks": self.cdn_key_leaks}

    async def configure_route(self, request: web.Request) -> web.Response:
        try:
            self.configure(**await request.json())
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response({"ok": True})

    def configure(self, *, faults: dict | None = None, credits: int | None = None, api_key: str | None = None,
                  rpm: int | None = None, time_scale: float | None = None,
                  clock_offset_s: float | None = None) -> None:
        if faults:
            self.state.set_faults(self.state.faults.updated(faults))
        if credits is not None:
            self.state.set_balance(int(credits))
        if api_key is not None:
            self.state.api_key = api_key
            self.webhooks.api_key = api_key
        if rpm is not None:
            self.window = SlidingWindow(rpm, self.config.rate_window_seconds)
        if time_scale is not None:
            self.config.time_scale = float(time_scale)
        if clock_offset_s is not None:
            self.config.clock_offset_s = float(clock_offset_s)


class Emulator:
    """`async with Emulator(config) as emu:` serves on loopback in the running event loop."""

    def __init__(self, config: EmulatorConfig | None = None):
        self.config = config or EmulatorConfig()
        self.server = EmulatorServer(self.config)
        self._site = Site()
        self.base_url = ""

    async def start(self) -> Emulator:
        host, port = await self._site.start(self.server.app(), self.config.host, self.config.port)
        self.base_url = f"http://{host}:{port}"
        self.server.set_base_url(self.base_url)
        return self

    async def stop(self) -> None:
        await self._site.stop()
        self.server.state.close()

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def state(self) -> EmulatorState:
        return self.server.state

    async def stats_async(self) -> dict[str, Any]:
        return await self.server.stats_snapshot()

    def stats(self) -> dict[str, Any]:
        """Without encoding clips that were never served (use stats_async for every hash)."""
        self.server._settle()
        return {**self.state.stats(), "cdn_key_leaks": self.server.cdn_key_leaks}

    def configure(self, **changes: Any) -> None:
        self.server.configure(**changes)


class EmulatorThread:
    """The same server on its own event loop in a daemon thread, for synchronous callers."""

    def __init__(self, config: EmulatorConfig | None = None):
        self.emulator = Emulator(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="emulator", daemon=True)

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.emulator.start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    def stats(self) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(self.emulator.stats_async(), self._loop).result(timeout=120)

    def configure(self, **changes: Any) -> None:
        async def apply() -> None:
            self.emulator.configure(**changes)

        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(timeout=30)
