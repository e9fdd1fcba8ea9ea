"""Is a downloaded file the video we asked for? Probed with PyAV, so "it decodes" is a real decode."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av

# Frame counts at a low frame rate make durations a little coarse; half a second is still far
# tighter than the gap between the model's clip lengths (6, 10, 15 s).
DURATION_TOLERANCE_S = 0.5


class VideoMismatch(Exception):
    """The file is not a playable video of the requested duration and frame size."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    duration: float  # seconds
    codec: str


def _open(source: Path | bytes):
    """MP4 first (the contract's format): naming it skips FFmpeg's format probe, the larger
    half of the cost of a check. Anything else is probed as before."""
    def media():
        return io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source)

    try:
        return av.open(media(), format="mp4")
    except av.FFmpegError:
        return av.open(media())


def probe_video(source: Path | bytes) -> VideoInfo:
    """Open a file (or its bytes), read the first video stream's size and duration, and decode
    one frame."""
    try:
        with _open(source) as container:
            if not container.streams.video:
                raise VideoMismatch("the file has no video stream")
            stream = container.streams.video[0]
            # One frame needs no decoder threads; starting them costs more than the decode.
            stream.thread_type = "NONE"
            stream.codec_context.thread_count = 1
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                raise VideoMismatch("the file does not say how long it is")
            for _frame in container.decode(stream):
                break
            else:
                raise VideoMismatch("no frame could be decoded")
            return VideoInfo(stream.codec_context.width, stream.codec_context.height, duration,
                             stream.codec_context.name)
    except av.FFmpegError as exc:
        raise VideoMismatch(f"not a readable video ({type(exc).__name__})") from None


def verify_video(source: Path | bytes, *, duration: int | None, frame_size: tuple[int, int] | None) -> VideoInfo:
    """The file decodes; its duration matches when the request fixed one, its frame size where
    the model's sizes are known (grok). What it is comes back either way, to be recorded."""
    info = probe_video(source)
    if frame_size is not None and (info.width, info.height) != tuple(frame_size):
        raise VideoMismatch(
            f"frame size {info.width}x{info.height}, asked for {frame_size[0]}x{frame_size[1]}"
        )
    if duration is not None and abs(info.duration - duration) > DURATION_TOLERANCE_S:
        raise VideoMismatch(f"{info.duration:.2f} s long, asked for {duration} s")
    return info
