"""Downloads are the one place we fetch a URL the API gave us: only http(s), only video, capped,
never outside `<out>/videos/`, never with the API key attached."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from aiohttp import web

from pipeline.api.client import ApiClient, DownloadError, NotFound, TransientError
from pipeline.run import download
from pipeline.run.download import download_video, video_path
from pipeline.http_server import Site

KEY = "afk_download_test_secret_000"


def make_mp4(path: Path, width: int, height: int, seconds: int, fps: int = 2) -> bytes:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(i * 20) % 255]) * plane.buffer_size)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


@pytest.fixture
async def cdn(tmp_path):
    """A tiny CDN on loopback whose answers the tests choose."""
    video = make_mp4(tmp_path / "src.mp4", 320, 180, 2)
    seen_headers: list[dict] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen_headers.append(dict(request.headers))
        name = request.match_info["name"]
        if name == "ok.mp4":
            return web.Response(body=video, content_type="video/mp4")
        if name == "page.html":
            return web.Response(text="<html>sign in</html>", content_type="text/html")
        if name == "gone.mp4":
            return web.Response(status=404)
        if name == "redirect.mp4":
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data")
        if name == "short.mp4":
            response = web.StreamResponse(headers={"Content-Type": "video/mp4",
                                                   "Content-Length": str(len(video))})
            await response.prepare(request)
            await response.write(video[: len(video) // 2])
            request.transport.close()
            return response
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/{name}", handler)
    site = Site()
    _, port = await site.start(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}", video, seen_headers
    await site.stop()


async def test_a_good_video_lands_verified_under_its_key(cdn, tmp_path):
    base, video, seen = cdn
    final = video_path(tmp_path / "out", "job-1")
    async with ApiClient("http://127.0.0.1:9", KEY) as client:
        saved = await download_video(client, f"{base}/ok.mp4", final, duration=2, frame_size=(320, 180),
                                     max_bytes=10_000_000)
    assert saved.path == final and final.read_bytes() == video
    assert not list(final.parent.glob(".*.part"))
    assert all("X-API-Key" not in h and KEY not in str(h) for h in seen)


@pytest.mark.parametrize("name, error", [("ok.mp4", None), ("short.mp4", TransientError)])
async def test_a_video_past_the_memory_limit_streams_to_disk(cdn, tmp_path, monkeypatch, name, error):
    # Large videos spill to their .part file as they stream; the same checks and cleanup apply.
    monkeypatch.setattr(download, "SPILL_BYTES", 500)
    base, video, _ = cdn
    assert len(video) // 2 > 500  # both the whole and the cut-off body spill
    final = video_path(tmp_path / "out", "big-1")
    async with ApiClient("http://127.0.0.1:9", KEY) as client:
        if error is None:
            saved = await download_video(client, f"{base}/{name}", final, duration=2, frame_size=(320, 180),
                                         max_bytes=10_000_000)
            assert final.read_bytes() == video and saved.bytes == len(video) and saved.verify_cpu_s > 0
        else:
            with pytest.raises(error):
                await download_video(client, f"{base}/{name}", final, duration=2, frame_size=(320, 180),
                                     max_bytes=10_000_000)
            assert not final.exists()
    assert not list(final.parent.glob(".*.part"))


@pytest.mark.parametrize("name, error", [
    ("page.html", DownloadError),     # not a video
    ("gone.mp4", NotFound),           # purged
    ("redirect.mp4", DownloadError),  # redirects are not followed anywhere
    ("short.mp4", TransientError),    # cut off under a full Content-Length
])
async def test_bad_answers_leave_nothing_behind(cdn, tmp_path, name, error):
    base, _, _ = cdn
    final = video_path(tmp_path / "out", "job-2")
    async with ApiClient("http://127.0.0.1:9", KEY) as client:
        with pytest.raises(error):
            await download_video(client, f"{base}/{name}", final, duration=2, frame_size=(320, 180),
                                 max_bytes=10_000_000)
    assert not final.exists()
    assert not list(final.parent.glob("*"))


async def test_size_cap_and_wrong_video_are_refused(cdn, tmp_path):
    base, video, _ = cdn
    final = video_path(tmp_path / "out", "job-3")
    async with ApiClient("http://127.0.0.1:9", KEY) as client:
        with pytest.raises(DownloadError, match="cap"):
            await download_video(client, f"{base}/ok.mp4", final, duration=2, frame_size=(320, 180),
                                 max_bytes=len(video) - 1)
        with pytest.raises(DownloadError, match="frame size"):
            await download_video(client, f"{base}/ok.mp4", final, duration=2, frame_size=(1280, 720),
                                 max_bytes=10_000_000)
        with pytest.raises(DownloadError, match="long"):
            await download_video(client, f"{base}/ok.mp4", final, duration=6, frame_size=(320, 180),
                                 max_bytes=10_000_000)
    assert not final.exists()


@pytest.mark.parametrize("url", ["ftp://cdn.example/v.mp4", "file:///etc/passwd", "javascript:alert(1)",
                                 "/relative/v.mp4"])
async def test_only_http_urls_are_followed(tmp_path, url):
    async with ApiClient("http://127.0.0.1:9", KEY) as client:
        with pytest.raises(DownloadError, match="only http"):
            await download_video(client, url, video_path(tmp_path, "k"), duration=6,
                                 frame_size=(1280, 720), max_bytes=1000)


@pytest.mark.parametrize("key", ["../escape", "a/b", "..", ".", "", "x\\y", "/abs"])
def test_no_output_name_escapes_out(tmp_path, key):
    with pytest.raises(ValueError):
        video_path(tmp_path, key)
