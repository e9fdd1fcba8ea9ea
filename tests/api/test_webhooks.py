"""pipeline/api/webhooks.py: the contract's signature, and the receiver fed by the emulator's own
signed events over real sockets (hints only: never a job's state)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import aiohttp
import pytest

from pipeline.api.client import ApiClient
from pipeline.api.webhooks import WebhookReceiver, event_kind, signature, verify
from pipeline.api.wire import job_id_of
from pipeline.models import GROK_IMAGINE_VIDEO
from tests.harness import TEST_KEY

BODY = b'{"jobId": "7b0f8a52-1f1e-4c55-9a39-2d4b1f0c9e11", "type": "completed"}'


def contract_hex(key: str, body: bytes) -> str:
    """CONTRACT.md, Webhooks: HMAC-SHA256 over the raw body, keyed by the raw sha256 digest of the key."""
    return hmac.new(hashlib.sha256(key.encode()).digest(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("key, body", [(TEST_KEY, BODY), ("afk_other_key_1234", b""), ("k", "é".encode())])
def test_the_signature_is_the_contracts(key, body):
    assert signature(key, body) == "sha256=" + contract_hex(key, body)


GOOD = contract_hex(TEST_KEY, BODY)


@pytest.mark.parametrize("header, ok", [
    (f"sha256={GOOD}", True), (GOOD, True), (GOOD.upper(), True), (f"SHA256={GOOD.upper()}", True),
    (f"  sha256={GOOD}\t", True),  # surrounding blanks are not part of it
    (None, False), ("", False), ("sha256=", False), (f"sha1={GOOD}", False), (GOOD[:-2], False),
    (f"sha256={contract_hex('afk_other_key_1234', BODY)}", False),
    (f"sha256={contract_hex(TEST_KEY, BODY + b' ')}", False),  # a body changed by one byte
    (f"sha256={GOOD[:-1]}é", False),  # not ASCII: refused, never raised
])
def test_verify_accepts_either_form_and_case_and_nothing_else(header, ok):
    assert verify(TEST_KEY, BODY, header) is ok


@pytest.mark.parametrize("event, kind", [
    ({"type": "completed"}, "completed"), ({"event": "failed"}, "failed"),
    ({"type": "progress", "event": "failed"}, "progress"),  # `type` first (the SDK's word)
    ({"type": 3}, None), ({"type": None, "event": "completed"}, None), ({}, None),
])
def test_event_kind(event, kind):
    assert event_kind(event) == kind


@pytest.fixture
async def receiver():
    hints: list[str] = []
    rec = WebhookReceiver(TEST_KEY, hints.append, "127.0.0.1", 0)
    await rec.start()
    rec.hints, rec.url = hints, f"http://127.0.0.1:{rec.port}/hooks/videobatch"
    yield rec
    await rec.stop()


async def submit_hooked(client: ApiClient, url: str, tag: str) -> str:
    body = GROK_IMAGINE_VIDEO.request_body(f"a {tag} kite over dunes", 6, "16:9", webhook_url=url)
    return job_id_of(await client.submit(json.dumps(body).encode(), f"vb-{tag}-a1-0123456789abcdef"))


async def settle_until(client: ApiClient, job_ids: list[str], done) -> list[dict]:
    """Read the jobs (each read lets the emulator settle and send) until `done()`; their last state."""
    for _ in range(250):
        jobs = [await client.get_job(job_id) for job_id in job_ids]
        if done() and all(job["webhookStatus"] != "pending" for job in jobs):
            return jobs
        await asyncio.sleep(0.02)
    raise AssertionError("the emulator's events never arrived")


async def test_the_emulators_signed_events_become_hints_with_their_kind(emulator, receiver):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        emu.configure(faults={"fail_generation": 1.0})
        failed = await submit_hooked(client, receiver.url, "red")
        emu.configure(faults={"fail_generation": 0.0})
        completed = await submit_hooked(client, receiver.url, "blue")
        jobs = await settle_until(client, [failed, completed], lambda: len(receiver.hints) == 2)
    assert sorted(receiver.hints) == sorted([failed, completed])
    assert receiver.kinds == {"failed": 1, "completed": 1}
    assert (receiver.received, receiver.rejected) == (2, 0)
    assert [job["status"] for job in jobs] == ["FAILED", "COMPLETED"]
    assert [job["webhookStatus"] for job in jobs] == ["delivered", "delivered"]  # our 200 reached the API


async def test_events_signed_with_another_key_are_refused(emulator):
    emu = await emulator()
    hints: list[str] = []
    stale = WebhookReceiver("afk_not_the_key_the_api_signs_with", hints.append, "127.0.0.1", 0)
    await stale.start()
    try:
        async with ApiClient(emu.base_url, TEST_KEY) as client:
            job_id = await submit_hooked(client, f"http://127.0.0.1:{stale.port}/hook", "green")
            [job] = await settle_until(client, [job_id], lambda: stale.rejected == 1)
    finally:
        await stale.stop()
    assert hints == [] and stale.received == 0 and not stale.kinds
    assert job["webhookStatus"] == "failed"  # the sender saw our 401


async def post_signed(receiver, payload: bytes) -> tuple[int, dict]:
    headers = {"X-Webhook-Signature": signature(TEST_KEY, payload), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(receiver.url, data=payload,
                                                                headers=headers) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("payload, status, hint", [
    ({"data": {"jobId": "nested-in-data"}, "type": "completed"}, 200, "nested-in-data"),
    ({"job": {"id": "nested-in-job"}, "event": "failed"}, 200, "nested-in-job"),
    ({"id": "top-level-id"}, 200, "top-level-id"),
    ({"type": "completed"}, 200, None),  # signed but about no job: accepted, nothing to poll
    ([{"jobId": "in-a-list"}], 200, None),
])
async def test_a_signed_event_hints_at_the_job_it_names_wherever_it_is(receiver, payload, status, hint):
    assert (await post_signed(receiver, json.dumps(payload).encode()))[0] == status
    assert receiver.hints == ([hint] if hint else []) and receiver.received == 1
    assert sum(receiver.kinds.values()) == (1 if hint else 0)


async def test_a_signed_body_that_is_not_json_is_refused(receiver):
    assert await post_signed(receiver, b"jobId=7b0f8a52") == (400, {"error": "not JSON"})
    assert (receiver.received, receiver.rejected, receiver.hints) == (0, 1, [])
