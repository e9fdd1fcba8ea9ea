"""Never pay twice when this machine breaks things: a lost journal, a lost or damaged owner file,
a clock that disagrees with the API's, a reference image changed after the manifest check.

Each test drives the real `videobatch run` (or `run_batch`) against the emulator over real
sockets and ends by judging the books by the emulator's own records (harness.check_books).

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/runner.py pipeline/run/account.py pipeline/run/references.py pipeline/api/uploads.py pipeline/run/old_intents.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.run.account import Account, account_path, read_account_file
from pipeline.api.client import ApiClient
from pipeline.emulator import EmulatorConfig, EmulatorThread
from pipeline.manifest.load import load_manifest
from pipeline.models import get_model
from pipeline.plan.actions import ROW_FIELDS
from pipeline.run.attempts import body_bytes, idempotency_key
from pipeline.store.ledger import Ledger
from tests.harness import (TEST_KEY, check_books, cli_env, jobs_per_key, ledger, run_args, run_cli, start_cli,
                           wait_for, write_manifest)

REFS = Path(__file__).resolve().parents[2] / "manifests" / "refs"
HOUR = 3600.0


def _scenes(n: int, prefix: str, **fields) -> list[dict]:
    """Rows of one clip length and shape, so the emulator encodes few distinct clips."""
    return [{"prompt": f"{prefix} {i}: a heron lifts off the reed bed number {i}", "duration": 6,
             "aspect_ratio": "16:9", **fields} for i in range(n)]


# -- 2. the Idempotency-Key after a lost journal ---------------------------------------------


def test_a_rerun_that_lost_its_journal_reaches_the_same_keys_and_pays_once(tmp_path):
    for name in ("koi.png", "paper-texture.png"):
        shutil.copy(REFS / name, tmp_path / name)
    rows = [{**row, "reference_images": ["koi.png" if i % 2 else "paper-texture.png"]}
            for i, row in enumerate(_scenes(4, "lost journal"))]
    manifest = write_manifest(tmp_path / "m.yaml", rows)
    state = tmp_path / "state"  # ledger, journal, owner file, runs table: the disk that is lost
    args = run_args(manifest, state)
    config = EmulatorConfig(api_key=TEST_KEY, time_scale=0.02, rpm=0)  # jobs take 0.6-1.2 s
    with EmulatorThread(config) as emu:
        first = start_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
        assert wait_for(lambda: len(emu.emulator.state.order) == 4, timeout=60)  # every submit has left
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        shutil.rmtree(state)  # the journal is lost, and every other file beside it
        uploads_before = emu.emulator.state.uploads.copy()
        again = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
        stats = emu.stats()
    assert again.returncode == 0, again.stdout + again.stderr
    rows = ledger(state)
    assert len(emu.emulator.state.uploads) > len(uploads_before)  # uploaded again: new URLs, new bodies
    jobs = {job["id"]: job for job in stats["jobs"]}
    for row in rows.iter_rows(named=True):  # the very key of the first run: the API named its job
        assert row["idempotency_key"] == jobs[row["job_id"]]["idempotency_key"]
    check_books(stats, rows, in_flight_ok=False)  # 4 jobs for 4 rows, every credit in the ledger


# -- 11b. the bytes checked are the bytes uploaded -------------------------------------------


@pytest.mark.parametrize("change", ["edited", "replaced-by-a-symlink"])
def test_a_reference_image_changed_after_the_check_is_not_sent(emulator_thread, tmp_path, monkeypatch, change):
    from pipeline.batch import run_batch

    image = tmp_path / "koi.png"
    shutil.copy(REFS / "koi.png", image)
    shutil.copy(REFS / "paper-texture.png", tmp_path / "other.png")
    manifest = write_manifest(tmp_path / "m.yaml", _scenes(1, "checked bytes", reference_images=["koi.png"]))
    emu = emulator_thread()
    monkeypatch.setenv("APIFRAME_BASE_URL", emu.base_url)
    monkeypatch.setenv("APIFRAME_API_KEY", TEST_KEY)

    def change_the_image(*_started) -> None:  # after the plan checked the file, before any upload
        if change == "edited":
            image.write_bytes(image.read_bytes() + b"edited after the check")
        else:
            (tmp_path / "swap").symlink_to(tmp_path / "other.png")
            os.replace(tmp_path / "swap", image)

    summary = run_batch(manifest, ledger=tmp_path / "ledger.parquet", out=tmp_path / "out", rpm=0,
                        poll_interval=0.05, on_start=change_the_image)
    stats = emu.stats()
    assert summary.exit_code == 3
    [left] = summary.unfinished
    assert str(image) in left["reason"] and "changed since the manifest was checked" in left["reason"]
    assert stats["jobs"] == [] and stats["uploads"] == 0 and stats["credits"]["charged"] == 0  # nothing sent

    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)  # checked anew
    assert done.returncode == 0, done.stdout + done.stderr
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


# -- 3. the owner of the jobs in flight ------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "corrupt"])
def test_a_lost_owner_file_refuses_another_account_and_the_runs_table_names_the_owner(tmp_path, damage):
    manifest = write_manifest(tmp_path / "m.yaml", _scenes(3, "owner"))
    args = run_args(manifest, tmp_path)
    mine = EmulatorConfig(api_key=TEST_KEY, time_scale=0.05, rpm=0, seed=0)  # jobs take 1.5-3 s
    other = EmulatorConfig(api_key=TEST_KEY, time_scale=0.05, rpm=0, seed=99)  # another user and team
    with EmulatorThread(mine) as emu:
        first = run_cli(*args, "--job-timeout", "0.5", env=cli_env(emu.base_url), cwd=tmp_path)
        assert first.returncode == 3 and set(ledger(tmp_path)["status"]) <= {"SUBMITTED", "PROCESSING"}
        owner_file = account_path(tmp_path / "ledger.parquet")
        if damage == "deleted":
            owner_file.unlink()
        else:
            owner_file.write_text('{"user_id": "someone", "team_')  # cut mid-write
        before = ledger(tmp_path)

        with EmulatorThread(other) as stranger:
            refused = run_cli(*args, env=cli_env(stranger.base_url), cwd=tmp_path)
            strangers = stranger.stats()
        assert refused.returncode == 3
        assert strangers["requests"] == {"GET /v2/me": 1} and strangers["jobs"] == []  # nothing spent
        message = refused.stdout + refused.stderr
        assert str(owner_file) in message and ("missing" if damage == "deleted" else "corrupt") in message
        state = emu.emulator.state
        assert state.user_id in message and state.team_id in message  # the account the runs table names
        assert ledger(tmp_path).equals(before)

        done = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)  # the right key: it goes on
        stats = emu.stats()
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_account_file(tmp_path / "ledger.parquet") == Account(state.user_id, state.team_id, state.key_id)
    check_books(stats, ledger(tmp_path), in_flight_ok=False)


def test_a_lost_owner_file_after_a_killed_run_is_proven_by_the_jobs_this_key_reads_back(tmp_path):
    """The killed run left no row in the runs table, so nothing there names the owner of its jobs.
    A job is visible only to its owner: the key that reads every job in flight back goes on (and
    writes the file again); another account's key reads none of them and is refused, having sent
    no POST."""
    manifest = write_manifest(tmp_path / "m.yaml", _scenes(3, "killed owner"))
    args = run_args(manifest, tmp_path)
    other = EmulatorConfig(api_key=TEST_KEY, time_scale=0.05, rpm=0, seed=99)  # another user and team
    with EmulatorThread(EmulatorConfig(api_key=TEST_KEY, time_scale=0.05, rpm=0)) as emu:
        killed = start_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
        journal = tmp_path / "ledger.journal.jsonl"
        assert wait_for(lambda: journal.exists() and journal.read_text().count('"job_id":"') >= 3, timeout=60)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        owner_file = account_path(tmp_path / "ledger.parquet")
        owner_file.unlink()
        before = ledger(tmp_path)

        with EmulatorThread(other) as stranger:
            refused = run_cli(*args, env=cli_env(stranger.base_url), cwd=tmp_path)
            strangers = stranger.stats()
        assert refused.returncode == 3 and strangers["jobs"] == []
        assert not [route for route in strangers["requests"] if route.startswith("POST")], strangers["requests"]
        message = refused.stdout + refused.stderr
        assert str(owner_file) in message and "missing" in message and "does not read back with this key" in message
        assert ledger(tmp_path).equals(before) and not owner_file.exists()

        done = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)  # the owner's key proves it
        stats = emu.stats()
        state = emu.emulator.state
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_account_file(tmp_path / "ledger.parquet") == Account(state.user_id, state.team_id, state.key_id)
    check_books(stats, ledger(tmp_path), in_flight_ok=False)


# -- 4. the API's clock ----------------------------------------------------------------------


def _old_intents(manifest: Path, count: int) -> tuple[list[dict], dict[str, bytes]]:
    """The first `count` rows of `manifest`, and the body a run would have journaled for each."""
    rows = list(load_manifest(manifest).head(count).iter_rows(named=True))
    bodies = {row["job_key"]: body_bytes(get_model(row["model"]).request_body(
        row["prompt"], row["duration"], row["aspect_ratio"], [])) for row in rows}
    return rows, bodies


def _journal(tmp_path: Path, manifest: Path, rows: list[dict], bodies: dict[str, bytes], hours: float) -> None:
    """Ledger rows as a run killed right after journaling these intents `hours` ago leaves them."""
    with Ledger.open(tmp_path / "ledger.parquet", run_id="killed") as book:
        for row in rows:
            key, body = row["job_key"], bodies[row["job_key"]]
            fields = {name: row[name] for name in ROW_FIELDS} | {"manifest": str(manifest.resolve())}
            book.record(key, **fields, status="PENDING", attempts=1, idempotency_key=idempotency_key(key, 1, body),
                        request_body=body.decode(), credits_prior=0, credits_charged=0,
                        first_sent_at=datetime.now(timezone.utc) - timedelta(hours=hours))
        book.commit_sync()


@pytest.mark.parametrize("skew_h", [-2, 2])
def test_a_skewed_api_clock_never_makes_a_new_key_for_an_intent_past_23_hours(tmp_path, skew_h):
    """Three intents first sent 25 h ago made jobs, their answers lost; a fourth never left. The
    100 other jobs of the batch came just after, so the three are on the job list's second page."""
    skew = skew_h * HOUR
    old, later = _scenes(4, "yesterday"), _scenes(100, "later the same day")
    manifest = write_manifest(tmp_path / "m.yaml", old + later)
    intents, bodies = _old_intents(manifest, 4)
    keys = [row["job_key"] for row in intents]
    config = EmulatorConfig(api_key=TEST_KEY, time_scale=0.0, rpm=0, clock_offset_s=skew - 25 * HOUR)
    with EmulatorThread(config) as emu:
        env = cli_env(emu.base_url)

        async def first_sends() -> None:  # 25 h ago, on the API's (skewed) clock
            async with ApiClient(emu.base_url, TEST_KEY) as client:
                for key in keys[:3]:
                    await client.submit(bodies[key], idempotency_key(key, 1, bodies[key]))

        asyncio.run(first_sends())
        write_manifest(manifest, later)  # the rest of the batch, just after
        made_later = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        assert made_later.returncode == 0, made_later.stdout + made_later.stderr
        write_manifest(manifest, old + later)  # adding rows changes no job_key
        _journal(tmp_path, manifest, intents, bodies, hours=25)
        emu.configure(clock_offset_s=skew)  # 25 h on: every first send's key has expired

        skewed = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        after_skewed = emu.stats()
        rows = ledger(tmp_path)
        emu.configure(clock_offset_s=0.0)  # the clock set right: the intent that never left may go
        fixed = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        stats = emu.stats()

    assert skewed.returncode == 3, skewed.stdout + skewed.stderr
    assert len(after_skewed["jobs"]) == 103  # no new key, no new job
    by_key = {row["job_key"]: row for row in rows.iter_rows(named=True)}
    made = jobs_per_key(after_skewed)
    for key in keys[:3]:  # found on the second page and adopted
        assert by_key[key]["status"] == "DOWNLOADED" and by_key[key]["job_id"] == made[key][0]["id"]
    never_sent = by_key[keys[3]]
    assert never_sent["status"] == "PENDING" and never_sent["attempts"] == 1 and keys[3] not in made
    assert ("h behind" if skew < 0 else "h ahead of") in skewed.stdout
    check_books(after_skewed, rows.filter(rows["job_id"].is_not_null()), in_flight_ok=False)

    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert len(stats["jobs"]) == 104  # the intent that never made a job, now under a new key
    check_books(stats, ledger(tmp_path), in_flight_ok=False)
