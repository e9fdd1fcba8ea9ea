"""The emulator's CDN, I/O: finished videos and uploads, served with no key and no rate limit.

Under the cdn-redirect dialect a video's URL redirects to a signed storage URL, as a CDN may.
server.py mounts these routes beside the API's.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

from aiohttp import web

from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.state import EmulatorState
from pipeline.emulator.video import ClipCache


def drop(request: web.Request) -> web.Response:
    """Close the connection without an answer: the client sees a reset / disconnect."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=204)  # never reaches the client


class Cdn:
    """`/cdn/videos/{id}.mp4`, `/signed/videos/{id}.mp4` and `/cdn/uploads/{id}/{name}`."""

    def __init__(self, config: EmulatorConfig, state: EmulatorState, settle: Callable[[], None]):
        self.config = config
        self.state = state
        self.settle = settle  # the server's: jobs due to finish do so before a video is looked up
        self.clips = ClipCache()
        self.url = ""  # where result URLs point: another host under the cdn-redirect dialect

    async def clip(self, job) -> tuple[bytes, str]:
        width, height = job.width, job.height
        clip = self.clips.cached(job.variant, width, height, job.duration)
        if clip is None:  # encode off the event loop: the API keeps answering meanwhile
            clip = await asyncio.to_thread(self.clips.get, job.variant, width, height, job.duration)
        job.served_sha256, job.served_bytes = clip[1], len(clip[0])
        return clip

    def _signature(self, job_id: str) -> str:
        return hashlib.sha256(f"{self.state.api_key}:{job_id}".encode()).hexdigest()[:32]

    async def video(self, request: web.Request) -> web.StreamResponse:
        self.settle()
        job = self.state.jobs.get(request.match_info["id"])
        if job is None or job.final != "COMPLETED" or job.expired() or self.state.roll("cdn_not_found"):
            return web.Response(status=404, text="Not Found")
        if self.config.speaks("cdn-redirect"):  # to a signed storage URL, as a CDN may
            raise web.HTTPFound(f"{self.url}/signed/videos/{job.id}.mp4?sig={self._signature(job.id)}")
        return await self._serve_clip(request, job, "video/mp4")

    async def signed_video(self, request: web.Request) -> web.StreamResponse:
        self.settle()
        job = self.state.jobs.get(request.match_info["id"])
        if (job is None or job.final != "COMPLETED" or job.expired()
                or request.query.get("sig") != self._signature(job.id)):
            return web.Response(status=404, text="Not Found")
        return await self._serve_clip(request, job, "binary/octet-stream")

    async def _serve_clip(self, request: web.Request, job, content_type: str) -> web.StreamResponse:
        data, _ = await self.clip(job)
        if self.state.roll("truncate_download"):
            response = web.StreamResponse(headers={"Content-Type": content_type, "Content-Length": str(len(data))})
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
            return drop(request)
        return web.Response(body=data, headers={"Content-Type": content_type})

    async def upload(self, request: web.Request) -> web.Response:
        entry = self.state.uploads.get(request.match_info["id"])
        if entry is None or entry[2] != request.match_info["name"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=entry[0], content_type=entry[1])
