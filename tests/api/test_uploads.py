"""pipeline/api/uploads.py: real PNGs of manifests/refs uploaded to the emulator, one upload per
content, reused only while the server's own clock says it has time left."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pipeline.api.client import ApiClient, ApiError, RejectedRequest
from pipeline.api.uploads import ASSUMED_LIFETIME_S, REUSE_MARGIN_S, LocalImage, UploadCache
from pipeline.http_server import Site
from tests.harness import TEST_KEY

REFS = Path(__file__).resolve().parents[2] / "manifests" / "refs"
KOI, PAPER = REFS / "koi.png", REFS / "paper-texture.png"


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()


def test_a_local_image_is_its_bytes_as_read_once(tmp_path):
    copy = tmp_path / "koi.png"
    shutil.copy(KOI, copy)
    image = LocalImage.read(copy)
    copy.write_bytes(b"edited after the check")  # what is uploaded stays what was read
    assert image.data == KOI.read_bytes() and image.path == copy
    assert image.sha256 == hashlib.sha256(KOI.read_bytes()).hexdigest()
    assert image.ref_id == f"sha256:{image.sha256}"


async def test_the_api_can_fetch_exactly_the_bytes_read(emulator):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        cache = UploadCache(client)
        koi, paper = LocalImage.read(KOI), LocalImage.read(PAPER)
        urls = {image.path.name: await cache.url_for(image) for image in (koi, paper)}
    assert urls["koi.png"] != urls["paper-texture.png"] and urls["koi.png"].endswith("/koi.png")
    assert await fetch(urls["koi.png"]) == koi.data and await fetch(urls["paper-texture.png"]) == paper.data
    assert cache.uploads == emu.stats()["uploads"] == 2


async def test_one_upload_per_content_whatever_the_path_or_the_concurrency(emulator, tmp_path):
    emu = await emulator()
    twin = tmp_path / "same-koi-other-name.png"
    shutil.copy(KOI, twin)
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        cache = UploadCache(client)
        urls = await asyncio.gather(*(cache.url_for(LocalImage.read(path)) for path in [KOI, twin] * 5))
    assert len(set(urls)) == 1 and cache.uploads == emu.stats()["uploads"] == 1


async def test_the_margin_is_judged_on_the_servers_clock(emulator):
    # expiresAt is the API's now + 1 h; read on our clock with the API 55 min behind, only 5 min
    # would seem left (under the 10-minute margin) and every job would upload again.
    emu = await emulator(clock_offset_s=-3300.0, upload_lifetime_s=3600)
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        cache = UploadCache(client)
        for _ in range(3):
            await cache.url_for(LocalImage.read(KOI))
    assert cache.uploads == emu.stats()["uploads"] == 1


async def test_a_file_the_api_will_not_take_is_a_rejected_request(emulator, tmp_path):
    emu = await emulator()
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        cache = UploadCache(client)
        with pytest.raises(RejectedRequest, match="Unsupported file type"):
            await cache.url_for(LocalImage.read(text))
    assert cache.uploads == 0


@pytest.fixture
async def upload_server():
    """An API whose POST /v2/uploads answers `answer` (settable): shapes the emulator never sends."""
    state = {"answer": {}, "posts": 0}

    async def handler(request: web.Request) -> web.Response:
        state["posts"] += 1
        return web.json_response(state["answer"], status=201)

    app = web.Application()
    app.router.add_post("/v2/uploads", handler)
    site = Site()
    _, port = await site.start(app, "127.0.0.1", 0)
    state["base_url"] = f"http://127.0.0.1:{port}"
    yield state
    await site.stop()


@pytest.mark.parametrize("answer", [{}, {"url": ""}, {"url": 7}, {"id": "u1", "expiresAt": "2099-01-01T00:00:00Z"}])
async def test_an_answer_without_a_url_is_an_error_naming_the_file(upload_server, answer):
    upload_server["answer"] = answer
    async with ApiClient(upload_server["base_url"], TEST_KEY) as client:
        cache = UploadCache(client)
        with pytest.raises(ApiError, match="answered without a URL for koi.png"):
            await cache.url_for(LocalImage.read(KOI))
    assert cache.uploads == 0


@pytest.mark.parametrize("expires, reused", [
    (None, True),  # no expiry said: the contract's lower bound, an hour, is assumed
    ("soon", True),  # unreadable: the same
    ("2000-01-01T00:00:00Z", False),  # already past: uploaded again
])
async def test_an_answer_without_a_readable_expiry_is_assumed_to_last_an_hour(upload_server, expires, reused):
    assert ASSUMED_LIFETIME_S > REUSE_MARGIN_S
    upload_server["answer"] = {"url": "https://files.example/koi.png", "expiresAt": expires}
    async with ApiClient(upload_server["base_url"], TEST_KEY) as client:
        cache = UploadCache(client)
        for _ in range(2):
            assert await cache.url_for(LocalImage.read(KOI)) == "https://files.example/koi.png"
    assert upload_server["posts"] == cache.uploads == (1 if reused else 2)
