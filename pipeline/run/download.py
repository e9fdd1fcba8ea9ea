"""Fetch a finished video into `<out>/videos/<job_key>.mp4`: stream, verify, then rename atomically."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from typing import Callable

from pipeline.api.client import ApiClient, DownloadError, TransientError
from pipeline.api.retry import OnRetry, RetryPolicy
from pipeline.models import get_model
from pipeline.run.video_check import VideoInfo, VideoMismatch, verify_video

VIDEO_DIR = "videos"
# Videos up to this size are held and checked in memory, then written in one go; a larger one
# spills to its `.part` file as it streams (those writes, rare, run on the event loop), so eight
# downloads never hold more than ~128 MB.
SPILL_BYTES = 16 * 1024 * 1024
DOWNLOAD_RETRY = RetryPolicy(attempts=4, base=1.0, cap=8.0, jitter=False)  # 4 tries, 1, 2, 4 s apart
RETRIED = (TransientError, DownloadError, OSError)  # what a download tries again (a 404 is not)


@dataclass(frozen=True)
class SavedVideo:
    path: Path
    bytes: int
    sha256: str
    verify_cpu_s: float = 0.0  # CPU the PyAV check took (it runs in a worker thread)
    info: VideoInfo | None = None  # what PyAV read of it (None: not checked)
    url: str | None = None  # the object it was stored as (--out URL), once stored

    @property
    def where(self) -> str:
        """What the ledger's output_path records: the object's URL, else the local path."""
        return self.url or str(self.path)


@functools.lru_cache(maxsize=16)
def _video_folder(out_dir: Path) -> Path:
    return (out_dir / VIDEO_DIR).resolve()  # once per folder, not once per video


def video_path(out_dir: Path, job_key: str) -> Path:
    """Where a job's video lands; refuses any key that would leave `<out>/videos/`."""
    folder = _video_folder(Path(out_dir))
    path = folder / f"{job_key}.mp4"
    if (job_key in ("", ".", "..") or "/" in job_key or "\\" in job_key or "\0" in job_key
            or path.parent != folder):
        raise ValueError(f"job key {job_key!r} is not a safe file name")
    return path


def _create(path: Path):
    try:
        return open(path, "wb")
    except FileNotFoundError:  # the first video of a run (or someone removed the folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb")


class _Spool:
    """A download's bytes: in memory, or in the `.part` file once past SPILL_BYTES."""

    def __init__(self, partial: Path):
        self.partial = partial
        self.chunks: list[bytes] = []
        self.size = 0
        self.file = None

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.file is not None:
            self.file.write(chunk)
            return
        self.chunks.append(chunk)
        if self.size > SPILL_BYTES:
            self.file = _create(self.partial)
            self.file.writelines(self.chunks)
            self.chunks = []

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _store(spool: _Spool, final: Path, *, duration: int | None, frame_size: tuple[int, int] | None,
           verify: bool) -> tuple[float, VideoInfo | None]:
    """Off the event loop: check the video, make it durable, rename it into place.

    The data is fsynced before the rename, so a file present under its final name is whole. The
    folder is not fsynced per video: if a power cut undoes a rename, the ledger's DOWNLOADED row
    points at a missing file and the next run downloads it again, without a new generation.
    Returns the CPU seconds the check took and what the file is (None unchecked).
    """
    def check(source: Path | bytes) -> tuple[float, VideoInfo | None]:
        if not verify:
            return 0.0, None
        started = time.thread_time()
        info = verify_video(source, duration=duration, frame_size=frame_size)
        return time.thread_time() - started, info

    if spool.file is None:
        data, spool.chunks = b"".join(spool.chunks), []  # one copy in memory, not two
        verify_cpu = check(data)  # before anything is written
        with _create(spool.partial) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    else:
        spool.file.flush()
        os.fsync(spool.file.fileno())
        spool.file.close()
        verify_cpu = check(spool.partial)
    os.replace(spool.partial, final)
    return verify_cpu


async def download_video(
    client: ApiClient, url: str, final: Path, *, duration: int | None, frame_size: tuple[int, int] | None,
    max_bytes: int, verify: bool = True,
) -> SavedVideo:
    """Download beside `final`, check it, then rename it over `final`.

    A reader never sees a partial video under the final name; a crash leaves at most a `.part`.
    """
    spool = _Spool(final.with_name(f".{final.name}.part"))
    try:
        size, digest = await client.download(url, spool, max_bytes=max_bytes)
        store = asyncio.ensure_future(asyncio.to_thread(
            _store, spool, final, duration=duration, frame_size=frame_size, verify=verify))
        try:
            verify_cpu, info = await asyncio.shield(store)
        except asyncio.CancelledError:
            # A thread cannot be stopped: let it end (a whole video renamed, or an error) before
            # the cleanup below touches its file. Unrecorded, a renamed video is fetched again.
            await asyncio.wait({store})
            if not store.cancelled():
                store.exception()  # retrieved: its failure is moot once the run is stopping
            raise
    except BaseException as exc:
        spool.close()
        spool.partial.unlink(missing_ok=True)
        if isinstance(exc, VideoMismatch):
            raise DownloadError(f"downloaded file is not the video asked for: {exc}") from None
        raise
    return SavedVideo(final, size, digest, verify_cpu, info)


@functools.lru_cache(maxsize=64)
def frame_size(model: str, aspect_ratio: str | None) -> tuple[int, int] | None:
    """The frame a model renders at an aspect ratio, where it is known (grok): what a downloaded
    video is checked against; None: the size is recorded, not guessed."""
    return get_model(model).frame_size(aspect_ratio)


async def download_with_retries(
    client: ApiClient, url: str, final: Path, *, duration: int | None, frame_size: tuple[int, int] | None,
    max_bytes: int, verify: bool, on_retry: OnRetry, should_stop: Callable[[], bool],
) -> SavedVideo:
    """`download_video` under DOWNLOAD_RETRY: the last failure of RETRIED is raised, and so is a
    NotFound at once (the CDN's URL is gone: the job is read again for a fresh one)."""
    return await DOWNLOAD_RETRY.run(
        lambda: download_video(client, url, final, duration=duration, frame_size=frame_size,
                               max_bytes=max_bytes, verify=verify),
        retry_on=RETRIED, on_retry=on_retry, should_stop=should_stop)
