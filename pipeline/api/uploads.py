"""Local reference images -> short-lived upload URLs, uploaded just before the job that needs them.

What is uploaded is a LocalImage's bytes as read (and checked) once by pipeline/run/references.py:
no path is read here, so a file edited or a symlink swapped after the check cannot change it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.api.client import ApiClient, ApiError
from pipeline.api.wire import parse_api_time

# An upload is reused only while its `expiresAt` is more than this far away, so the API can still
# fetch it when the job starts. Files live "about 1-2 hours" (CONTRACT.md): read, never assumed.
REUSE_MARGIN_S = 10 * 60
# When an answer carries no readable `expiresAt`: assume the contract's lower bound, one hour.
ASSUMED_LIFETIME_S = 60 * 60


@dataclass(frozen=True)
class LocalImage:
    """A local reference image as read once: its bytes and their sha256."""

    path: Path
    data: bytes
    sha256: str

    @classmethod
    def read(cls, path: Path) -> LocalImage:
        """The file's bytes, read once."""
        data = path.read_bytes()
        return cls(path, data, hashlib.sha256(data).hexdigest())

    @property
    def ref_id(self) -> str:
        """How a request names it (manifest.request_hash, the Idempotency-Key): by content."""
        return f"sha256:{self.sha256}"


class UploadCache:
    """One upload per file content (keyed by sha256), renewed before it can expire."""

    def __init__(self, client: ApiClient):
        self.client = client
        self._urls: dict[str, tuple[str, float]] = {}  # sha256 -> (url, expiry on the server's clock)
        self._locks: dict[str, asyncio.Lock] = {}
        self.uploads = 0

    def _server_now(self) -> float:
        return time.time() + self.client.clock_offset

    async def url_for(self, image: LocalImage) -> str:
        """A URL the API can fetch `image.data` from: exactly those bytes, uploaded if need be."""
        digest = image.sha256
        async with self._locks.setdefault(digest, asyncio.Lock()):
            cached = self._urls.get(digest)
            if cached and cached[1] - self._server_now() > REUSE_MARGIN_S:
                return cached[0]
            answer = await self.client.upload(image.data, image.path.name)
            url = answer.get("url") if isinstance(answer, dict) else None
            if not isinstance(url, str) or not url:
                raise ApiError(f"POST /v2/uploads answered without a URL for {image.path.name}")
            expires = parse_api_time(answer.get("expiresAt")) or self._server_now() + ASSUMED_LIFETIME_S
            self.uploads += 1
            self._urls[digest] = (url, expires)
            return url
