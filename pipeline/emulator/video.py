"""Real, playable H.264 MP4 clips, cheap enough for thousands of jobs.

A clip is coloured bands and a sweeping bar at 2 frames per second; the colours and band
spacing come from a hash of the prompt (one of VARIANTS), so a gallery shows different clips.
Encoded clips are cached by (variant, frame size, duration): a batch of 1,000 jobs encodes at
most a few dozen of them. A 4k clip is drawn at its true size (3840x2160): about 1 s to encode
a 5 s one on a busy 2-core machine, once per variant and length, off the event loop (cdn.py).
"""

from __future__ import annotations

import hashlib
import io
import threading
from fractions import Fraction

import av

FPS = 2
VARIANTS = 12


def variant_of(prompt: str) -> int:
    return hashlib.sha256(prompt.encode()).digest()[0] % VARIANTS


def _plane(width: int, height: int, variant: int, frame_index: int, frames: int) -> bytes:
    """The luma plane: horizontal bands, plus a bright bar sweeping left to right."""
    band = 24 + 8 * variant
    bar_x = (frame_index * width) // max(1, frames)
    bar_w = max(8, width // 16)
    bar = b"\xeb" * min(bar_w, width - bar_x)
    dark, light = (bytes([shade]) * width for shade in (40 + 10 * variant, 120 + 8 * variant))
    rows = [row[:bar_x] + bar + row[bar_x + bar_w:] for row in (dark, light)]
    # A band at a time, not a row at a time: a 4k frame is 2,160 rows but a few dozen bands.
    return b"".join(rows[(y // band) % 2] * min(band, height - y) for y in range(0, height, band))


def render_clip(variant: int, width: int, height: int, duration: int) -> bytes:
    frames = duration * FPS
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.options = {"preset": "ultrafast", "crf": "35"}
        hue_u = bytes([(64 + 37 * variant) % 256])
        hue_v = bytes([(192 - 29 * variant) % 256])
        for i in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            y, u, v = frame.planes
            luma = _plane(width, height, variant, i, frames)
            if y.line_size == width:
                y.update(luma)
            else:  # padded rows
                y.update(b"".join(luma[r * width:(r + 1) * width] + bytes(y.line_size - width)
                                  for r in range(height)))
            u.update(hue_u * u.buffer_size)
            v.update(hue_v * v.buffer_size)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


class ClipCache:
    """Encoded clips by (variant, width, height, duration); thread-safe, each clip encoded once."""

    def __init__(self) -> None:
        self._clips: dict[tuple[int, int, int, int], tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}

    def get(self, variant: int, width: int, height: int, duration: int) -> tuple[bytes, str]:
        """(mp4 bytes, sha256 hex)."""
        key = (variant, width, height, duration)
        clip = self._clips.get(key)
        if clip is not None:
            return clip
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            clip = self._clips.get(key)
            if clip is None:
                data = render_clip(variant, width, height, duration)
                clip = self._clips[key] = (data, hashlib.sha256(data).hexdigest())
        return clip

    def cached(self, variant: int, width: int, height: int, duration: int) -> tuple[bytes, str] | None:
        return self._clips.get((variant, width, height, duration))
