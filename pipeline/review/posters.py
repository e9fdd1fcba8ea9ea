"""Does I/O: a clip's poster, a small JPEG of an early frame, made with PyAV and cached on disk.

The review page shows posters instead of loading a thousand videos. A poster is made the first
time the page asks for it and kept in `<videos folder>/.posters/<video name>.jpg` (never in the
ledger); it is made again only when the video is newer than it. PyAV encodes the JPEG itself
(MJPEG), so no image library is needed.

A video kept in an object store (--out s3://...) is fetched once to a temporary file beside the
ledger, its poster made and kept in `<ledger folder>/.posters/<name>-<sha of URL>.jpg` (an object
is stored create-only, so a poster of it never goes stale), and the temporary file removed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av

from pipeline.store.faults import StorageFault
from pipeline.store.objects import fetch

POSTER_FOLDER = ".posters"
POSTER_WIDTH = 320
POSTER_AT_S = 0.5  # an early frame: past a fade-in, yet only a few frames to decode


def poster_path(video: Path) -> Path:
    return video.parent / POSTER_FOLDER / f"{video.stem}.jpg"


def _encode_jpeg(frame: av.VideoFrame) -> bytes:
    height = max(2, int(POSTER_WIDTH * frame.height / frame.width) // 2 * 2)
    small = frame.reformat(width=POSTER_WIDTH, height=height, format="yuvj420p")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = small.width, small.height, "yuvj420p"
    codec.time_base = Fraction(1, 25)  # the encoder wants one; a single frame makes it moot
    return b"".join(bytes(p) for p in codec.encode(small)) + b"".join(bytes(p) for p in codec.encode(None))


def _early_frame(video: Path) -> av.VideoFrame | None:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frame = None
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= POSTER_AT_S:
                break
        return frame


def _replace(poster: Path, data: bytes) -> None:
    """Write `poster` whole or not at all. Two requests (or two servers) may make the same poster
    at once: each writes its own temporary file, and the last rename wins."""
    fd, temporary = tempfile.mkstemp(dir=poster.parent, prefix=f".{poster.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, poster)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        raise


def ensure_poster(video: Path) -> Path | None:
    """The poster of `video`, made now if missing or older than the video; None when the video
    cannot be read (the page then shows the video's own first frame once played)."""
    poster = poster_path(video)
    try:
        if poster.exists() and poster.stat().st_mtime >= video.stat().st_mtime:
            return poster
        frame = _early_frame(video)
        if frame is None:
            return None
        data = _encode_jpeg(frame)
        poster.parent.mkdir(parents=True, exist_ok=True)
        _replace(poster, data)
        return poster
    except (OSError, av.FFmpegError, IndexError, ValueError):
        return None


def remote_poster_path(url: str, folder: Path) -> Path:
    name = url.rsplit("/", 1)[-1].removesuffix(".mp4")
    return folder / POSTER_FOLDER / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.jpg"


def ensure_remote_poster(url: str, folder: Path) -> Path | None:
    """The poster of the object at `url`, cached under `folder`; None when it cannot be read."""
    poster = remote_poster_path(url, folder)
    if poster.exists():
        return poster
    try:
        poster.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=poster.parent, prefix=".fetch-") as scratch:
            video = fetch(url, Path(scratch) / "video.mp4")
            frame = _early_frame(video)
            if frame is None:
                return None
            _replace(poster, _encode_jpeg(frame))
        return poster
    except (OSError, StorageFault, av.FFmpegError, IndexError, ValueError):
        return None
