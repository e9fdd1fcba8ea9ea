"""Local reference images -> short-lived upload URLs, uploaded just before the job that needs them."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from pipeline.api.client import ApiClient, ApiError
from pipeline.api.wire import parse_api_time

# An upload is reused only while its `expiresAt` is more than this far away, so the API can still
# fetch it when the job starts. Files live "about 1-2 hours" (CONTRACT.md): read, never assumed.
REUSE_MARGIN_S = 10 * 60
# When an answer carries no readable `expiresAt`: assume the contract's lower bound, one hour.
ASSUMED_LIFETIME_S = 60 * 60


class UploadCache:
    """One upload per file content (keyed by sha256), renewed before it can expire."""

    def __init__(self, client: ApiClient):
        self.client = client
        self._urls: dict[str, tuple[str, float]] = {}  # sha256 -> (url, expiry on the server's clock)
        self._locks: dict[str, asyncio.Lock] = {}
        self.uploads = 0

    def _server_now(self) -> float:
        return time.time() + self.client.clock_offset

    async def url_for(self, path: Path) -> str:
        digest = await asyncio.to_thread(lambda: hashlib.sha256(path.read_bytes()).hexdigest())
        async with self._locks.setdefault(digest, asyncio.Lock()):
            cached = self._urls.get(digest)
            if cached and cached[1] - self._server_now() > REUSE_MARGIN_S:
                return cached[0]
            answer = await self.client.upload(path)
            url = answer.get("url") if isinstance(answer, dict) else None
            if not isinstance(url, str) or not url:
                raise ApiError(f"POST /v2/uploads answered without a URL for {path.name}")
            expires = parse_api_time(answer.get("expiresAt")) or self._server_now() + ASSUMED_LIFETIME_S
            self.uploads += 1
            self._urls[digest] = (url, expires)
            return url
