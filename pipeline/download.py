"""Fetch a finished video into `<out>/videos/<job_key>.mp4`: stream, verify, then rename atomically."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.client import ApiClient, DownloadError
from pipeline.video_check import VideoMismatch, verify_video

VIDEO_DIR = "videos"


@dataclass(frozen=True)
class SavedVideo:
    path: Path
    bytes: int
    sha256: str


def video_path(out_dir: Path, job_key: str) -> Path:
    """Where a job's video lands; refuses any key that would leave `<out>/videos/`."""
    folder = (out_dir / VIDEO_DIR).resolve()
    path = (folder / f"{job_key}.mp4").resolve()
    if path.parent != folder or job_key in ("", ".", "..") or "/" in job_key or "\\" in job_key:
        raise ValueError(f"job key {job_key!r} is not a safe file name")
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def download_video(
    client: ApiClient, url: str, final: Path, *, duration: int, frame_size: tuple[int, int],
    max_bytes: int, verify: bool = True,
) -> SavedVideo:
    """Download to a hidden temporary file beside `final`, check it, then replace `final` with it.

    A reader never sees a partial video under the final name; a crash leaves only a `.part`.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.part")
    try:
        size, digest = await client.download(url, partial, max_bytes=max_bytes)
        if verify:
            try:
                await asyncio.to_thread(verify_video, partial, duration=duration, frame_size=frame_size)
            except VideoMismatch as exc:
                raise DownloadError(f"downloaded file is not the video asked for: {exc}") from None
        os.replace(partial, final)
        await asyncio.to_thread(_fsync_dir, final.parent)
    finally:
        partial.unlink(missing_ok=True)
    return SavedVideo(final, size, digest)
