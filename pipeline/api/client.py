"""The only code that speaks HTTP to Apiframe (and to the CDN its results live on).

Layers, from the bottom: `RequestGate` paces every API request (one limiter for the whole run,
plus a shared pause after a 429); `ApiClient` makes one typed call at a time and retries what is
safe to retry; errors are an exception hierarchy callers catch by meaning.

The API key goes in one header of requests to the API base URL and nowhere else: never to a
download URL, never into an exception, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiolimiter import AsyncLimiter

from pipeline.redact import redact, register_secret
from pipeline.api.retry import RetryPolicy
from pipeline.api.wire import parse_retry_after

MAX_REDIRECTS = 5
# The first request of a command (GET /v2/me) with nothing in flight: an API it cannot connect to at
# all is said within half a minute (exit 4), not after the ~90 s a request rides out mid-run.
# Three tries of at most 5 s to connect (DNS, TCP, TLS) each; a try that got an answer (a 5xx)
# goes on under the usual policy, since the API is there.
FIRST_CONTACT_TRIES = 3
FIRST_CONTACT_CONNECT_S = 5.0


def _user_agent() -> str:
    try:
        return f"videobatch/{metadata.version('videobatch')}"
    except metadata.PackageNotFoundError:
        return "videobatch/0"


USER_AGENT = _user_agent()


# --- errors ---------------------------------------------------------------------------------


class ApiError(Exception):
    """An answer (or a missing answer) from the API that the caller has to act on."""

    def __init__(self, message: str, status: int | None = None, body: Any = None,
                 request_id: str | None = None):
        if request_id:  # for Apiframe's support: the SDK carries it in every error too
            message = f"{message} [x-request-id {request_id}]"
        super().__init__(redact(message))
        self.status = status
        self.body = body
        self.request_id = request_id

    @property
    def for_support(self) -> str:
        """The request id for Apiframe's support, for messages built around this error."""
        return f" [x-request-id {self.request_id}]" if self.request_id else ""


class AuthError(ApiError):
    """401/403: the key is missing, wrong, inactive or lacks permission. Stop at once."""

    @property
    def stop_reason(self) -> str:
        return f"authentication failed ({self.status}): check APIFRAME_API_KEY{self.for_support}"


class RejectedRequest(ApiError):
    """400: the API refused the body. Final for that job; never retried."""

    @property
    def details(self) -> dict[str, list[str]]:
        return (self.body or {}).get("details") or {} if isinstance(self.body, dict) else {}


class InsufficientCredits(ApiError):
    """402: the team cannot pay for this job. Stop submitting."""

    @property
    def required(self) -> int | None:
        return (self.body or {}).get("creditsRequired") if isinstance(self.body, dict) else None

    @property
    def available(self) -> int | None:
        return (self.body or {}).get("creditsAvailable") if isinstance(self.body, dict) else None

    @property
    def stop_reason(self) -> str:
        return (f"insufficient credits: a job needs {self.required}, the account has {self.available}; "
                f"top up and run again to continue{self.for_support}")


class Conflict(ApiError):
    """409. Not in the spec for submits. The SDK's ConflictError says "replayed an idempotency key
    with a different request body", which body-derived keys rule out; other idempotency layers
    answer 409 while the first request under a key is still being processed. Either way the job
    may exist: ask again later with the same key, never with a new one."""


class NotFound(ApiError):
    """404: the job (or file) is unknown to this key, or a read raced the write. The job may
    well exist and be charged: read it again later, never generate it again."""


class TransientError(ApiError):
    """5xx, timeouts, dropped connections: worth another try after a pause."""

    # Whether the request may have reached the API. Only a connection never made (refused,
    # unreachable, timed out while connecting) proves it did not; `_call` folds this over every try.
    reached: bool = True
    no_connection: str | None = None  # why no connection was made, in words, when none was


class DownloadError(ApiError):
    """A download that cannot be used: wrong type, too large, cut short, or not a valid video."""


# --- pacing ---------------------------------------------------------------------------------


class RequestGate:
    """Paces API requests under the account's rate limit.

    Apiframe counts requests in a sliding window (500 per 60 s). A leaky bucket of capacity C
    draining at r per second lets at most C + r*W requests into any window W, so we keep a
    small burst (1 % of the limit) and drain at (limit - 2C)/W: never more than the limit in any
    window, even with some network jitter. After a 429 every request waits for its Retry-After,
    not just the one that got it: no request leaves before the server said it may.
    """

    def __init__(self, rpm: float | None, period: float = 60.0):
        self.limiter: AsyncLimiter | None = None
        if rpm:
            burst = max(1.0, rpm / 100)
            rate = max(rpm - 2 * burst, rpm * 0.5)
            self.limiter = AsyncLimiter(burst, period * burst / rate)
        self.rpm = rpm
        self.period = period
        self._not_before = 0.0  # monotonic time before which nothing may be sent
        self.requests = 0

    def pause_until(self, monotonic_deadline: float) -> None:
        self._not_before = max(self._not_before, monotonic_deadline)

    async def wait_turn(self) -> None:
        while True:
            delay = self._not_before - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if self.limiter is not None:
                await self.limiter.acquire()
            if self._not_before <= time.monotonic():  # a 429 may have arrived while we queued
                self.requests += 1
                return


RetryHook = Callable[[str, str, float], None]  # (what, reason, delay) -> None


def _error_text(body: Any, fallback: str) -> str:
    if isinstance(body, dict) and body.get("error"):
        text = str(body["error"])
        if body.get("details"):
            text += ": " + json.dumps(body["details"], sort_keys=True)
        return text[:500]
    return fallback


# --- the client -----------------------------------------------------------------------------


class ApiClient:
    """Typed calls to the Apiframe v2 API. One instance per run; use as an async context manager."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        gate: RequestGate | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        on_retry: RetryHook | None = None,
        should_stop: Callable[[], bool] | None = None,
        public: bool = False,
    ):
        """`public`: without a key, for the routes that need none (the model catalog, for `plan`)."""
        if not api_key and not public:
            raise AuthError("no API key: set APIFRAME_API_KEY in the environment or .env")
        if api_key:
            register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["X-API-Key"] = api_key  # API requests only
        self._origin = _origin(self.base_url)
        self.gate = gate or RequestGate(None)
        self.retry = retry or RetryPolicy()
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(10.0, timeout))
        # A large video may take minutes; what matters is that bytes keep coming.
        self.download_timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout)
        self.on_retry = on_retry or (lambda what, reason, delay: None)
        self.should_stop = should_stop or (lambda: False)
        # Server time minus local time, from the last Date header; None until an answer had one.
        self.measured_offset: float | None = None
        self.rate_limited = 0
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"ApiClient({self.base_url!r})"

    @property
    def clock_offset(self) -> float:
        """The measured offset, or 0 before any answer carried a Date header."""
        return self.measured_offset or 0.0

    def api_key_for_webhooks(self) -> str:
        """The key, for verifying webhook signatures (they are keyed by its sha256)."""
        return self._headers["X-API-Key"]

    async def __aenter__(self) -> ApiClient:
        connector = aiohttp.TCPConnector(limit=100, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout,
                                              headers={"User-Agent": USER_AGENT})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ApiClient used outside `async with`")
        return self._session

    # -- API calls --

    async def submit(self, body: bytes, idempotency_key: str) -> Any:
        """POST /v2/videos/generate with the exact body bytes the ledger journaled.

        Safe to retry on any transient failure: the Idempotency-Key makes the API answer a
        replay with the job the first try created. Returns the parsed answer as sent (None when
        it was not JSON): reading it is the caller's business (pipeline/api/wire.py).
        """
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        return await self._call("POST", "/v2/videos/generate", data=body, headers=headers)

    async def get_job(self, job_id: str) -> Any:
        return await self._call("GET", f"/v2/jobs/{job_id}")

    async def list_jobs(
        self, *, status: str | None = None, model: str | None = None, limit: int = 100,
        cursor: str | None = None,
    ) -> Any:
        params: dict[str, str] = {"limit": str(limit)}
        if status:
            params["status"] = status
        if model:
            params["model"] = model
        if cursor:
            params["cursor"] = cursor
        return await self._call("GET", "/v2/jobs", params=params)

    async def me(self, *, first_contact: bool = False) -> Any:
        """GET /v2/me. `first_contact`: the command's first request with nothing in flight, so an API
        that cannot be connected to at all fails fast (FIRST_CONTACT_TRIES), with `reached` False."""
        if not first_contact:
            return await self._call("GET", "/v2/me")
        return await self._call("GET", "/v2/me", unreached_tries=FIRST_CONTACT_TRIES,
                                timeout=aiohttp.ClientTimeout(total=self.timeout.total, connect=FIRST_CONTACT_CONNECT_S))

    async def catalog(self, *, first_contact: bool = False) -> Any:
        """GET /v2/models?modality=video: the public model catalog with each model's cost range
        (openapi.json, ModelCatalog; no key needed, though ours goes along to the API's own host).
        Read once per plan or run, before anything is sent (`first_contact` as for `me`)."""
        params = {"modality": "video"}
        if not first_contact:
            return await self._call("GET", "/v2/models", params=params)
        return await self._call("GET", "/v2/models", params=params, unreached_tries=FIRST_CONTACT_TRIES,
                                timeout=aiohttp.ClientTimeout(total=self.timeout.total, connect=FIRST_CONTACT_CONNECT_S))

    async def upload(self, data: bytes, filename: str) -> Any:
        """POST /v2/uploads (multipart) of exactly `data`: the caller read and checked them, and
        no path is read here again. Uploads are not idempotent, but a duplicate only costs
        storage that expires within hours, so transient failures are retried."""

        def form() -> aiohttp.FormData:  # a FormData can be sent only once
            fd = aiohttp.FormData()
            fd.add_field("file", data, filename=filename, content_type="application/octet-stream")
            return fd

        return await self._call("POST", "/v2/uploads", form=form)

    # -- plumbing --

    async def _call(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        unreached_tries: int | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        what = f"{method} {path.split('?')[0]}"
        limited = 0  # 429s in this call, for the backoff when one comes without a readable Retry-After
        reached = False  # whether any try may have reached the API (TransientError.reached)
        unreached = 0  # tries that could not connect at all

        def give_up() -> bool:  # the run stops, or (first contact) the API was never there to answer
            return self.should_stop() or (unreached_tries is not None and not reached and unreached >= unreached_tries)

        async def paced_try() -> Any:
            """One try: 429s are waited out here. Costs nothing to wait; a storm slows the run
            down but never fails a job, so pacing is not a failure the retry policy counts."""
            nonlocal limited, reached, unreached
            while True:
                await self.gate.wait_turn()
                try:
                    return await self._send(method, path, data=data, params=params, headers=headers,
                                            form=form, timeout=timeout)
                except RateLimitedAnswer as answer:
                    self.rate_limited += 1
                    limited += 1
                    if self.should_stop():
                        raise
                    wait = answer.retry_after
                    if wait is None:  # missing or unreadable: back off as for any transient failure
                        wait = self.retry.delay(limited)
                    self.gate.pause_until(time.monotonic() + wait)
                    self.on_retry(what, "429 rate limited", wait)
                except TransientError as failure:  # a 429 (above) made nothing; this may have
                    reached = reached or failure.reached
                    unreached += not failure.reached
                    raise

        try:
            return await self.retry.run(paced_try, retry_on=(TransientError,), should_stop=give_up,
                                        on_retry=lambda exc, _failures, delay: self.on_retry(what, str(exc), delay))
        except TransientError as failure:
            failure.reached = reached  # the last try alone does not say whether an earlier one got there
            raise

    async def _send(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        form: Callable[[], aiohttp.FormData] | None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        all_headers = dict(self._headers)
        if headers:
            all_headers.update(headers)
        with _transient_transport(f"{method} {path}: no answer in time", f"{method} {path}: connection failed"):
            async with self.session.request(
                method,
                self.base_url + path,
                data=form() if form else data,
                params=params,
                headers=all_headers,
                allow_redirects=False,
                **({"timeout": timeout} if timeout else {}),
            ) as response:
                raw = await response.read()
                self._note_server_clock(response.headers.get("Date"))
                retry_after = response.headers.get("Retry-After")
                request_id = response.headers.get("x-request-id")
                status = response.status
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if 200 <= status < 300:
            return body  # any shape, or None: callers read it liberally
        message = f"{method} {path} -> {status} {_error_text(body, raw[:200].decode('utf-8', 'replace'))}"
        if status == 429:
            raise RateLimitedAnswer(message, status, body, parse_retry_after(retry_after), request_id)
        kind = {401: AuthError, 403: AuthError, 402: InsufficientCredits, 404: NotFound, 409: Conflict,
                400: RejectedRequest, 422: RejectedRequest, 408: TransientError}.get(status, ApiError)
        if status >= 500 and status != 501:  # the SDK retries 5xx but 501 (Not Implemented)
            kind = TransientError
        raise kind(message, status, body, request_id)

    def _note_server_clock(self, date_header: str | None) -> None:
        if not date_header:
            return
        try:
            server = email.utils.parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError):
            return
        self.measured_offset = server - time.time()

    # -- downloads (CDN: no key, no rate limit) --

    async def download(self, url: str, sink: BinaryIO, *, max_bytes: int) -> tuple[int, str]:
        """Stream `url` into `sink` (anything with `write(bytes)`); return (bytes, sha256). The
        caller stores, verifies and renames: this module speaks HTTP and touches no file.

        Only http(s). Up to MAX_REDIRECTS redirects are followed (a CDN may hand out a signed
        storage URL), each hop judged anew: X-API-Key goes only to the API's own origin. The
        Content-Type is not judged (a CDN may say `binary/octet-stream`): the bytes are, by the
        caller's PyAV check. The body may not exceed `max_bytes` or end short of its length.
        """
        digest = hashlib.sha256()
        size = 0
        with _transient_transport("download timed out", "download failed"):
            for _hop in range(MAX_REDIRECTS + 1):
                scheme = urlsplit(url).scheme.lower()
                if scheme not in ("http", "https"):
                    raise DownloadError(f"refusing to download a {scheme or 'schemeless'} URL: only http(s)")
                same_origin = _origin(url) == self._origin
                headers = {"X-API-Key": self._headers["X-API-Key"]} if same_origin and "X-API-Key" in self._headers else {}
                async with self.session.get(url, allow_redirects=False, timeout=self.download_timeout,
                                            headers=headers) as response:
                    if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status in (404, 410):
                        raise NotFound(f"video not found on the CDN ({response.status})", 404)
                    if response.status >= 500 or response.status in (408, 429):
                        raise TransientError(f"CDN answered {response.status}", response.status)
                    if response.status != 200:
                        raise DownloadError(f"CDN answered {response.status}", response.status)
                    expected = response.content_length
                    if expected is not None and expected > max_bytes:
                        raise DownloadError(f"video is {expected} bytes, over the {max_bytes}-byte cap")
                    try:
                        async for chunk in response.content.iter_chunked(1 << 16):
                            size += len(chunk)
                            if size > max_bytes:
                                raise DownloadError(f"video passed the {max_bytes}-byte cap: stopped")
                            digest.update(chunk)
                            sink.write(chunk)
                    except aiohttp.ClientPayloadError:  # the body broke off: say how far it got
                        raise TransientError(f"download cut short after {size} bytes") from None
                    if expected is not None and size != expected:
                        raise TransientError(f"download cut short: {size} of {expected} bytes")
                    return size, digest.hexdigest()
            raise DownloadError(f"more than {MAX_REDIRECTS} redirects")


@contextlib.contextmanager
def _transient_transport(timed_out: str, failed: str) -> Iterator[None]:
    """No answer in time, or a connection that failed: worth another try, as a TransientError
    saying `timed_out`, or `failed` with the aiohttp error's class name (its text can carry the URL)."""
    try:
        yield
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        error = TransientError(f"{failed} ({_no_connection(exc)})")
        error.no_connection = _no_connection(exc)
        error.reached = False  # no connection, so no request: nothing can have been made
        raise error from None
    except asyncio.TimeoutError:
        raise TransientError(timed_out) from None
    except aiohttp.ClientError as exc:
        raise TransientError(f"{failed} ({type(exc).__name__})") from None


def _no_connection(exc: Exception) -> str:
    """Why no connection was made, in words a person can act on (aiohttp's own text carries the URL)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "the host name does not resolve"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "no connection within the time allowed"
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError)):
        return f"TLS failed: {type(exc).__name__}"
    number = getattr(getattr(exc, "os_error", None), "errno", None)  # its strerror may carry the address
    return os.strerror(number).lower() if number else type(exc).__name__


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


class RateLimitedAnswer(TransientError):
    """429 with its Retry-After; handled inside ApiClient._call, never escapes it."""

    def __init__(self, message: str, status: int, body: Any, retry_after: float | None,
                 request_id: str | None = None):
        super().__init__(message, status, body, request_id)
        self.retry_after = retry_after  # None: missing or unreadable
