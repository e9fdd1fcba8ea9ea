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

What it serves: the page, its script and style, the clips' JSON, a video by job_key only when
that row's file resolves inside the output folder (anything else is 404), and a reference image
by job_key and position only when that row lists it as a local file (URLs are shown as links).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from aiohttp import web

from pipeline.review import page as review_page
from pipeline.review.decide import VerdictError, make_verdict
from pipeline.store.verdicts import VerdictLog, verdicts_path, read_verdicts, review_counts, with_review
from pipeline.http_server import Site
from pipeline.store.archive import is_archived_col
from pipeline.store.ledger import Ledger
from pipeline.store.runs import read_runs
from pipeline.redact import register_secret
from pipeline.store.schema import DOWNLOADED
from pipeline.store.scope import ALL, resolve_manifest, resolve_run, rows_in_scope

TOKEN_COOKIE = "vb_review_token"
TOKEN_HEADER = "X-Review-Token"
CSRF_HEADER = "X-CSRF-Token"
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
    run: str = "last"  # --run: an id, last or all (resolved once, at start)
    manifest: Path | None = None
    out_dir: Path | None = None  # where the videos live; default the ledger's folder
    host: str | None = None  # None: 127.0.0.1, no token
    port: int = 8800
    reviewer: str = "reviewer"
    token: str | None = field(default=None, repr=False)


class ReviewServer:
    def __init__(self, config: ReviewConfig):
        self.config = config
        self.ledger_path = config.ledger
        runs = read_runs(config.ledger)
        self.run_id = resolve_run(runs, config.run)  # ScopeError for a bad --run or --manifest
        self.manifest = resolve_manifest(runs, config.manifest)
        self.video_root = (config.out_dir or config.ledger.parent).resolve()
        self.csrf = secrets.token_urlsafe(32)
        self.token = config.token if config.host else None
        register_secret(self.token)
        self.log = VerdictLog(config.ledger)
        self._deciding = asyncio.Lock()  # read, check and append one decision at a time
        self._site = Site()
        self.port = config.port  # after start(), the port it got (0 picks a free one)

    # -- data --

    def _scope(self) -> pl.Expr:
        condition = ~is_archived_col()
        if self.run_id is not None:
            condition = condition & (pl.col("run_id") == self.run_id)
        if self.manifest is not None:
            condition = condition & (pl.col("manifest") == self.manifest)
        return condition

    def _ledger(self) -> Ledger:
        """Opened afresh for each request: the run may have moved on since the last one. Only the
        rows a request needs are read, never the whole history."""
        return Ledger.open(self.ledger_path, readonly=True)

    def _one(self, job_key: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(the ledger's row of job_key, 0 or 1 of it; the decisions log), read afresh."""
        return self._ledger().rows([job_key]), read_verdicts(self.ledger_path)

    def _video_file(self, row: dict[str, Any]) -> Path | None:
        """The row's video if it resolves inside the output folder, else None."""
        if row.get("status") != DOWNLOADED or not row.get("output_path"):
            return None
        try:
            path = Path(row["output_path"]).resolve(strict=True)
        except OSError:
            return None
        if not path.is_relative_to(self.video_root) or not path.is_file() or path.suffix != ".mp4":
            return None
        return path

    def _clip(self, row: dict[str, Any]) -> dict[str, Any]:
        try:
            metadata = json.loads(row["metadata"]) if row.get("metadata") else {}
        except ValueError:
            metadata = {}
        references = []
        for i, ref in enumerate(row.get("reference_images") or []):
            if ref.startswith(("http://", "https://")):
                references.append({"url": ref, "local": False, "name": ref})
            else:
                references.append({"url": f"/reference/{row['job_key']}/{i}", "local": True,
                                   "name": Path(ref).name})
        key = row["job_key"]
        return {
            "job_key": key, "status": row.get("status"), "prompt": row.get("prompt"),
            "duration": row.get("duration"), "aspect_ratio": row.get("aspect_ratio"), "model": row.get("model"),
            "metadata": metadata, "credits_estimated": row.get("credits_estimated"),
            "credits_charged": row.get("credits_charged"), "attempts": row.get("attempts"),
            "error": row.get("error"), "expired": bool(row.get("expired")), "row": row.get("row"),
            "variation": row.get("variation"), "manifest": Path(row["manifest"]).name if row.get("manifest") else None,
            "run_id": row.get("run_id"),
            "video": f"/video/{key}" if self._video_file(row) else None,
            "references": references,
            "review": {"decision": row.get("review_decision"), "note": row.get("review_note"),
                       "reviewer": row.get("review_reviewer"),
                       "at": row["review_at"].isoformat() if row.get("review_at") else None,
                       "prompt": row.get("review_prompt")},
            "edited": bool(row.get("review_edited")),
        }

    def clips(self) -> dict[str, Any]:
        rows = with_review(rows_in_scope(self._ledger(), self._scope()), read_verdicts(self.ledger_path)).sort(
            "manifest", "row", "variation", nulls_last=True)
        return {"clips": [self._clip(row) for row in rows.iter_rows(named=True)],
                "counts": review_counts(rows),
                "scope": {"run": self.run_id or ALL, "manifest": self.manifest}}

    # -- decisions --

    async def decide(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise VerdictError("send a JSON object: {job_key, decision, note?, prompt?, reviewer?}")
        job_key = body.get("job_key")
        if not isinstance(job_key, str) or not job_key:
            raise VerdictError("job_key is missing")
        async with self._deciding:
            found, decisions = await asyncio.to_thread(self._one, job_key)
            row = found.row(0, named=True) if found.height else None
            if row is not None and not found.filter(self._scope()).height:
                raise VerdictError(
                    f"{job_key} is not in this review's scope (run {self.run_id or ALL}"
                    + (f", manifest {self.manifest}" if self.manifest else "")
                    + "): start `videobatch review` with the --run or --manifest that includes it", status=403)
            record = make_verdict(row, job_key, body.get("decision"), note=body.get("note"),
                                   prompt=body.get("prompt"),
                                   reviewer=body.get("reviewer") or self.config.reviewer, decisions=decisions)
            await asyncio.to_thread(self.log.append, record)  # durable before we answer
        fresh = with_review(*await asyncio.to_thread(self._one, job_key))
        return {"saved": True, "clip": self._clip(fresh.row(0, named=True))}

    # -- http --

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=256 * 1024)
        app.router.add_get("/", self.page)
        app.router.add_get("/app.js", self.asset)
        app.router.add_get("/app.css", self.asset)
        app.router.add_get("/favicon.ico", lambda request: web.Response(status=204))
        app.router.add_get("/api/clips", self.api_clips)
        app.router.add_post("/api/decisions", self.api_decide)
        app.router.add_get("/video/{job_key}", self.video)
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
        scope = f"run {self.run_id}" if self.run_id else "all runs"
        if self.manifest:
            scope += f" · {Path(self.manifest).name}"
        return web.Response(text=review_page.render(csrf=self.csrf, reviewer=self.config.reviewer, scope=scope),
                            content_type="text/html", headers={"Cache-Control": "no-store"})

    async def asset(self, request: web.Request) -> web.Response:
        if request.path == "/app.js":
            return web.Response(text=review_page.SCRIPT, content_type="application/javascript")
        return web.Response(text=review_page.STYLE, content_type="text/css")

    async def api_clips(self, request: web.Request) -> web.Response:
        return _json(200, await asyncio.to_thread(self.clips))

    async def api_decide(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json(400, {"error": "the body is not JSON"})
        try:
            return _json(200, await self.decide(body))
        except VerdictError as exc:
            return _json(exc.status, {"error": str(exc)})

    def _row(self, job_key: str) -> dict[str, Any] | None:
        found = self._ledger().rows([job_key]).filter(self._scope())
        return found.row(0, named=True) if found.height else None

    async def video(self, request: web.Request) -> web.StreamResponse:
        row = await asyncio.to_thread(self._row, request.match_info["job_key"])
        path = self._video_file(row) if row else None
        if path is None:
            return _plain(404, "no such video")
        return web.FileResponse(path, headers={"Content-Type": "video/mp4"})

    async def reference(self, request: web.Request) -> web.StreamResponse:
        row = await asyncio.to_thread(self._row, request.match_info["job_key"])
        refs = (row or {}).get("reference_images") or []
        index = request.match_info["index"]
        if not index.isdigit() or int(index) >= len(refs) or refs[int(index)].startswith(("http://", "https://")):
            return _plain(404, "no such reference image")
        path = Path(refs[int(index)])
        if path.suffix.lower() not in IMAGE_TYPES or not path.is_file():
            return _plain(404, "no such reference image")
        return web.FileResponse(path, headers={"Content-Type": IMAGE_TYPES[path.suffix.lower()]})

    # -- serving --

    async def start(self) -> str:
        host = self.config.host or "127.0.0.1"
        _, self.port = await self._site.start(self.app(), host, self.config.port)
        return f"http://{_url_host(host)}:{self.port}/"

    async def stop(self) -> None:
        await self._site.stop()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
    url = await server.start()
    if server.token:
        print(f"review: {url}?token={server.token}", flush=True)
        print("  anyone with this link can review: share it only with reviewers", flush=True)
    else:
        print(f"review: {url}", flush=True)
    print(f"  decisions go to {verdicts_path(config.ledger)}; Ctrl-C stops the server", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def new_token() -> str:
    return secrets.token_urlsafe(24)

