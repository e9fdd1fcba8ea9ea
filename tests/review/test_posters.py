"""Posters: a JPEG of an early frame, made once with PyAV and cached beside the videos."""

from __future__ import annotations

import os

import av

from pipeline.emulator.video import render_clip
from pipeline.review.posters import POSTER_FOLDER, POSTER_WIDTH, ensure_poster, poster_path


def test_a_poster_is_a_small_jpeg_made_once_and_again_when_the_video_changes(tmp_path):
    video = tmp_path / "videos" / "boat.mp4"
    video.parent.mkdir()
    video.write_bytes(render_clip(3, 480, 270, 6))
    poster = ensure_poster(video)
    assert poster == tmp_path / "videos" / POSTER_FOLDER / "boat.jpg" == poster_path(video)
    data = poster.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"  # a whole JPEG
    with av.open(str(poster)) as image:  # and one a decoder reads, at the poster's width
        frame = next(image.decode(video=0))
    assert (frame.width, frame.height) == (POSTER_WIDTH, 180)
    assert len(data) < video.stat().st_size

    made = poster.stat().st_mtime_ns
    assert ensure_poster(video) == poster and poster.stat().st_mtime_ns == made  # cached, not made again

    video.write_bytes(render_clip(5, 270, 480, 6))  # a regenerated clip under the same name
    later = poster.stat().st_mtime + 5
    os.utime(video, (later, later))
    assert ensure_poster(video) == poster
    with av.open(str(poster)) as image:
        frame = next(image.decode(video=0))
    assert (frame.width, frame.height) == (POSTER_WIDTH, 568)  # portrait now
    assert sorted(p.name for p in poster.parent.iterdir()) == ["boat.jpg"]  # no temporary left


def test_a_video_that_cannot_be_read_has_no_poster(tmp_path):
    broken = tmp_path / "cut.mp4"
    broken.write_bytes(render_clip(1, 480, 270, 6)[:300])
    assert ensure_poster(broken) is None
    assert ensure_poster(tmp_path / "missing.mp4") is None
    assert not (tmp_path / POSTER_FOLDER).exists() or not any((tmp_path / POSTER_FOLDER).iterdir())
