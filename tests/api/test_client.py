"""pipeline/api/client.py over real sockets against the emulator: what each answer becomes (by
status and by dialect), what is retried and what is waited out, pacing, and the server's clock."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time

import pytest

from pipeline.api.client import (ApiClient, AuthError, Conflict, InsufficientCredits, NotFound, RejectedRequest,
                                 RequestGate, TransientError)
from pipeline.api.retry import RetryPolicy
from pipeline.api.wire import job_id_of, result_url
from pipeline.emulator import Faults
from pipeline.emulator import server as emulator_server
from pipeline.models import GROK_IMAGINE_VIDEO
from tests.harness import TEST_KEY

QUICK = RetryPolicy(attempts=3, base=0.001, jitter=False)
UNKNOWN_JOB = "7f1c1e49-5f36-4b0e-9d4e-0c2f7a9d3b11"


def body(prompt: str = "a heron lifts off a pond", duration: int = 6, **params) -> bytes:
    request = GROK_IMAGINE_VIDEO.request_body(prompt, duration, "16:9")
    request["grokImagineVideoParams"].update(params)
    return json.dumps(request).encode()


# -- what an answer becomes ----------------------------------------------------------------------


async def test_a_wrong_key_is_an_auth_error_that_never_shows_the_key(emulator):
    emu = await emulator()
    wrong = "afk_wrong_key_0000000000"
    async with ApiClient(emu.base_url, wrong, retry=QUICK) as client:
        with pytest.raises(AuthError) as refused:
            await client.me()
    assert refused.value.status == 401 and refused.value.request_id.startswith("req_")
    assert refused.value.stop_reason.startswith("authentication failed (401): check APIFRAME_API_KEY [x-request-id req_")
    assert wrong not in str(refused.value) + refused.value.stop_reason
    assert emu.stats()["requests"] == {"GET /v2/me": 1}  # final: never retried


async def test_a_submit_the_team_cannot_pay_for_says_what_it_needs_and_has(emulator):
    emu = await emulator(credits=12)
    async with ApiClient(emu.base_url, TEST_KEY, retry=QUICK) as client:
        with pytest.raises(InsufficientCredits) as short:
            await client.submit(body(duration=10), "vb-k-a1-0123456789abcdef")
    assert (short.value.status, short.value.required, short.value.available) == (402, 15, 12)
    assert short.value.stop_reason.startswith("insufficient credits: a job needs 15, the account has 12; top up")
    assert emu.stats()["jobs"] == [] and emu.stats()["requests"] == {"POST /v2/videos/generate": 1}


async def test_a_body_the_api_refuses_is_final_and_names_the_field(emulator):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY, retry=QUICK) as client:
        with pytest.raises(RejectedRequest) as refused:
            await client.submit(body(duration=7), "vb-k-a1-0123456789abcdef")
    assert refused.value.status == 400
    assert list(refused.value.details) == ["grokImagineVideoParams.duration"]
    assert "Validation failed: {" in str(refused.value)  # the details travel in the message too
    assert emu.stats()["requests"] == {"POST /v2/videos/generate": 1}


async def test_an_unknown_job_is_not_found_and_a_key_replayed_with_another_body_a_conflict(emulator):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY, retry=QUICK) as client:
        with pytest.raises(NotFound) as missing:
            await client.get_job(UNKNOWN_JOB)
        first = await client.submit(body("a heron"), "vb-k-a1-0123456789abcdef")
        again = await client.submit(body("a heron"), "vb-k-a1-0123456789abcdef")
        with pytest.raises(Conflict) as conflict:
            await client.submit(body("a stork"), "vb-k-a1-0123456789abcdef")
    assert missing.value.status == 404 and conflict.value.status == 409
    assert job_id_of(first) == job_id_of(again)  # the replay answers with the job the first try made
    stats = emu.stats()
    assert [job["idempotency_key"] for job in stats["jobs"]] == ["vb-k-a1-0123456789abcdef"]
    assert stats["requests"] == {"GET /v2/jobs/{id}": 1, "POST /v2/videos/generate": 3}


async def test_a_client_needs_a_key_and_an_open_session():
    with pytest.raises(AuthError, match="no API key"):
        ApiClient("http://127.0.0.1:9", "")
    client = ApiClient("http://127.0.0.1:9", TEST_KEY)
    with pytest.raises(RuntimeError, match="outside `async with`"):
        await client.me()


# -- dialects: the answers are passed on as sent; errors keep their meaning ----------------------


async def test_submit_id_dialect_answers_are_returned_as_sent(emulator):
    emu = await emulator(dialects=("submit-id",))
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        answer = await client.submit(body(), "vb-k-a1-0123456789abcdef")
        job = await client.get_job(answer["id"])
    assert set(answer) == {"id", "status"} and job_id_of(answer) == job["id"]


async def test_a_replay_while_the_first_is_in_flight_is_a_conflict_then_the_job(emulator, monkeypatch):
    monkeypatch.setattr(emulator_server, "CONFLICT_WINDOW_S", 0.5)
    emu = await emulator(dialects=("conflict-while-in-flight",))
    async with ApiClient(emu.base_url, TEST_KEY, retry=QUICK) as client:
        first = await client.submit(body(), "vb-k-a1-0123456789abcdef")
        with pytest.raises(Conflict):  # never retried as transient: the caller asks later, same key
            await client.submit(body(), "vb-k-a1-0123456789abcdef")
        await asyncio.sleep(0.55)
        later = await client.submit(body(), "vb-k-a1-0123456789abcdef")
    assert job_id_of(later) == job_id_of(first) and len(emu.stats()["jobs"]) == 1


async def test_a_job_read_before_the_api_has_it_is_not_found_then_found(emulator, monkeypatch):
    monkeypatch.setattr(emulator_server, "READ_LAG_S", 0.5)
    emu = await emulator(dialects=("read-lag",))
    async with ApiClient(emu.base_url, TEST_KEY, retry=QUICK) as client:
        job_id = job_id_of(await client.submit(body(), "vb-k-a1-0123456789abcdef"))
        with pytest.raises(NotFound):
            await client.get_job(job_id)
        await asyncio.sleep(0.55)
        assert (await client.get_job(job_id))["id"] == job_id


async def test_a_list_the_api_refuses_is_a_rejected_request(emulator):
    emu = await emulator(dialects=("list-4xx",))
    async with ApiClient(emu.base_url, TEST_KEY, retry=QUICK) as client:
        with pytest.raises(RejectedRequest) as refused:
            await client.list_jobs(model="grok-imagine-video")
    assert refused.value.status == 400 and refused.value.details == {"": ["Listing is not available for this key"]}
    assert emu.stats()["requests"] == {"GET /v2/jobs": 1}


async def test_lists_page_with_the_cursor_and_name_the_model(emulator):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        made = [job_id_of(await client.submit(body(f"clip {i}"), f"vb-k{i}-a1-0123456789abcdef")) for i in range(3)]
        seen, cursor = [], None
        for _ in range(4):
            page = await client.list_jobs(model="grok-imagine-video", status="COMPLETED", limit=1, cursor=cursor)
            seen += [job["id"] for job in page["jobs"]]
            cursor = page["nextCursor"]
            if not page["hasMore"]:
                break
    assert seen == made[::-1]  # newest first, each once
    assert emu.stats()["list_models"] == {"grok-imagine-video": 3}


@pytest.mark.parametrize("dialects, leaves_origin", [((), False), (("cdn-redirect",), True)])
async def test_a_download_follows_the_cdn_and_keeps_the_key_at_home(emulator, dialects, leaves_origin):
    emu = await emulator(dialects=dialects)
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        job = await client.get_job(job_id_of(await client.submit(body(), "vb-k-a1-0123456789abcdef")))
        url = result_url(job["result"])
        sink = io.BytesIO()
        size, sha256 = await client.download(url, sink, max_bytes=50_000_000)
    stats = await emu.stats_async()
    assert url.startswith(emu.base_url) != leaves_origin
    assert (size, sha256) == (len(sink.getvalue()), hashlib.sha256(sink.getvalue()).hexdigest())
    assert sha256 == stats["jobs"][0]["video_sha256"] and stats["cdn_key_leaks"] == 0


# -- retried, waited out, or neither -------------------------------------------------------------


async def test_503s_are_retried_until_an_answer_comes(emulator):
    emu = await emulator(faults=Faults(seed=3, error_503=0.6))
    retries = []
    policy = RetryPolicy(attempts=50, base=0.001, jitter=False)
    async with ApiClient(emu.base_url, TEST_KEY, retry=policy,
                         on_retry=lambda *hook: retries.append(hook)) as client:
        for _ in range(5):
            assert (await client.me())["team"]["credits"] == 100_000
    stats = emu.stats()
    assert stats["faults"]["error_503"] == len(retries) > 0
    assert stats["requests"]["GET /v2/me"] == 5 + len(retries)
    assert {(what, reason.split(" -> ")[1][:3]) for what, reason, _ in retries} == {("GET /v2/me", "503")}


async def test_a_503_that_lasts_ends_with_the_last_failure_after_every_try(emulator):
    emu = await emulator(faults=Faults(error_503=1.0))
    async with ApiClient(emu.base_url, TEST_KEY, retry=QUICK) as client:
        with pytest.raises(TransientError, match="503 Service temporarily unavailable") as failed:
            await client.submit(body(), "vb-k-a1-0123456789abcdef")
    assert failed.value.status == 503 and failed.value.reached  # it got there: the job may exist
    assert emu.stats()["requests"] == {"POST /v2/videos/generate": QUICK.attempts}


async def test_a_dropped_connection_is_transient_and_may_have_reached_the_api(emulator):
    emu = await emulator(faults=Faults(reset_connection=1.0))
    async with ApiClient(emu.base_url, TEST_KEY, retry=QUICK) as client:
        with pytest.raises(TransientError, match=r"connection failed \(\w+\)") as dropped:
            await client.submit(body(), "vb-k-a1-0123456789abcdef")
    assert dropped.value.reached and dropped.value.status is None
    assert emu.stats()["faults"] == {"reset_connection": QUICK.attempts}


async def test_a_stopping_run_makes_no_second_try(emulator):
    emu = await emulator(faults=Faults(error_503=1.0))
    async with ApiClient(emu.base_url, TEST_KEY, retry=QUICK, should_stop=lambda: True) as client:
        with pytest.raises(TransientError):
            await client.me()
    assert emu.stats()["requests"] == {"GET /v2/me": 1}


@pytest.mark.parametrize("dialects", [(), ("retry-after-date",)])
async def test_429s_are_waited_out_as_told_and_cost_no_retry(emulator, dialects):
    emu = await emulator(rpm=2, rate_window_seconds=1.0, dialects=dialects)
    waits = []
    one_try = RetryPolicy(attempts=1)  # a 429 is pacing: it must not use up the only try
    async with ApiClient(emu.base_url, TEST_KEY, retry=one_try, on_retry=lambda *hook: waits.append(hook)) as client:
        for _ in range(3):
            await client.me()
    stats = emu.stats()
    assert stats["rate_limited"] == client.rate_limited == len(waits) >= 1
    assert stats["retry_after_violations"] == 0  # no request before the Retry-After ran out
    assert all(what == "GET /v2/me" and reason == "429 rate limited" and delay >= 0.5
               for what, reason, delay in waits)


async def test_a_stopping_run_does_not_wait_out_a_429(emulator):
    emu = await emulator(rpm=1, rate_window_seconds=60)
    stopping = False
    async with ApiClient(emu.base_url, TEST_KEY, should_stop=lambda: stopping) as client:
        await client.me()
        stopping = True
        started = time.monotonic()
        with pytest.raises(TransientError) as limited:
            await client.me()
    assert limited.value.status == 429 and time.monotonic() - started < 5


async def test_the_gate_keeps_every_window_under_the_limit(emulator):
    # 40 requests per 0.5 s window; 60 requests as fast as the gate lets them go.
    emu = await emulator(rpm=40, rate_window_seconds=0.5)
    gate = RequestGate(40, period=0.5)
    async with ApiClient(emu.base_url, TEST_KEY, gate=gate) as client:
        started = time.monotonic()
        for _ in range(60):
            await client.me()
        took = time.monotonic() - started
    assert emu.stats()["rate_limited"] == 0 and gate.requests == 60
    assert took >= 0.5  # paced: 60 could not go in the first window


# -- the server's clock --------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-3300.0, 7200.0])
async def test_the_clock_offset_is_measured_from_the_date_header(emulator, offset):
    emu = await emulator(clock_offset_s=offset)
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        assert client.measured_offset is None and client.clock_offset == 0.0
        await client.me()
    assert client.measured_offset == pytest.approx(offset, abs=1.5)  # Date has whole seconds
    assert client.clock_offset == client.measured_offset


# -- the first contact: an API that cannot be connected to -----------------------------------------


async def test_a_first_contact_with_no_connection_gives_up_after_three_short_tries(monkeypatch):
    """A listener whose backlog is full drops each SYN: a connect timeout, the slowest way for an API
    not to be there. The first contact allows FIRST_CONTACT_CONNECT_S a try (shortened here)."""
    import socket

    from pipeline.api import client as client_module

    monkeypatch.setattr(client_module, "FIRST_CONTACT_CONNECT_S", 0.3)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filling = [socket.socket() for _ in range(4)]
    for sock in filling:
        sock.setblocking(False)
        sock.connect_ex(listener.getsockname())
    try:
        host, port = listener.getsockname()
        slow = RetryPolicy(attempts=12, base=0.001, jitter=False)  # the run's policy would try 12 times
        async with ApiClient(f"http://{host}:{port}", TEST_KEY, retry=slow) as client:
            with pytest.raises(TransientError) as failed:
                await client.me(first_contact=True)
            assert client.gate.requests == client_module.FIRST_CONTACT_TRIES
    finally:
        for sock in [*filling, listener]:
            sock.close()
    assert not failed.value.reached and failed.value.no_connection == "no connection within the time allowed"


async def test_a_first_contact_that_reaches_the_api_keeps_the_usual_retries(emulator):
    emu = await emulator(faults=Faults(error_503=1.0))
    async with ApiClient(emu.base_url, TEST_KEY, retry=RetryPolicy(attempts=5, base=0.001, jitter=False)) as client:
        with pytest.raises(TransientError) as failed:
            await client.me(first_contact=True)
        assert client.gate.requests == 5  # the API is there: a 503 is ridden out as mid-run
    assert failed.value.reached and failed.value.no_connection is None
