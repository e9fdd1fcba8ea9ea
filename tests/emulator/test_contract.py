"""The emulator speaks the Apiframe v2 contract: every route, status and rule, over real HTTP,
every answer checked against openapi.json's own schemas.

Covers: pipeline/emulator/server.py pipeline/emulator/cdn.py pipeline/emulator/state.py pipeline/emulator/config.py
Covers: pipeline/emulator/ratelimit.py pipeline/emulator/video.py pipeline/emulator/webhooks.py
Covers: pipeline/emulator/cli.py pipeline/emulator/__main__.py
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pipeline.emulator import Faults
from pipeline.http_server import Site
from pipeline.models import GROK_IMAGINE_VIDEO
from pipeline.run.video_check import probe_video
from tests.conftest import assert_valid
from tests.harness import TEST_KEY

HEADERS = {"X-API-Key": TEST_KEY}


def body(prompt="a red fox in fresh snow", duration=6, aspect_ratio="16:9", **extra):
    params = {"duration": duration, "aspect_ratio": aspect_ratio}
    return {"model": "grok-imagine-video", "prompt": prompt, "grokImagineVideoParams": params, **extra}


async def call(session, method, url, *, expect=None, schema=None, **kwargs):
    kwargs.setdefault("headers", HEADERS)
    async with session.request(method, url, **kwargs) as response:
        data = await response.json(content_type=None)
        if expect is not None:
            assert response.status == expect, (response.status, data)
        if schema:
            assert_valid(data, schema)
        return response.status, data, response.headers


async def submit(session, emu, payload=None, key=None, expect=202):
    headers = dict(HEADERS)
    if key:
        headers["Idempotency-Key"] = key
    _, data, _ = await call(session, "POST", f"{emu.base_url}/v2/videos/generate", json=payload or body(),
                            headers=headers, expect=expect, schema="JobAccepted" if expect == 202 else None)
    return data


async def test_happy_path_submit_get_list_me_and_download(emulator, tmp_path):
    emu = await emulator()
    async with aiohttp.ClientSession() as s:
        accepted = await submit(s, emu, body(aspect_ratio="9:16", duration=10))
        assert accepted["status"] == "QUEUED"
        assert_valid(body(aspect_ratio="9:16", duration=10), "GrokImagineVideoRequest")
        _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{accepted['jobId']}", expect=200, schema="Job")
        assert job["status"] == "COMPLETED" and job["creditCost"] == 15 and job["expired"] is False
        _, listing, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs", expect=200, schema="JobList")
        assert [j["id"] for j in listing["jobs"]] == [accepted["jobId"]]
        _, me, _ = await call(s, "GET", f"{emu.base_url}/v2/me", expect=200, schema="Me")
        assert me["team"]["credits"] == 100_000 - 15
        async with s.get(job["result"]["videoUrl"]) as response:
            assert response.status == 200 and response.content_type == "video/mp4"
            data = await response.read()
            assert len(data) == response.content_length
    (tmp_path / "v.mp4").write_bytes(data)
    info = probe_video(tmp_path / "v.mp4")
    assert (info.width, info.height, info.codec) == (720, 1280, "h264")
    assert info.duration == pytest.approx(10, abs=0.5)


async def test_every_aspect_ratio_has_its_frame_size_and_prompts_change_the_picture(emulator, tmp_path):
    emu = await emulator()
    hashes = set()
    async with aiohttp.ClientSession() as s:
        for i, (ratio, size) in enumerate(GROK_IMAGINE_VIDEO.frame_sizes.items()):
            accepted = await submit(s, emu, body(prompt=f"prompt number {i}", aspect_ratio=ratio, duration=6))
            _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{accepted['jobId']}", expect=200)
            async with s.get(job["result"]["videoUrl"]) as response:
                data = await response.read()
            path = tmp_path / f"{i}.mp4"
            path.write_bytes(data)
            assert (probe_video(path).width, probe_video(path).height) == size
        for prompt in ("a lighthouse", "a jellyfish", "a cactus", "a glacier", "a comet", "a tram"):
            accepted = await submit(s, emu, body(prompt=prompt))
            _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{accepted['jobId']}")
            async with s.get(job["result"]["videoUrl"]) as response:
                hashes.add(hashlib.sha256(await response.read()).hexdigest())
    assert len(hashes) >= 3  # different prompts, different pictures


@pytest.mark.parametrize("payload, path", [
    ({**body(), "seed": 3}, "seed"),
    (body() | {"grokImagineVideoParams": {"duration": 6, "fps": 24}}, "grokImagineVideoParams.fps"),
    (body(prompt=""), "prompt"),
    (body(prompt="x" * 5001), "prompt"),
    (body(duration=True), "grokImagineVideoParams.duration"),
    (body(duration=7), "grokImagineVideoParams.duration"),
    (body(duration="6"), "grokImagineVideoParams.duration"),
    (body(aspect_ratio="21:9"), "grokImagineVideoParams.aspect_ratio"),
    (body() | {"grokImagineVideoParams": {"reference_images": [f"https://x.test/{i}.png" for i in range(8)]}},
     "grokImagineVideoParams.reference_images"),
    (body() | {"grokImagineVideoParams": {"reference_images": ["not a uri"]}},
     "grokImagineVideoParams.reference_images.0"),
    ({"prompt": "no model"}, "model"),
    (body(model="sora-2"), "model"),
])
async def test_validation_errors_are_keyed_by_json_path(emulator, payload, path):
    emu = await emulator()
    async with aiohttp.ClientSession() as s:
        _, data, _ = await call(s, "POST", f"{emu.base_url}/v2/videos/generate", json=payload, expect=400,
                                schema="ValidationError")
    assert path in data["details"], data
    assert emu.stats()["credits"]["charged"] == 0 and emu.stats()["jobs"] == []


async def test_prompt_of_exactly_5000_characters_and_seven_images_are_fine(emulator):
    emu = await emulator()
    payload = body(prompt="y" * 5000)
    payload["grokImagineVideoParams"]["reference_images"] = [f"https://x.test/{i}.png" for i in range(7)]
    async with aiohttp.ClientSession() as s:
        await submit(s, emu, payload)


async def test_auth_and_job_id_errors(emulator):
    emu = await emulator()
    async with aiohttp.ClientSession() as s:
        await call(s, "GET", f"{emu.base_url}/v2/me", headers={}, expect=401, schema="ErrorResponse")
        await call(s, "GET", f"{emu.base_url}/v2/me", headers={"X-API-Key": "afk_wrong"}, expect=401,
                   schema="ErrorResponse")
        await call(s, "GET", f"{emu.base_url}/v2/jobs/not-a-uuid", expect=400, schema="ErrorResponse")
        await call(s, "GET", f"{emu.base_url}/v2/jobs/00000000-0000-4000-8000-000000000000", expect=404,
                   schema="ErrorResponse")
        for query in ("limit=0", "limit=101", "status=DONE", "cursor=%%%"):
            await call(s, "GET", f"{emu.base_url}/v2/jobs?{query}", expect=400, schema="ValidationError")


async def test_credits_charged_refused_and_refunded(emulator):
    emu = await emulator(credits=40, faults=Faults(seed=1, fail_generation=1.0))
    async with aiohttp.ClientSession() as s:
        first = await submit(s, emu, body(duration=15))  # 25, fails, refunded
        _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{first['jobId']}", expect=200, schema="Job")
        assert job["status"] == "FAILED" and job["error"] and job["creditCost"] == 0
        _, me, _ = await call(s, "GET", f"{emu.base_url}/v2/me", schema="Me")
        assert me["team"]["credits"] == 40
        emu.configure(faults={"fail_generation": 0.0})
        await submit(s, emu, body(duration=15))  # 25 charged: 15 left
        _, short, _ = await call(s, "POST", f"{emu.base_url}/v2/videos/generate", json=body(prompt="b", duration=15),
                                 expect=402, schema="InsufficientCredits")
        assert (short["creditsRequired"], short["creditsAvailable"]) == (25, 15)
    credits = emu.stats()["credits"]
    assert credits == {"balance": 15, "charged": 50, "refunded": 25}


async def test_idempotency_key_replays_the_original_job(emulator):
    emu = await emulator(time_scale=0.02)
    async with aiohttp.ClientSession() as s:
        first = await submit(s, emu, body(), key="vb-k-a1")
        await asyncio.sleep(0.05)
        again = await submit(s, emu, body(), key="vb-k-a1")
        assert again["jobId"] == first["jobId"]
        _, conflict, _ = await call(s, "POST", f"{emu.base_url}/v2/videos/generate", json=body(prompt="other"),
                                    headers={**HEADERS, "Idempotency-Key": "vb-k-a1"}, expect=409,
                                    schema="ErrorResponse")
        await call(s, "POST", f"{emu.base_url}/v2/videos/generate", json=body(),
                   headers={**HEADERS, "Idempotency-Key": "k" * 256}, expect=400)
        await submit(s, emu, body(), key="k" * 255)
    stats = emu.stats()
    assert len(stats["jobs"]) == 2 and stats["credits"]["charged"] == 20


async def test_jobs_move_through_queued_processing_to_completed(emulator):
    emu = await emulator(time_scale=0.02)  # a 6 s clip takes 0.6-1.2 s
    async with aiohttp.ClientSession() as s:
        accepted = await submit(s, emu)
        seen, progress = [], []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{accepted['jobId']}", schema="Job")
            seen.append(job["status"])
            if job["status"] == "PROCESSING":
                progress.append(job["progress"])
            if job["status"] == "COMPLETED":
                break
            await asyncio.sleep(0.01)
    assert seen[-1] == "COMPLETED" and "PROCESSING" in seen
    assert seen.index("PROCESSING") < seen.index("COMPLETED")
    assert progress == sorted(progress) and progress[-1] > progress[0]


async def test_list_pages_newest_first_with_status_filter_and_cursor(emulator):
    emu = await emulator(faults=Faults(seed=2, fail_generation=0.3))
    async with aiohttp.ClientSession() as s:
        ids = [(await submit(s, emu, body(prompt=f"p{i}")))["jobId"] for i in range(25)]
        collected, cursor = [], None
        while True:
            params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
            _, page, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs", params=params, schema="JobList")
            collected += [j["id"] for j in page["jobs"]]
            if not page["hasMore"]:
                assert page["nextCursor"] is None
                break
            cursor = page["nextCursor"]
        assert collected == ids[::-1]
        _, failed, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs", params={"status": "FAILED", "limit": "100"},
                                  schema="JobList")
    assert failed["jobs"] and all(j["status"] == "FAILED" for j in failed["jobs"])
    assert len(failed["jobs"]) == emu.stats()["faults"]["fail_generation"]


async def test_upload_is_served_back_and_bad_files_refused(emulator):
    emu = await emulator()
    png = (Path(__file__).resolve().parents[2] / "manifests/refs/koi.png").read_bytes()
    async with aiohttp.ClientSession() as s:
        form = aiohttp.FormData()
        form.add_field("file", png, filename="koi.png", content_type="application/octet-stream")
        _, upload, _ = await call(s, "POST", f"{emu.base_url}/v2/uploads", data=form, expect=201, schema="Upload")
        assert upload["contentType"] == "image/png" and upload["byteSize"] == len(png)
        async with s.get(upload["url"]) as response:
            assert await response.read() == png
        form = aiohttp.FormData()
        form.add_field("file", b"#!/bin/sh\necho hi", filename="x.png")
        await call(s, "POST", f"{emu.base_url}/v2/uploads", data=form, expect=400, schema="ValidationError")


async def test_sliding_window_rate_limit_answers_429_with_retry_after(emulator):
    emu = await emulator(rpm=5, rate_window_seconds=1.5)
    async with aiohttp.ClientSession() as s:
        statuses = [(await call(s, "GET", f"{emu.base_url}/v2/me"))[0] for _ in range(5)]
        status, data, headers = await call(s, "GET", f"{emu.base_url}/v2/me", expect=429, schema="ErrorResponse")
        assert statuses == [200] * 5 and int(headers["Retry-After"]) >= 1
        await asyncio.sleep(int(headers["Retry-After"]))
        await call(s, "GET", f"{emu.base_url}/v2/me", expect=200)
        async with s.get(f"{emu.base_url}/_emulator/stats") as response:  # outside /v2: never limited
            assert response.status == 200
    assert emu.stats()["rate_limited"] == 1 and emu.stats()["retry_after_violations"] == 0


async def test_faults_fire_and_reproduce_with_the_same_seed(emulator):
    async def trace(seed):
        emu = await emulator(faults=Faults(seed=seed, error_503=0.3, reset_connection=0.2))
        outcome = []
        async with aiohttp.ClientSession() as s:
            for _ in range(30):
                try:
                    outcome.append((await call(s, "GET", f"{emu.base_url}/v2/me"))[0])
                except aiohttp.ClientError:
                    outcome.append("reset")
        return outcome, emu.stats()["faults"]

    first, counts = await trace(11)
    again, _ = await trace(11)
    other, _ = await trace(12)
    assert first == again and first != other
    assert 503 in first and "reset" in first and counts["error_503"] == first.count(503)


async def test_dropped_answer_after_create_is_recovered_by_the_key(emulator):
    emu = await emulator(faults=Faults(seed=0, drop_after_create=1.0))
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientError):
            await submit(s, emu, key="vb-drop-a1")
        assert len(emu.stats()["jobs"]) == 1 and emu.stats()["credits"]["charged"] == 10
        emu.configure(faults={"drop_after_create": 0.0})
        again = await submit(s, emu, key="vb-drop-a1")
    assert again["jobId"] == emu.stats()["jobs"][0]["id"] and emu.stats()["credits"]["charged"] == 10


async def test_truncated_download_and_expired_results(emulator):
    emu = await emulator(faults=Faults(seed=0, truncate_download=1.0))
    async with aiohttp.ClientSession() as s:
        accepted = await submit(s, emu)
        _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{accepted['jobId']}")
        with pytest.raises(aiohttp.ClientPayloadError):
            async with s.get(job["result"]["videoUrl"]) as response:
                assert response.content_length > 0
                await response.read()
        emu.configure(faults={"truncate_download": 0.0, "expire_results": 1.0})
        gone = await submit(s, emu, body(prompt="will expire"))
        _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{gone['jobId']}", schema="Job")
        assert job["expired"] is True
        async with s.get(job["result"]["videoUrl"]) as response:
            assert response.status == 404


async def test_slow_responses_wait(emulator):
    emu = await emulator(faults=Faults(seed=0, slow_response=1.0, slow_seconds=0.3))
    async with aiohttp.ClientSession() as s:
        started = time.monotonic()
        await call(s, "GET", f"{emu.base_url}/v2/me", expect=200)
        assert time.monotonic() - started >= 0.3


async def test_signed_webhooks_reach_the_url_given(emulator):
    received = []

    async def hook(request):
        received.append((await request.read(), request.headers.get("X-Webhook-Signature")))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    site = Site()
    _, port = await site.start(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/hook"
    emu = await emulator(time_scale=0.01)
    try:
        async with aiohttp.ClientSession() as s:
            accepted = await submit(s, emu, body(webhookUrl=url, webhookEvents=["completed"]))
            for _ in range(100):
                await asyncio.sleep(0.05)
                await call(s, "GET", f"{emu.base_url}/v2/jobs/{accepted['jobId']}")
                if received:
                    break
    finally:
        await site.stop()
    raw, header = received[0]
    key = hashlib.sha256(TEST_KEY.encode()).digest()
    assert header == "sha256=" + hmac.new(key, raw, hashlib.sha256).hexdigest()
    event = json.loads(raw)
    assert event["jobId"] == accepted["jobId"] and event["type"] == "completed"


async def test_stats_are_the_server_side_truth(emulator):
    emu = await emulator()
    async with aiohttp.ClientSession() as s:
        await submit(s, emu, key="vb-s-a1")
        await call(s, "GET", f"{emu.base_url}/v2/me")
        async with s.get(f"{emu.base_url}/_emulator/stats") as response:
            stats = await response.json()
    job = stats["jobs"][0]
    assert job["idempotency_key"] == "vb-s-a1" and job["status"] == "COMPLETED" and len(job["video_sha256"]) == 64
    assert stats["requests"] == {"POST /v2/videos/generate": 1, "GET /v2/me": 1}
    assert stats["credits"] == {"balance": 100_000 - 10, "charged": 10, "refunded": 0}


def test_standalone_emulator_prints_its_url_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "emulator", "--key", TEST_KEY, "--time-scale", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")

        async def probe():
            async with aiohttp.ClientSession() as s:
                return (await call(s, "GET", f"{url}/v2/me", schema="Me"))[0]

        assert asyncio.run(probe()) == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert TEST_KEY not in out + err


def test_python_dash_m_pipeline_emulator_takes_the_same_options():
    """`python -m pipeline.emulator` (pipeline/emulator/__main__.py) parses the options `videobatch emulator` does."""
    done = subprocess.run([sys.executable, "-m", "pipeline.emulator", "--dialect", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: python -m pipeline.emulator ")
    assert "argument --dialect: unknown dialect nope; known: result-string," in done.stderr
