"""The emulator speaks the Apiframe v2 contract: every route, status and rule, over real HTTP,
every answer checked against openapi.json's own schemas.

Covers: pipeline/emulator/server.py pipeline/emulator/cdn.py pipeline/emulator/state.py pipeline/emulator/config.py
Covers: pipeline/emulator/ratelimit.py pipeline/emulator/video.py pipeline/emulator/webhooks.py
Covers: pipeline/emulator/cli.py pipeline/emulator/__main__.py pipeline/emulator/catalog.py
Covers: pipeline/emulator/frames.py
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
from pipeline.emulator.frames import default_seconds
from pipeline.http_server import Site
from pipeline.models import GROK_IMAGINE_VIDEO, MODELS
from pipeline.models.pricing import read_catalog, upper_bound
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
    (body(model="sora-3"), "model"),
    (body(model="sora-2"), "grokImagineVideoParams"),  # another model's block: an unrecognized key
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


# -- every model --

def model_body(name, prompt="a lighthouse beam over a stormy sea", **params):
    """A valid body from the model's own schema: its shortest clip, its first aspect ratio (Veo's
    free text: 9:16), an https URL for each parameter it requires."""
    model = MODELS[name]
    block = {}
    if model.durations:
        block["duration"] = min(model.durations)
    if model.takes("aspect_ratio"):
        block["aspect_ratio"] = model.aspect_ratios[0] if model.aspect_ratios else "9:16"
    for required in model.schema["properties"][model.params_field].get("required", []):
        block[required] = f"https://images.test/{required}.png"
    return {"model": name, "prompt": prompt, model.params_field: {**block, **params}}


async def read_prices(session, emu):
    async with session.get(f"{emu.base_url}/v2/models", params={"modality": "video"}) as response:
        return read_catalog(await response.json())


@pytest.mark.parametrize("name", list(MODELS))
async def test_every_model_is_accepted_charged_within_its_bound_and_makes_its_clip(emulator, tmp_path, name):
    emu = await emulator()
    model, payload = MODELS[name], model_body(name)
    if model is GROK_IMAGINE_VIDEO:
        assert_valid(payload, "GrokImagineVideoRequest")
    async with aiohttp.ClientSession() as s:
        prices = await read_prices(s, emu)
        accepted = await submit(s, emu, payload)
        _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{accepted['jobId']}", expect=200, schema="Job")
        async with s.get(job["result"]["videoUrl"]) as response:
            (tmp_path / "v.mp4").write_bytes(await response.read())
        wrongs = {"fps": 24, **({"duration": 1} if model.durations else {})}  # a key it lacks; a length no model makes
        for wrong, value in wrongs.items():
            bad = {**payload, model.params_field: {**payload[model.params_field], wrong: value}}
            _, refused, _ = await call(s, "POST", f"{emu.base_url}/v2/videos/generate", json=bad, expect=400,
                                       schema="ValidationError")
            assert f"{model.params_field}.{wrong}" in refused["details"], refused
    stats = emu.stats()
    served = stats["jobs"][0]
    assert len(stats["jobs"]) == 1 and stats["credits"]["charged"] == job["creditCost"]  # the 400s cost nothing
    assert job["status"] == "COMPLETED" and job["model"] == name and job["input"] == payload
    asked = payload[model.params_field].get("duration")
    assert 0 < job["creditCost"] <= upper_bound(model, asked, prices)
    info = probe_video(tmp_path / "v.mp4")
    assert (info.width, info.height) == (served["width"], served["height"]) and info.codec == "h264"
    assert info.duration == pytest.approx(asked or default_seconds(model), abs=0.5)
    if model.frame_size(payload[model.params_field].get("aspect_ratio")):
        assert (info.width, info.height) == model.frame_size(payload[model.params_field]["aspect_ratio"])


async def test_a_4k_clip_is_drawn_at_2160_and_a_default_length_when_none_is_asked(emulator, tmp_path):
    emu = await emulator()
    async with aiohttp.ClientSession() as s:
        for n, payload in enumerate((model_body("kling-3.0", mode="4k", duration=3),
                                     {"model": "veo-3.1-fast", "prompt": "no params at all", "veoParams": {}})):
            accepted = await submit(s, emu, payload)
            _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{accepted['jobId']}", schema="Job")
            async with s.get(job["result"]["videoUrl"]) as response:
                (tmp_path / f"{n}.mp4").write_bytes(await response.read())
    big, veo = probe_video(tmp_path / "0.mp4"), probe_video(tmp_path / "1.mp4")
    assert (big.width, big.height) == (3840, 2160) and big.duration == pytest.approx(3, abs=0.5)
    assert (veo.width, veo.height) == (1280, 720) and veo.duration == pytest.approx(8, abs=0.5)  # Veo's 8 s


async def test_the_catalog_is_public_filtered_and_valid(emulator):
    emu = await emulator(rpm=1)  # public: no key, and no key's rate limit either
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            _, videos, _ = await call(s, "GET", f"{emu.base_url}/v2/models?modality=video", headers={}, expect=200,
                                      schema="ModelCatalog")
        _, every, _ = await call(s, "GET", f"{emu.base_url}/v2/models", headers={}, expect=200, schema="ModelCatalog")
        _, images, _ = await call(s, "GET", f"{emu.base_url}/v2/models?modality=image", headers={}, expect=200)
        _, bad, _ = await call(s, "GET", f"{emu.base_url}/v2/models?modality=film", headers={}, expect=400,
                               schema="ValidationError")
    assert [entry["id"] for entry in videos["models"]] == list(MODELS)
    assert {entry["modality"] for entry in every["models"]} == {"video", "image", "music"}
    assert images["models"] and all(entry["modality"] == "image" for entry in images["models"])
    assert "modality" in bad["details"]
    assert {e["pricingMode"] for e in videos["models"]} == {"flat", "per-second", "per-output"}
    assert emu.stats()["requests"]["GET /v2/models"] == 6 and emu.stats()["rate_limited"] == 0


async def test_jobs_list_by_model_and_the_books_per_model(emulator):
    emu = await emulator(faults=Faults(seed=4, fail_generation=0.4))
    names = ("veo-3.1-fast", "kling-3.0", "grok-imagine-video", "midjourney-video")
    async with aiohttp.ClientSession() as s:
        ids = {name: [(await submit(s, emu, model_body(name, prompt=f"{name} {i}")))["jobId"] for i in range(3)]
               for name in names}
        for name in names:
            _, listed, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs", params={"model": name}, schema="JobList")
            assert sorted(j["id"] for j in listed["jobs"]) == sorted(ids[name])
            assert all(j["model"] == name and j["input"]["model"] == name for j in listed["jobs"])
        _, every, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs", params={"limit": "100"}, schema="JobList")
        _, nothing, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs", params={"model": "sora-9"}, schema="JobList")
    assert len(every["jobs"]) == 12 and nothing["jobs"] == []
    stats = emu.stats()
    assert stats["list_models"] == {**{name: 1 for name in names}, "": 1, "sora-9": 1}
    emu.config.dialects = ("ignore-model-filter",)
    async with aiohttp.ClientSession() as s:  # the dialect: ?model= is ignored, every model listed
        _, unfiltered, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs", params={"model": "kling-3.0"},
                                      schema="JobList")
    assert {j["model"] for j in unfiltered["jobs"]} == set(names)
    by_model = stats["credits_by_model"]
    assert set(by_model) == set(names) and stats["faults"]["fail_generation"] > 0
    assert sum(by_model.values()) == stats["credits"]["charged"] - stats["credits"]["refunded"]
    for name in names:
        assert by_model[name] == sum(j["credit_cost"] for j in stats["jobs"] if j["model"] == name)


@pytest.mark.parametrize("name", ["veo-3.1", "seedance-2", "midjourney-video", "wan-2.7-r2v"])
async def test_dialects_keys_and_faults_apply_to_every_model(emulator, name):
    emu = await emulator(dialects=("submit-id", "result-list", "cdn-redirect"),
                         faults=Faults(seed=0, drop_after_create=1.0))
    payload = model_body(name)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientError):  # made and charged, the answer lost
            await submit(s, emu, payload, key=f"vb-{name}-a1")
        emu.configure(faults={"drop_after_create": 0.0})
        _, again, _ = await call(s, "POST", f"{emu.base_url}/v2/videos/generate", json=payload, expect=202,
                                 headers={**HEADERS, "Idempotency-Key": f"vb-{name}-a1"})  # the key finds it
        await call(s, "POST", f"{emu.base_url}/v2/videos/generate", json=model_body(name, prompt="other"),
                   headers={**HEADERS, "Idempotency-Key": f"vb-{name}-a1"}, expect=409)
        _, job, _ = await call(s, "GET", f"{emu.base_url}/v2/jobs/{again['id']}", schema="Job")
        async with s.get(job["result"][0]["url"]) as response:  # another host, then a signed URL
            assert response.status == 200 and response.content_type == "binary/octet-stream"
            assert "/signed/" in str(response.url)
    stats = emu.stats()
    assert len(stats["jobs"]) == 1 and stats["credits"]["charged"] == job["creditCost"] and stats["cdn_key_leaks"] == 0
