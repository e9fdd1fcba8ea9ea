"""Does I/O: a video kept in an object store (--out s3://...) served through the review server,
Range requests honoured (a <video> seeks with them).

The page links only `/video/<job_key>`: no store URL, presigned or not, ever reaches it, and the
server reads the object with the store's credentials from its own environment.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from pipeline.store.faults import StorageFault
from pipeline.store.objects import head, stream

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """A Range header as [start, end) within `size`: None when the whole object is asked for (no
    header, several ranges, or one we do not read), False when it lies outside (416)."""
    match = _RANGE.match((header or "").strip())
    if match is None or not (match[1] or match[2]):
        return None
    if not match[1]:  # bytes=-N: the last N bytes
        suffix = int(match[2])
        return (max(0, size - suffix), size) if suffix else False
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    if start >= size or end <= start:
        return False
    return start, end


async def serve_object(request: web.Request, url: str, headers: dict[str, str]) -> web.StreamResponse:
    """The object at `url` as the answer to `request` (GET or HEAD), whole or the range asked."""
    try:
        size = await asyncio.to_thread(head, url)
    except StorageFault as exc:
        return web.Response(status=502, text=f"{exc}\n")
    if size is None:
        return web.Response(status=404, text="no such video\n")
    wanted = byte_range(request.headers.get("Range"), size)
    if wanted is False:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted or (0, size)
    answer = web.StreamResponse(status=206 if wanted else 200, headers={
        **headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start)})
    if wanted:
        answer.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD" or end == start:
        await answer.prepare(request)
        return answer
    try:
        _, chunks = await stream(url, start, end)
    except StorageFault as exc:
        return web.Response(status=502, text=f"{exc}\n")
    await answer.prepare(request)
    async for chunk in chunks:  # a failure mid-body cuts the connection: the browser sees it short
        await answer.write(chunk)
    await answer.write_eof()
    return answer
