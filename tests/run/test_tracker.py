"""Tracking in bulk (issue 5, point 1): list pages instead of one polling loop per job, a learned
cadence, and signed webhooks as hints. Request counts come from the emulator's own stats."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import uuid

import aiohttp
import pytest

from pipeline.api.client import ApiClient
from pipeline.models import get_model
from pipeline.run.tracker import Tracker
from pipeline.run.transitions import ReadError
from pipeline.api.wire import parse_api_time
from pipeline.api.webhooks import MAX_BODY, WebhookReceiver
from tests.harness import TEST_KEY, cli_env, ledger, prompts, run_args, run_cli, write_manifest

LIST = "GET /v2/jobs"
GET_ONE = "GET /v2/jobs/{id}"
SUBMIT = "POST /v2/videos/generate"
RPS_500 = 500 / 60  # Apiframe's limit, as the runner hands it to the tracker
SPEEDUP = 0.05  # the emulator's time scale, and the factor the tracker's clock is scaled by to match


async def polled_jobs(tracker: Tracker) -> list[dict]:
    """The job objects one poll handed back (reads that failed come back without one)."""
    return [seen.job for seen in await tracker.poll() if seen.job is not None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def requests(emu) -> dict[str, int]:
    return emu.stats()["requests"]


def contract_signature(key: str, body: bytes) -> str:
    """The contract's rule, written out independently of pipeline.api.webhooks.signature."""
    return "sha256=" + hmac.new(hashlib.sha256(key.encode()).digest(), body, hashlib.sha256).hexdigest()


async def submit(client: ApiClient, tracker: Tracker | None, durations: list[int], *,
                 tag: str = "clip", webhook_url: str | None = None) -> list[str]:
    """Submit straight to the API; each job joins the tracker the moment its id comes back."""
    model = get_model("grok-imagine-video")
    gate = asyncio.Semaphore(32)

    async def one(i: int, duration: int) -> str:
        body = json.dumps(model.request_body(f"{tag} {i}: gulls over a harbour", duration, "16:9", [],
                                             webhook_url=webhook_url)).encode()
        async with gate:
            job_id = (await client.submit(body, f"{tag}-{i}"))["jobId"]
        if tracker is not None:
            tracker.add(job_id, f"{tag}-{i}", duration)
        return job_id

    return list(await asyncio.gather(*(one(i, d) for i, d in enumerate(durations))))


async def track_until_done(tracker: Tracker) -> dict[str, dict]:
    """The runner's loop in miniature: wait what next_delay says, poll, collect."""
    seen: dict[str, dict] = {}

    async def loop() -> None:
        while tracker.pending:
            await asyncio.sleep(tracker.next_delay(submits_waiting=False))
            for job in await polled_jobs(tracker):
                assert job["id"] not in seen, "a job was reported finished twice"
                seen[job["id"]] = job

    await asyncio.wait_for(loop(), timeout=60)  # a hang guard, not a measurement
    return seen


class QuickOverdue(Tracker):
    """The real tracker with its 'the lists have not shown this job for too long' threshold settable."""

    overdue_s = 600.0

    def _overdue_after(self, duration: int) -> float:
        return self.overdue_s


# --- the tracker against the emulator -----------------------------------------------------------


async def test_300_jobs_are_tracked_with_list_pages_not_per_job_polls(emulator):
    # Real speed, 20 times faster throughout: generations (30-150 s become 1.5-7.5 s), the 1 s
    # poll floor and the 500 rpm budget alike, so the request counts are a real batch's.
    emu = await emulator(time_scale=SPEEDUP)
    durations = [(6, 10, 15)[i % 3] for i in range(300)]
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        tracker = Tracker(client, rate_per_second=RPS_500 / SPEEDUP, min_interval=1.0 * SPEEDUP)
        job_ids = await submit(client, tracker, durations)
        finished = await track_until_done(tracker)

    assert set(finished) == set(job_ids)
    assert {job["status"] for job in finished.values()} == {"COMPLETED"}
    counts = requests(emu)
    tracking = counts.get(LIST, 0) + counts.get(GET_ONE, 0)
    assert counts[SUBMIT] == 300
    assert counts.get(LIST, 0) > 0
    assert counts.get(GET_ONE, 0) == 0  # every job showed up in a list: no per-job reads
    assert tracking == tracker.requests  # the server saw exactly what the tracker thinks it sent
    assert tracker.polls > 1  # jobs were still running at the first poll: this measured tracking
    # A poll is at most 3 pages of COMPLETED (300 jobs, 100 a page) and 1 of FAILED.
    assert tracking <= 4 * tracker.polls
    # The SDK's loop would need several requests per job; the lists need a fraction of one.
    assert tracking / 300 < 0.5, counts


async def test_paging_stops_once_every_pending_job_is_accounted_for(emulator):
    emu = await emulator()  # time_scale 0: done as soon as the API sees the next request
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        await submit(client, None, [6] * 250, tag="old")  # 250 finished jobs: three pages of them
        tracker = Tracker(client, rate_per_second=None)
        [newest] = await submit(client, tracker, [6], tag="new")
        before = requests(emu)
        finished = await polled_jobs(tracker)
        after = requests(emu)

    assert [job["id"] for job in finished] == [newest]
    assert after[LIST] - before.get(LIST, 0) == 1  # first page of COMPLETED, newest first: done
    assert after.get(GET_ONE, 0) == 0


async def test_paging_stops_at_jobs_older_than_any_pending_one(emulator):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        await submit(client, None, [6] * 250, tag="old")
        for job in emu.state.order:  # they were an earlier batch, an hour ago
            job.created -= 3600
        emu.configure(time_scale=10.0)  # the new job takes minutes: it stays pending
        tracker = Tracker(client, rate_per_second=None)
        [newest] = await submit(client, tracker, [6], tag="new")
        before = requests(emu)
        assert await polled_jobs(tracker) == []
        after = requests(emu)

    assert newest in tracker.pending
    # At most one page of COMPLETED (already older than the pending job) and one of FAILED,
    # never the three pages the old jobs fill.
    assert after[LIST] - before.get(LIST, 0) <= 2
    assert after.get(GET_ONE, 0) == 0


async def test_jobs_the_lists_never_show_are_read_one_by_one_once_overdue(emulator):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        tracker = QuickOverdue(client, rate_per_second=None)
        done_id, cancelled_id = await submit(client, tracker, [6, 6])
        emu.state.advance()  # settle both now, then cancel one server-side (the API has no cancel route)
        emu.state.jobs[cancelled_id].final = "CANCELLED"
        unknown_id = str(uuid.uuid4())  # purged, or never ours: every read of it is a 404
        tracker.add(unknown_id, "unknown", 6)

        first = await polled_jobs(tracker)
        assert [job["id"] for job in first] == [done_id]
        assert set(tracker.pending) == {cancelled_id, unknown_id}
        assert requests(emu).get(GET_ONE, 0) == 0  # not overdue yet: the lists are all we asked

        tracker.overdue_s = 0.0
        seen = {o.job_id: o for o in await tracker.poll()}

    assert seen[cancelled_id].job["status"] == "CANCELLED"
    # A 404 is handed back as what it is, never turned into a FAILED job (that would pay again).
    assert seen[unknown_id].job is None and seen[unknown_id].error is ReadError.NOT_FOUND
    assert "404" in seen[unknown_id].detail
    assert not tracker.pending
    assert requests(emu)[GET_ONE] == 2  # one read per missing job, none for the job the list showed


async def test_a_job_an_earlier_run_created_is_read_at_once_and_teaches_no_timing(emulator):
    # A replayed submit hands back a job made long before this run: no list depth computed from
    # our clock reaches it, so it is read on its own at the next poll, not after the overdue wait.
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        [old] = await submit(client, None, [6], tag="earlier-run")
        await submit(client, None, [6] * 150, tag="since")  # a page and a half of newer jobs
        emu.state.jobs[old].created -= 3600
        tracker = Tracker(client, rate_per_second=None)
        tracker.add(old, "earlier-run-0", 6, resumed=True)
        before = requests(emu)
        finished = await polled_jobs(tracker)
        after = requests(emu)

    assert [job["id"] for job in finished] == [old]
    assert after[GET_ONE] - before.get(GET_ONE, 0) == 1
    assert tracker.observed == {} and tracker.offset_low is None  # an hour-old job says nothing of either
    assert tracker.missed_by_lists == 0 and tracker.margin == 2.0


async def test_a_job_the_lists_missed_widens_the_paging_margin(emulator):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        tracker = QuickOverdue(client, rate_per_second=None)
        [job_id] = await submit(client, tracker, [6])
        others = await submit(client, None, [6] * 120, tag="other")
        # The server stamped these before we sent them (a clock we cannot see): the first page
        # already ends before the stop point computed from our clock, so paging never reaches ours.
        emu.state.jobs[job_id].created -= 60
        for other in others:
            emu.state.jobs[other].created -= 30
        tracker.overdue_s = 0.0
        finished = await polled_jobs(tracker)

    assert [job["id"] for job in finished] == [job_id]
    assert tracker.missed_by_lists == 1 and tracker.margin == 4.0


async def test_cadence_waits_for_the_learned_minimum_per_clip_duration(emulator):
    emu = await emulator(time_scale=0.05)  # 6 s clips take 1.5-3 s
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        tracker = Tracker(client, rate_per_second=None, min_interval=0.1)
        await submit(client, tracker, [6] * 20)
        assert tracker.next_delay(False) == 0.0  # nothing learned yet: the first poll goes at once
        await track_until_done(tracker)

        fastest_6 = tracker.observed[6][0]
        server_fastest = min(parse_api_time(j["completed_at"]) - parse_api_time(j["created_at"])
                             for j in emu.stats()["jobs"])
        assert fastest_6 >= server_fastest - 0.05  # never learned faster than the API really was

        tracker.add("fresh-6", "fresh-6", 6)
        wait_6 = tracker.next_delay(False)
        assert wait_6 == pytest.approx(0.9 * fastest_6, abs=0.05)
        assert wait_6 > 1.0  # a real wait, not the 0.1 s floor
        for longer in (10, 15):  # never seen: at least as long as the shorter clips took
            tracker.discard(next(iter(tracker.pending)))
            tracker.add(f"fresh-{longer}", f"fresh-{longer}", longer)
            assert tracker.next_delay(False) >= wait_6 - 0.01


# --- the webhook receiver -----------------------------------------------------------------------


@pytest.fixture
async def receiver():
    """A WebhookReceiver on a free loopback port; `hints` lists the job ids it passed on."""
    hints: list[str] = []
    port = free_port()
    rec = WebhookReceiver(TEST_KEY, hints.append, "127.0.0.1", port)
    await rec.start()
    rec.hints, rec.url = hints, f"http://127.0.0.1:{port}/hook"
    yield rec
    await rec.stop()


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers) as response:
            return response.status


def event(job_id: str = "7b0f8a52-1f1e-4c55-9a39-2d4b1f0c9e11", pad: int = 0) -> bytes:
    payload = {"jobId": job_id, "type": "completed", "status": "COMPLETED"}
    if pad:
        payload["note"] = "x" * pad
    return json.dumps(payload).encode()


async def test_a_correctly_signed_event_is_passed_on_as_a_hint(receiver):
    body = event()
    status = await post(receiver.url, body, {"X-Webhook-Signature": contract_signature(TEST_KEY, body)})
    assert status == 200
    assert receiver.hints == [json.loads(body)["jobId"]]


def _signed_wrong(body: bytes) -> dict[str, str]:
    good = contract_signature(TEST_KEY, body)
    return {"X-Webhook-Signature": good[:-1] + ("0" if good[-1] != "0" else "1")}


@pytest.mark.parametrize("case", ["wrong signature", "missing header", "another key", "oversized body",
                                  "truncated signature"])
async def test_unverified_events_are_refused_and_never_hint(receiver, case):
    body = event(pad=MAX_BODY) if case == "oversized body" else event()
    headers = {
        "wrong signature": _signed_wrong(body),
        "missing header": {},
        "another key": {"X-Webhook-Signature": contract_signature("afk_someone_else_000000", body)},
        "oversized body": {"X-Webhook-Signature": contract_signature(TEST_KEY, body)},
        "truncated signature": {"X-Webhook-Signature": contract_signature(TEST_KEY, body)[:20]},
    }[case]
    assert await post(receiver.url, body, headers) == 401
    assert receiver.hints == [] and receiver.rejected == 1 and receiver.received == 0


async def test_a_non_ascii_signature_is_refused_not_a_server_error(receiver):
    body = event()
    reader, writer = await asyncio.open_connection(receiver.host, receiver.port)
    writer.write(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                 b"X-Webhook-Signature: sha256=\xc3\xa9\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"401"
    assert receiver.hints == []


async def test_a_signed_body_arriving_in_pieces_is_read_whole(receiver):
    # Over the internet an event may come in several TCP segments; reading only the first
    # would make a genuine event fail its signature.
    body = event(pad=2000)
    reader, writer = await asyncio.open_connection(receiver.host, receiver.port)
    writer.write(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nX-Webhook-Signature: %s\r\nConnection: close\r\n\r\n"
                 % (len(body), contract_signature(TEST_KEY, body).encode()))
    writer.write(body[:100])
    await writer.drain()
    await asyncio.sleep(0.2)  # let the handler start on the first piece
    writer.write(body[100:])
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"200"
    assert receiver.hints == [json.loads(body)["jobId"]]


async def test_signatures_are_compared_in_constant_time(receiver, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    body = event()
    good = contract_signature(TEST_KEY, body)
    assert await post(receiver.url, body, {"X-Webhook-Signature": good}) == 200
    assert await post(receiver.url, body, _signed_wrong(body)) == 401
    assert len(compared) == 2  # both the accepted and the refused event went through compare_digest
    assert receiver.hints == [json.loads(body)["jobId"]]


async def test_a_webhook_landing_during_the_poll_that_reads_its_job_leaves_no_extra_poll(emulator, receiver):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        tracker = Tracker(client, rate_per_second=None, min_interval=0.0)
        during_poll: list[bool] = []

        def on_hint(job_id: str) -> None:
            during_poll.append(job_id in tracker.pending)
            tracker.hint(job_id)

        receiver.on_hint = on_hint
        [done_id] = await submit(client, tracker, [6], tag="hooked", webhook_url=receiver.url)
        emu.configure(time_scale=10.0)
        [slow_id] = await submit(client, tracker, [6], tag="slow")  # still pending after the poll
        # The emulator settles the job (and sends its webhook) as the list request arrives, then
        # answers 0.3 s later: the event reaches us while the poll is still reading that job.
        emu.configure(faults={"slow_response": 1.0, "slow_seconds": 0.3})
        finished = await polled_jobs(tracker)

    assert [job["id"] for job in finished] == [done_id]
    assert during_poll == [True]  # the race this test is about did happen
    assert set(tracker.pending) == {slow_id}
    assert not tracker.hinted  # the news was for a job this very poll reported: nothing left to fetch


async def test_a_hint_for_a_pending_job_brings_the_next_poll_forward(emulator, receiver):
    emu = await emulator(time_scale=10.0)  # minutes per job: nothing finishes during the test
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        tracker = Tracker(client, rate_per_second=None, min_interval=0.0)
        receiver.on_hint = tracker.hint
        tracker.observed[6] = (20.0, 30.0)  # learned earlier: a 6 s clip takes 20 s at least
        [job_id] = await submit(client, tracker, [6])
        assert tracker.next_delay(False) > 10
        other = event(str(uuid.uuid4()))  # signed, but not a job we wait for: no effect
        assert await post(receiver.url, other, {"X-Webhook-Signature": contract_signature(TEST_KEY, other)}) == 200
        assert tracker.next_delay(False) > 10
        body = event(job_id)
        assert await post(receiver.url, body, {"X-Webhook-Signature": contract_signature(TEST_KEY, body)}) == 200
        assert tracker.next_delay(False) == 0.0
        assert await polled_jobs(tracker) == []  # still generating: the hint is spent, the estimate rules again
        assert tracker.next_delay(False) > 10


# --- the whole command ---------------------------------------------------------------------------

# The product's own poll floor (run_args' 0.05 s suits other tests) against clips of 0.9-4.5 s:
# jobs that last a few poll floors. Tracking costs about one poll per floor while jobs run, so at
# real speed (clips of 30-150 s) the same batch costs more per job than measured here.
CLI_POLL = ("--poll-interval", "1.0")
CLI_TIME_SCALE = 0.03


def _run_60(emulator_thread, folder, *webhook_args: str):
    folder.mkdir(exist_ok=True)
    emu = emulator_thread(time_scale=CLI_TIME_SCALE)
    manifest = write_manifest(folder / "m.yaml", prompts(60))
    done = run_cli(*run_args(manifest, folder, *CLI_POLL, *webhook_args), env=cli_env(emu.base_url),
                   cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = ledger(folder)
    assert rows.height == 60 and set(rows["status"]) == {"DOWNLOADED"}
    return emu, rows, requests(emu)


def _api_requests(counts: dict[str, int]) -> int:
    return sum(n for route, n in counts.items() if route.startswith(("GET /v2", "POST /v2")))


def test_a_60_job_run_costs_at_most_1_3_api_requests_per_job(emulator_thread, tmp_path):
    emu, _, counts = _run_60(emulator_thread, tmp_path)
    assert counts[SUBMIT] == 60 and counts.get(GET_ONE, 0) == 0
    assert _api_requests(counts) / 60 <= 1.3, counts
    assert emu.emulator.server.webhooks.sent == 0  # nobody asked for webhooks: none were sent


def test_webhook_mode_end_to_end(emulator_thread, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    emu, rows, counts = _run_60(emulator_thread, tmp_path / "hooks",
                                "--webhook-listen", f"127.0.0.1:{port}", "--webhook-url", url)

    jobs = emu.emulator.state.order  # the emulator's own records, read after the run
    sender = emu.emulator.server.webhooks
    assert len(jobs) == 60
    assert all(job.body.get("webhookUrl") == url for job in jobs)  # as the API received the submits
    assert all(json.loads(body)["webhookUrl"] == url for body in rows["request_body"])
    # One signed event per job, each answered 2xx by our receiver (a 401 counts as failed).
    assert sender.sent == 60 and sender.failed == 0
    assert {job.webhook_status for job in jobs} == {"delivered"}
    # Hints make the tracker read the lists sooner, never jobs one by one.
    assert counts.get(GET_ONE, 0) == 0
    assert _api_requests(counts) / 60 <= 1.3, counts

    # No worse than polling alone: the same batch without webhooks, compared in requests. The
    # emulator sends an event only when a request lets it see the job is done (often the poll
    # that reports it), so this shows hints cost nothing extra, not that they save anything.
    _, _, polled = _run_60(emulator_thread, tmp_path / "polling")
    assert counts[LIST] <= polled[LIST] + 2, (counts, polled)  # one poll of jitter at most


async def test_first_reads_of_jobs_an_earlier_run_made_set_no_polling_cadence(emulator):
    """After a crash with many jobs in flight, their one-off reads must not space the next polls
    as if every poll cost that many requests (a rerun waited 28 s for a 7 s batch)."""
    emu = await emulator(time_scale=10.0)  # still generating when read
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        ids = await submit(client, None, [6] * 40, tag="earlier")
        tracker = Tracker(client, rate_per_second=500 / 60)
        for job_id in ids:
            tracker.add(job_id, job_id, 6, resumed=True)
        seen = await tracker.poll()
        assert len(seen) == 40 and requests(emu).get(GET_ONE, 0) == 40  # each read once, on its own
        # One request's worth of cadence at 6 % of 500 rpm: 2 s, not 40 requests' worth (80 s, capped at 30).
        assert tracker.next_delay(submits_waiting=False) <= 1 / (0.06 * 500 / 60) + 0.1
