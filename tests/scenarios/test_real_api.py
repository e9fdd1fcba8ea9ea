"""The rest of "never pay twice for uncertainty", point by point, over real sockets.

Accounts, the 24-hour replay window, our own exceptions, x-request-id and User-Agent,
Retry-After as a date, 501, a CDN 404 that is not an expiry, upload lifetimes and webhook
signatures. Each test drives the real client or the real `videobatch run` against the emulator.

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/runner.py pipeline/run/account.py pipeline/run/runlog.py pipeline/store/runs.py pipeline/api/client.py
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import polars as pl
import pytest
from aiohttp import web

from pipeline.api.client import ApiClient, ApiError, RejectedRequest, RetryPolicy, USER_AGENT
from pipeline.run.account import Account, write_account_file
from pipeline.emulator import EmulatorConfig, EmulatorThread, Faults
from pipeline.emulator.state import EmulatorState
from pipeline.http_server import Site
from pipeline.store.ledger import Ledger
from pipeline.store.runs import read_runs
from pipeline.manifest.load import load_manifest
from pipeline.models import get_model
from pipeline.run.attempts import body_bytes, idempotency_key
from pipeline.api.uploads import LocalImage, UploadCache
from pipeline.api.webhooks import WebhookReceiver, signature
from tests.harness import TEST_KEY, cli_env, jobs_per_key, ledger, prompts, run_args, run_cli, write_manifest

REPO = Path(__file__).resolve().parents[2]


# -- the account ------------------------------------------------------------------------------


def test_a_key_of_another_account_refuses_before_spending_and_names_both(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(7, prefix="acct"))  # the 7th job is stuck
    args = run_args(manifest, tmp_path, "--job-timeout", "2")
    mine = EmulatorConfig(api_key=TEST_KEY, time_scale=0.01, rpm=0, dialects=("stuck",), seed=0)
    with EmulatorThread(mine) as emu:
        first = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
        me = emu.stats()
    assert first.returncode == 3 and "UNFINISHED" in first.stdout  # a stuck job left in flight
    before = ledger(tmp_path)

    other = EmulatorConfig(api_key=TEST_KEY, time_scale=0.01, rpm=0, seed=99)  # another user and team
    with EmulatorThread(other) as emu:
        refused = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
        stats = emu.stats()
    assert refused.returncode == 3
    assert stats["requests"] == {"GET /v2/me": 1} and stats["jobs"] == []  # nothing but the question
    message = refused.stdout + refused.stderr
    state = EmulatorThread(other).emulator.state
    assert state.user_id in message and state.team_id in message  # this key's account
    old = EmulatorThread(mine).emulator.state
    assert old.user_id in message and old.team_id in message  # the account of the in-flight jobs
    assert ledger(tmp_path).equals(before)  # not a row touched
    assert me["jobs"]

    with EmulatorThread(mine) as emu:  # the right key again: the run goes on
        again = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
    assert again.returncode == 3 and "belongs to" not in again.stdout + again.stderr
    runs = read_runs(tmp_path / "ledger.parquet").sort("started_at")
    assert runs["account_user_id"].to_list() == [old.user_id, state.user_id, old.user_id]
    assert runs["account_team_id"].to_list() == [old.team_id, state.team_id, old.team_id]
    assert runs["exit_code"].to_list() == [3, 3, 3] and "belongs to" in runs["stop_reason"][1]


# -- the 24-hour replay window ----------------------------------------------------------------


def _old_intent(tmp_path: Path, manifest: Path, hours: float) -> tuple[str, bytes]:
    """A ledger row as a run killed right after journaling its intent `hours` ago leaves it."""
    row = load_manifest(manifest).row(0, named=True)
    model = get_model(row["model"])
    body = body_bytes(model.request_body(row["prompt"], int(row["duration"]), row["aspect_ratio"], []))
    fields = {name: row[name] for name in ("manifest", "row", "variation", "prompt", "duration", "aspect_ratio",
                                           "reference_images", "model", "metadata", "request_hash",
                                           "credits_estimated")}
    fields["manifest"] = str(manifest.resolve())
    with Ledger.open(tmp_path / "ledger.parquet", run_id="killed") as book:
        book.record(row["job_key"], **fields, status="PENDING", attempts=1,
                    idempotency_key=idempotency_key(row["job_key"], 1, body), request_body=body.decode(),
                    credits_prior=0, credits_charged=0,
                    first_sent_at=datetime.now(timezone.utc) - timedelta(hours=hours))
        book.commit_sync()
    # ...and the owner file it wrote before its first spending request (the emulator's account, seed 0)
    state = EmulatorState(EmulatorConfig(api_key=TEST_KEY))
    write_account_file(tmp_path / "ledger.parquet", Account(state.user_id, state.team_id, state.key_id))
    return row["job_key"], body


@pytest.mark.parametrize("case", ["found", "absent", "list-unreadable", "recent"])
def test_an_intent_past_23_hours_is_looked_up_before_any_new_key(tmp_path, case):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1, prefix="window"))
    key, body = _old_intent(tmp_path, manifest, hours=3 if case == "recent" else 25)
    dialects = ("list-4xx",) if case == "list-unreadable" else ()
    config = EmulatorConfig(api_key=TEST_KEY, time_scale=0.0, rpm=0, dialects=dialects)
    with EmulatorThread(config) as emu:
        if case == "found":  # the first send did reach the API (its key has since expired)
            async def make() -> None:
                async with ApiClient(emu.base_url, TEST_KEY) as client:
                    await client.submit(body, "a-key-from-yesterday")
            asyncio.run(make())
        done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        stats = emu.stats()
    row = ledger(tmp_path).row(0, named=True)
    keys = [job["idempotency_key"] for job in stats["jobs"]]
    if case == "found":  # adopted: no new job, the old one downloaded
        assert done.returncode == 0 and len(stats["jobs"]) == 1 and row["job_id"] == stats["jobs"][0]["id"]
        assert row["status"] == "DOWNLOADED" and row["attempts"] == 1
    elif case == "absent":  # the list was read back past the first send: a new key is safe
        assert done.returncode == 0 and keys == [idempotency_key(key, 2, body)] and row["attempts"] == 2
    elif case == "list-unreadable":  # no proof either way: nothing sent, the row waits
        assert done.returncode == 3 and keys == [] and row["status"] == "PENDING"
        assert "23 h old" in done.stdout
    else:  # within the window: the same key replays
        assert done.returncode == 0 and keys == [idempotency_key(key, 1, body)]


# -- our own exceptions -------------------------------------------------------------------------


def _run_in_process(args: list[str], monkeypatch, tmp_path: Path, base_url: str) -> int:
    from pipeline import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APIFRAME_BASE_URL", base_url)
    monkeypatch.setenv("APIFRAME_API_KEY", TEST_KEY)
    return cli.main(args)


@pytest.mark.parametrize("where", ["download", "track-loop"])
def test_an_exception_in_our_own_code_leaves_rows_in_flight_and_ends_with_exit_3(tmp_path, monkeypatch, capsys, where):
    import signal

    from pipeline.run import download as download_module, tracker as tracker_module

    manifest = write_manifest(tmp_path / "m.yaml", prompts(4, prefix="bug"))
    args = run_args(manifest, tmp_path)
    with EmulatorThread(EmulatorConfig(api_key=TEST_KEY, time_scale=0.0, rpm=0)) as emu:
        def broken(*_args, **_kwargs):
            raise RuntimeError("a bug of ours")

        if where == "download":
            monkeypatch.setattr(download_module, "download_video", broken)  # what the fetch step calls
        else:
            async def broken_poll(self):
                raise RuntimeError("a bug of ours")
            monkeypatch.setattr(tracker_module.Tracker, "poll", broken_poll)
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = _run_in_process(args, monkeypatch, tmp_path, emu.base_url)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        out = capsys.readouterr().out
        rows = ledger(tmp_path)
        assert code == 3
        assert "internal error in" in out and "RuntimeError: a bug of ours" in out
        # In flight, never FAILED. The first poll can come while the last submits are still in the air,
        # and the stop cuts them short: such a row keeps its intent (or sent nothing), and no job the
        # API made is one the ledger lost track of.
        assert set(rows["status"]) <= {"PENDING", "SUBMITTED", "PROCESSING", "COMPLETED"}
        with_id = rows.filter(pl.col("job_id").is_not_null()).height
        tracked = rows.filter(pl.col("job_id").is_not_null() | pl.col("idempotency_key").is_not_null()).height
        assert with_id >= 1 and with_id <= len(emu.stats()["jobs"]) <= tracked
        log = next((tmp_path / "logs").glob("*.jsonl")).read_text().splitlines()
        errors = [json.loads(line) for line in log if '"internal_error"' in line]
        assert errors and "Traceback" in errors[0]["traceback"]
        monkeypatch.undo()
        done = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)  # the fixed code finishes them
        stats = emu.stats()
    assert done.returncode == 0, done.stdout + done.stderr
    assert {k: len(v) for k, v in jobs_per_key(stats).items()} == {k: 1 for k in ledger(tmp_path)["job_key"]}


# -- what every request and error carries -------------------------------------------------------


async def test_errors_carry_the_request_id_and_requests_the_user_agent(emulator):
    emu = await emulator()
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        with pytest.raises(RejectedRequest) as refused:
            await client.get_job("not-a-uuid")
    assert "x-request-id req_" in str(refused.value) and refused.value.request_id.startswith("req_")
    assert USER_AGENT.startswith("videobatch/") and set(emu.stats()["user_agents"]) == {USER_AGENT}


def test_a_run_logs_the_request_id_of_an_error(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2, prefix="rid"))
    config = EmulatorConfig(api_key=TEST_KEY, time_scale=0.0, rpm=0, credits=5)  # 402 on the first submit
    with EmulatorThread(config) as emu:
        done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    log = next((tmp_path / "logs").glob("*.jsonl")).read_text()
    assert done.returncode == 3 and "x-request-id req_" in log


async def _serve(handler) -> tuple[Site, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    site = Site()
    _, port = await site.start(app, "127.0.0.1", 0)
    return site, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("status, tries", [(501, 1), (503, 3)])
async def test_501_is_not_retried_and_503_is(status, tries):
    seen = []

    async def handler(request):
        seen.append(request.path)
        return web.json_response({"error": "nope"}, status=status)

    site, url = await _serve(handler)
    try:
        async with ApiClient(url, TEST_KEY, retry=RetryPolicy(attempts=3, base=0.01)) as client:
            with pytest.raises(ApiError):
                await client.get_job("7f1c1e49-5f36-4b0e-9d4e-0c2f7a9d3b11")
    finally:
        await site.stop()
    assert len(seen) == tries


def test_retry_after_as_an_http_date_is_honoured(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(12, prefix="date"))
    config = EmulatorConfig(api_key=TEST_KEY, time_scale=0.0, rpm=8, rate_window_seconds=1.0,
                            dialects=("retry-after-date",))
    with EmulatorThread(config) as emu:
        done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path, timeout=180)
        stats = emu.stats()
    assert done.returncode == 0, done.stdout + done.stderr
    assert stats["rate_limited"] > 0 and stats["retry_after_violations"] == 0
    assert len(stats["jobs"]) == 12


# -- downloads and uploads ----------------------------------------------------------------------


def test_a_cdn_404_without_expiry_leaves_the_row_for_the_next_run(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3, prefix="cdn"))
    config = EmulatorConfig(api_key=TEST_KEY, time_scale=0.0, rpm=0, faults=Faults(cdn_not_found=1.0))
    with EmulatorThread(config) as emu:
        first = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        rows = ledger(tmp_path)
        emu.configure(faults={"cdn_not_found": 0.0})
        second = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        stats = emu.stats()
    assert first.returncode == 3 and set(rows["status"]) == {"COMPLETED"}  # paid, never FAILED
    assert "CDN answered 404" in first.stdout
    assert second.returncode == 0 and set(ledger(tmp_path)["status"]) == {"DOWNLOADED"}
    assert len(stats["jobs"]) == 3


@pytest.mark.parametrize("lifetime, uploads", [(3600, 1), (300, 3)])
async def test_an_upload_is_reused_only_while_it_has_ten_minutes_left(emulator, lifetime, uploads):
    emu = await emulator(upload_lifetime_s=lifetime)
    image = REPO / "manifests" / "refs" / "koi.png"
    async with ApiClient(emu.base_url, TEST_KEY) as client:
        cache = UploadCache(client)
        urls = [await cache.url_for(LocalImage.read(image)) for _ in range(3)]
    assert cache.uploads == uploads == emu.stats()["uploads"]
    assert all(url.startswith(emu.base_url) for url in urls)


# -- webhooks -----------------------------------------------------------------------------------


async def test_webhook_signatures_in_either_form_and_case_and_either_event_field():
    hints: list[str] = []
    receiver = WebhookReceiver(TEST_KEY, hints.append, "127.0.0.1", 0)
    await receiver.start()
    port = receiver.port  # the port it got
    bodies = [json.dumps({"jobId": f"job-{n}", **field}).encode()
              for n, field in enumerate([{"type": "completed"}, {"event": "failed"}, {"type": "progress"},
                                         {"event": "completed"}, {"type": "completed"}])]
    hex_of = [signature(TEST_KEY, body).removeprefix("sha256=") for body in bodies]
    headers = [f"sha256={hex_of[0]}", hex_of[1], f"SHA256={hex_of[2].upper()}", hex_of[3].upper(), "sha256=00"]
    statuses = []
    try:
        async with aiohttp.ClientSession() as session:
            for body, header in zip(bodies, headers):
                async with session.post(f"http://127.0.0.1:{port}/hook", data=body,
                                        headers={"X-Webhook-Signature": header}) as response:
                    statuses.append(response.status)
    finally:
        await receiver.stop()
    assert statuses == [200, 200, 200, 200, 401]
    assert hints == ["job-0", "job-1", "job-2", "job-3"]
    assert receiver.kinds == {"completed": 2, "failed": 1, "progress": 1}
    assert hashlib.sha256(TEST_KEY.encode()).hexdigest() not in json.dumps(statuses)


def test_in_flight_jobs_of_another_manifest_in_the_ledger_also_tie_it_to_their_account(tmp_path):
    stuck = write_manifest(tmp_path / "stuck.yaml", prompts(7, prefix="first"))  # its 7th job never ends
    other = write_manifest(tmp_path / "other.yaml", prompts(2, prefix="second"))
    mine = EmulatorConfig(api_key=TEST_KEY, time_scale=0.0, rpm=0, dialects=("stuck",), seed=0)
    with EmulatorThread(mine) as emu:
        first = run_cli(*run_args(stuck, tmp_path, "--job-timeout", "1"), env=cli_env(emu.base_url), cwd=tmp_path)
    assert first.returncode == 3
    with EmulatorThread(EmulatorConfig(api_key=TEST_KEY, time_scale=0.0, rpm=0, seed=99)) as emu:
        refused = run_cli(*run_args(other, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        stats = emu.stats()
    assert refused.returncode == 3 and "belongs to" in refused.stdout + refused.stderr
    assert stats["jobs"] == [] and stats["requests"] == {"GET /v2/me": 1}
