"""`videobatch review`: a local web page to approve, reject or regenerate each clip of a batch.

Reads the ledger without its lock (never opened for writing) and appends decisions to the log
beside it (pipeline/store/verdicts.py), so it runs safely while a batch holds the ledger.

Who may talk to it:
- it binds 127.0.0.1 unless --host is given; then every request needs the token printed on the
  console, in the X-Review-Token header or in a cookie set by visiting the printed
  `/?token=...` link (which redirects at once, so the token leaves the address bar). The token is
  never logged: there is no access log, and it is registered with pipeline.redact;
- on 127.0.0.1, the Host header must name this server (a DNS-rebinding page cannot read it);
- a POST must carry the page's per-server CSRF secret in X-CSRF-Token, be JSON, and come from
  this origin (Origin, Sec-Fetch-Site) when the browser says where it comes from.

What it serves: the page, its script and style, the clips' JSON (pipeline/review/clips.py) and the
version the page polls to pick up later runs, a video or its poster (pipeline/review/posters.py)
by job_key only when that row (or the current row of an earlier take) is in scope and its file
resolves inside the output folder (anything else is 404), or, for a video kept in an object
store, streamed from the row's own object through pipeline/review/proxy.py (Range honoured), and a reference image by job_key and
position only when that row lists it as a local file (URLs are shown as links).

`--host 0.0.0.0` prints a link with the machine's reachable address (pipeline/review/address.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline.review import page as review_page
from pipeline.review.address import links
from pipeline.review.clips import ClipBook
from pipeline.review.decide import VerdictError, make_verdict
from pipeline.review.posters import ensure_poster, ensure_remote_poster
from pipeline.review.proxy import serve_object
from pipeline.store.verdicts import VerdictLog, verdicts_path, with_review
from pipeline.http_server import Site
from pipeline.store.archive import is_archived
from pipeline.redact import register_secret

TOKEN_COOKIE = "vb_review_token"
TOKEN_HEADER = "X-Review-Token"
CSRF_HEADER = "X-CSRF-Token"
POSTER_WORKERS = 4  # posters decoded at once (PyAV releases the GIL while it decodes)
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp"}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https:; "
                                "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass
class ReviewConfig:
    ledger: Path
    run: str = "last"  # --run: an id, last (grows with later runs) or all
    manifest: Path | None = None
    out_dir: Path | None = None  # where the videos live; default the ledger's folder
    host: str | None = None  # None: 127.0.0.1, no token
    port: int = 8800
    reviewer: str = "reviewer"
    token: str | None = field(default=None, repr=False)


class ReviewServer:
    def __init__(self, config: ReviewConfig):
        self.config = config
        self.book = ClipBook(config.ledger, run=config.run, manifest=config.manifest,  # ScopeError: bad scope
                             video_root=(config.out_dir or config.ledger.parent).resolve())
        self.csrf = secrets.token_urlsafe(32)
        self.token = config.token if config.host else None
        register_secret(self.token)
        self.log = VerdictLog(config.ledger)
        self._deciding = asyncio.Lock()  # read, check and append one decision at a time
        self._posters = asyncio.Semaphore(POSTER_WORKERS)  # a page of new posters must not starve the rest
        self._site = Site()
        self.port = config.port  # after start(), the port it got (0 picks a free one)

    def clips(self) -> dict[str, Any]:
        return self.book.clips()

    # -- decisions --

    async def decide(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise VerdictError("send a JSON object: {job_key, decision, note?, prompt?, reviewer?}")
        job_key = body.get("job_key")
        if not isinstance(job_key, str) or not job_key:
            raise VerdictError("job_key is missing")
        async with self._deciding:
            found, decisions = await asyncio.to_thread(self.book.one, job_key)
            row = found.row(0, named=True) if found.height else None
            if row is not None and not is_archived(job_key) and not self.book.in_scope(found):
                raise VerdictError(
                    f"{job_key} is not in this review's scope ({self.book.describe()}): start "
                    "`videobatch review` with the --run or --manifest that includes it", status=403)
            record = make_verdict(row, job_key, body.get("decision"), note=body.get("note"),
                                   prompt=body.get("prompt"),
                                   reviewer=body.get("reviewer") or self.config.reviewer, decisions=decisions)
            await asyncio.to_thread(self.log.append, record)  # durable before we answer
        found, decisions = await asyncio.to_thread(self.book.one, job_key)
        fresh = with_review(found, decisions).row(0, named=True)
        takes = await asyncio.to_thread(lambda: self.book.takes(self.book.ledger(), [job_key]))
        return {"saved": True, "clip": self.book.clip(fresh, takes.get(job_key))}

    # -- http --

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=256 * 1024)
        app.router.add_get("/", self.page)
        app.router.add_get("/app.js", self.asset)
        app.router.add_get("/app.css", self.asset)
        app.router.add_get("/favicon.ico", lambda request: web.Response(status=204))
        app.router.add_get("/api/clips", self.api_clips)
        app.router.add_get("/api/version", self.api_version)
        app.router.add_post("/api/decisions", self.api_decide)
        app.router.add_get("/video/{job_key}", self.video)
        app.router.add_get("/poster/{job_key}", self.poster)
        app.router.add_get("/reference/{job_key}/{index}", self.reference)
        return app

    def _allowed_hosts(self) -> set[str]:
        port = self.port
        return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if self.token is None and request.host not in self._allowed_hosts():
            return _plain(421, "this review server answers only to 127.0.0.1 or localhost")
        if self.token is not None:
            offered = request.query.get("token")
            if offered is not None and request.method == "GET" and request.path == "/":
                if not secrets.compare_digest(offered, self.token):
                    return _plain(403, "wrong token: use the link videobatch review printed")
                response = web.Response(status=303, headers={"Location": "/"})  # drop the token from the address bar
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict", path="/")
                _secure(response)
                return response
            presented = request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE) or ""
            if not secrets.compare_digest(presented, self.token):
                return _plain(401, "this review server needs its token: open the link videobatch review "
                                   "printed, or send the X-Review-Token header")
        if request.method not in ("GET", "HEAD"):
            problem = self._cross_site(request)
            if problem:
                return _json(403, {"error": problem})
        response = await handler(request)
        _secure(response)
        return response

    def _cross_site(self, request: web.Request) -> str | None:
        if not secrets.compare_digest(request.headers.get(CSRF_HEADER, ""), self.csrf):
            return "missing or wrong X-CSRF-Token: reload the page and try again"
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return f"cross-site request from {origin} refused"
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return "cross-site request refused"
        if request.content_type != "application/json":
            return "decisions are sent as application/json"
        return None

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=review_page.render(csrf=self.csrf, reviewer=self.config.reviewer,
                                                    scope=self.book.describe()),
                            content_type="text/html", headers={"Cache-Control": "no-store"})

    async def asset(self, request: web.Request) -> web.Response:
        if request.path == "/app.js":
            return web.Response(text=review_page.SCRIPT, content_type="application/javascript")
        return web.Response(text=review_page.STYLE, content_type="text/css")

    async def api_clips(self, request: web.Request) -> web.Response:
        return _json(200, await asyncio.to_thread(self.book.clips))

    async def api_version(self, request: web.Request) -> web.Response:
        """What the page polls: a new value means a run or a reviewer changed something."""
        return _json(200, {"version": self.book.version()})

    async def api_decide(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json(400, {"error": "the body is not JSON"})
        try:
            return _json(200, await self.decide(body))
        except VerdictError as exc:
            return _json(exc.status, {"error": str(exc)})

    def _video(self, job_key: str) -> Path | str | None:
        """The clip's local file, or its object's URL (--out s3://...), or None."""
        row = self.book.row(job_key)
        return (self.book.video_object(row) or self.book.video_file(row)) if row else None

    async def video(self, request: web.Request) -> web.StreamResponse:
        path = await asyncio.to_thread(self._video, request.match_info["job_key"])
        if path is None:
            return _plain(404, "no such video")
        if isinstance(path, str):  # in a store: streamed through here, the page never sees its URL
            return await serve_object(request, path, {"Content-Type": "video/mp4"})
        return web.FileResponse(path, headers={"Content-Type": "video/mp4"})

    async def poster(self, request: web.Request) -> web.StreamResponse:
        """A JPEG of the clip's early frame, made on first request and cached beside the videos."""
        path = await asyncio.to_thread(self._video, request.match_info["job_key"])
        if path is None:
            return _plain(404, "no such video")
        async with self._posters:
            if isinstance(path, str):  # in a store: fetched once into the ledger's folder to decode
                poster = await asyncio.to_thread(ensure_remote_poster, path, self.config.ledger.parent)
            else:
                poster = await asyncio.to_thread(ensure_poster, path)
        if poster is None:
            return _plain(404, "no poster for this video")
        return web.FileResponse(poster, headers={"Content-Type": "image/jpeg", "Cache-Control": "no-cache"})

    async def reference(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["job_key"]
        row = None if is_archived(key) else await asyncio.to_thread(self.book.row, key)
        refs = (row or {}).get("reference_images") or []
        index = request.match_info["index"]
        if not index.isdigit() or int(index) >= len(refs) or refs[int(index)].startswith(("http://", "https://")):
            return _plain(404, "no such reference image")
        path = Path(refs[int(index)])
        if path.suffix.lower() not in IMAGE_TYPES or not path.is_file():
            return _plain(404, "no such reference image")
        return web.FileResponse(path, headers={"Content-Type": IMAGE_TYPES[path.suffix.lower()]})

    # -- serving --

    async def start(self) -> list[str]:
        """Serve; the links to print, the best first (a reachable address for every interface)."""
        host = self.config.host or "127.0.0.1"
        _, self.port = await self._site.start(self.app(), host, self.config.port)
        return links(host, self.port)

    async def stop(self) -> None:
        await self._site.stop()


def _secure(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _plain(status: int, text: str) -> web.Response:
    response = web.Response(status=status, text=text + "\n")
    _secure(response)
    return response


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload, default=str), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def serve(config: ReviewConfig, stop: asyncio.Event) -> None:
    """Serve until `stop` is set; prints the address (with the token, when one is needed) first."""
    server = ReviewServer(config)
    urls = await server.start()
    suffix = f"?token={server.token}" if server.token else ""  # the token is printed in these links only
    print(f"review: {urls[0]}{suffix}", flush=True)
    if len(urls) > 1:
        for url in urls[1:-1]:
            print(f"  also at: {url}{suffix}", flush=True)
        print(f"  on this machine: {urls[-1]}{suffix}", flush=True)
    if server.token:
        print("  anyone with this link can review: share it only with reviewers", flush=True)
    print(f"  decisions go to {verdicts_path(config.ledger)}; Ctrl-C stops the server", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def new_token() -> str:
    return secrets.token_urlsafe(24)

