"""pipeline/run/video_check.py: a real clip (rendered by the emulator's encoder) passes; a clip of
another length or frame size, or bytes that are no video, are refused."""

from __future__ import annotations

import pytest

from pipeline.emulator.video import render_clip
from pipeline.run.video_check import VideoMismatch, probe_video, verify_video


@pytest.fixture(scope="module")
def clip() -> bytes:
    return render_clip(1, 64, 36, 6)


def test_a_clip_of_the_asked_length_and_size_passes(clip, tmp_path):
    info = verify_video(clip, duration=6, frame_size=(64, 36))
    assert abs(info.duration - 6) <= 0.5
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    assert probe_video(path) == probe_video(clip)  # a file and its bytes are probed alike


@pytest.mark.parametrize("duration, frame_size", [(10, (64, 36)), (6, (36, 64)), (6, (1280, 720))])
def test_another_length_or_frame_size_is_refused(clip, duration, frame_size):
    with pytest.raises(VideoMismatch):
        verify_video(clip, duration=duration, frame_size=frame_size)


def test_bytes_that_are_no_video_are_refused():
    with pytest.raises(VideoMismatch):
        verify_video(b"<html>not found</html>", duration=6, frame_size=(64, 36))
