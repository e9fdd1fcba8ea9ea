"""Local reference images -> short-lived upload URLs, uploaded just before the job that needs them."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from pipeline.client import ApiClient

# Apiframe keeps uploads 1-2 hours; reuse one only while it is surely still there.
REUSE_FOR_S = 45 * 60


class UploadCache:
    """One upload per file content per run (keyed by sha256), renewed before it can expire."""

    def __init__(self, client: ApiClient):
        self.client = client
        self._urls: dict[str, tuple[str, float]] = {}  # sha256 -> (url, monotonic upload time)
        self._locks: dict[str, asyncio.Lock] = {}
        self.uploads = 0

    async def url_for(self, path: Path) -> str:
        digest = await asyncio.to_thread(lambda: hashlib.sha256(path.read_bytes()).hexdigest())
        async with self._locks.setdefault(digest, asyncio.Lock()):
            cached = self._urls.get(digest)
            if cached and time.monotonic() - cached[1] < REUSE_FOR_S:
                return cached[0]
            answer = await self.client.upload(path)
            self.uploads += 1
            self._urls[digest] = (answer["url"], time.monotonic())
            return answer["url"]
