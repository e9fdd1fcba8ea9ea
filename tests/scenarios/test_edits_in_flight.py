"""Issue 18, item 5: a prompt edited (same `id`) while its job is in flight. The old version is
archived as `<id>@<hash>` and still followed: tracked, downloaded under its archived name, and
counted in the run's outcome and credits, by this run and by the next ones. One paid job per
version, ledger credits equal to the emulator's charges.

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/runner.py pipeline/run/payers.py pipeline/store/archive.py pipeline/store/runs.py
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pipeline.run import transitions as t
from pipeline.api.client import ApiClient
from pipeline.run.download import video_path
from pipeline.emulator import EmulatorConfig, EmulatorThread
from pipeline.store.archive import archived_name
from pipeline.store.runs import read_runs
from tests.harness import TEST_KEY, check_books, cli_env, ledger, run_args, run_cli, write_manifest
from tests.scenarios.test_real_api import _old_intent

def _slow(seconds: float) -> dict:
    """Emulator settings under which every clip generates `seconds`: long enough to edit meanwhile."""
    return {"time_scale": 1.0, "generation_seconds": {d: (seconds, seconds) for d in (6, 10, 15)}}


def _edited_while_generating(emu, tmp_path: Path) -> tuple[dict, Path, dict]:
    """Run 1 leaves `hero` generating (--job-timeout 1 s), then its prompt is edited under the same
    id: the environment, the manifest and the old version's row."""
    env = cli_env(emu.base_url)
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "hero", "prompt": "a red kite", "duration": 6}])
    first = run_cli(*run_args(manifest, tmp_path, "--job-timeout", "1"), env=env, cwd=tmp_path)
    assert first.returncode == 3, first.stdout + first.stderr
    old = _rows(tmp_path)["hero"]
    write_manifest(manifest, [{"id": "hero", "prompt": "a blue kite", "duration": 6}])
    return env, manifest, old


def _rows(tmp: Path) -> dict[str, dict]:
    return {row["job_key"]: row for row in ledger(tmp).iter_rows(named=True)}


def _summary(tmp: Path, name: str) -> dict:
    return json.loads((tmp / name).read_text())


def test_a_version_edited_away_while_generating_is_followed_downloaded_and_counted(emulator_thread, tmp_path):
    # Every clip takes 10 minutes: still generating when runs 1 and 2 give up on it, however slow a
    # loaded machine starts them (a 6 s clip finished before run 2 read it when CLI starts were slow);
    # before run 3 the emulator's clock moves on past them.
    emu = emulator_thread(**_slow(600.0))
    env, manifest, old = _edited_while_generating(emu, tmp_path)
    assert old["status"] in ("SUBMITTED", "PROCESSING") and old["job_id"]
    archived = archived_name("hero", old["request_hash"])

    # Run 2 also stops before either job ends: it must not exit 0, and its summary names the
    # archived version among the rows left for the next run.
    second = run_cli(*run_args(manifest, tmp_path, "--job-timeout", "1", "--summary-json", "s2.json"),
                     env=env, cwd=tmp_path)
    assert second.returncode == 3, second.stdout + second.stderr
    left = {row["job_key"] for row in _summary(tmp_path, "s2.json")["unfinished"]}
    assert left == {"hero", archived}
    rows = _rows(tmp_path)
    assert rows[archived]["job_id"] == old["job_id"] and rows[archived]["status"] in ("SUBMITTED", "PROCESSING")

    # The next plan takes the archived version up: tracked, at no new cost.
    shown = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    line = next(line for line in shown.stdout.splitlines() if archived in line)
    assert line.rstrip().endswith("track") and "to track: 2" in shown.stdout
    assert "earlier versions of edited rows whose job is still followed: 1" in shown.stdout
    assert "a run would spend at most 0 credits" in shown.stdout

    emu.configure(clock_offset_s=600.0)  # ten minutes pass: both versions' clips are ready
    third = run_cli(*run_args(manifest, tmp_path, "--summary-json", "s3.json"), env=env, cwd=tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert _summary(tmp_path, "s3.json")["rows"]["downloaded"] == 2
    rows = _rows(tmp_path)
    assert rows[archived]["status"] == rows["hero"]["status"] == "DOWNLOADED"
    assert rows[archived]["output_path"] == str(video_path(tmp_path / "out", archived))
    assert rows[archived]["prompt"] == "a red kite" and rows["hero"]["prompt"] == "a blue kite"
    stats = emu.stats()
    assert len(stats["jobs"]) == 2  # one paid job per version
    check_books(stats, ledger(tmp_path), in_flight_ok=False)
    # Each run counted what its jobs cost: the runs table adds up to what the API charged.
    runs = read_runs(tmp_path / "ledger.parquet").sort("started_at")
    assert runs["exit_code"].to_list() == [3, 3, 0]
    assert runs["credits_charged"].sum() == stats["credits"]["charged"]
    assert runs["rows_unfinished"].to_list()[1] == 2


def test_the_run_that_archives_a_generating_version_finishes_it(emulator_thread, tmp_path):
    emu = emulator_thread(**_slow(3.0))
    env, manifest, old = _edited_while_generating(emu, tmp_path)
    archived = archived_name("hero", old["request_hash"])
    second = run_cli(*run_args(manifest, tmp_path, "--summary-json", "s.json"), env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    summary = _summary(tmp_path, "s.json")
    assert summary["rows"]["downloaded"] == 2 and summary["rows"]["unfinished"] == 0
    rows = _rows(tmp_path)
    assert Path(rows[archived]["output_path"]) == video_path(tmp_path / "out", archived)
    stats = emu.stats()
    assert len(stats["jobs"]) == 2
    assert summary["credits"]["charged"] + read_runs(tmp_path / "ledger.parquet")["credits_charged"][0] \
        == stats["credits"]["charged"]
    check_books(stats, ledger(tmp_path), in_flight_ok=False)


def _submit(base_url: str, body: bytes, key: str) -> None:
    """The send of a run killed before its answer was journaled: the API made the job."""
    async def send() -> None:
        async with ApiClient(base_url, TEST_KEY) as client:
            await client.submit(body, key)
    asyncio.run(send())


@pytest.mark.parametrize("hours, sent", [(0.01, True), (0.01, False), (25, True), (25, False)])
def test_an_archived_intent_without_a_job_id_is_never_paid_for_twice(tmp_path, hours, sent):
    """A run was killed with an intent journaled and no job id: its send may have made and charged
    a job (`sent`) or never left; then the prompt was edited. Within the replay window the intent
    is resumed with its journaled bytes and key: the API hands back the job it made, or makes it
    once (contract: the same Idempotency-Key within 24 h). Past it (25 h) the job list decides:
    a job found is adopted; none there (the list read back past the first send) and the version
    the user edited away is never made: FAILED with the reason, left be by later runs. Either way
    one job at most for that version, followed to its download under the archived name."""
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "hero", "prompt": "a red kite"}])
    key, body = _old_intent(tmp_path, manifest, hours=hours)
    intent = _rows(tmp_path)[key]
    archived = archived_name("hero", intent["request_hash"])
    write_manifest(manifest, [{"id": "hero", "prompt": "a blue kite"}])
    with EmulatorThread(EmulatorConfig(api_key=TEST_KEY, time_scale=0.0, rpm=0)) as emu:
        if sent:
            _submit(emu.base_url, body, intent["idempotency_key"])
        made = [job["id"] for job in emu.stats()["jobs"]]
        done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        again = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        stats = emu.stats()
    assert again.returncode == 0, again.stdout + again.stderr  # nothing left for later runs
    rows = _rows(tmp_path)
    assert rows["hero"]["status"] == "DOWNLOADED" and rows[archived]["attempts"] == 1
    assert rows[archived]["idempotency_key"] == intent["idempotency_key"]
    if sent or hours < 1:
        assert done.returncode == 0, done.stdout + done.stderr
        assert rows[archived]["status"] == "DOWNLOADED"
        assert rows[archived]["output_path"] == str(video_path(tmp_path / "out", archived))
        under_its_key = [job["id"] for job in stats["jobs"] if job["idempotency_key"] == intent["idempotency_key"]]
        assert under_its_key == [rows[archived]["job_id"]] and (not sent or under_its_key == made)
        assert len(stats["jobs"]) == 2
        check_books(stats, ledger(tmp_path), in_flight_ok=False)
    else:
        assert done.returncode == 1, done.stdout + done.stderr  # the version is FAILED, said once
        assert rows[archived]["status"] == "FAILED" and "edited away" in rows[archived]["error"]
        assert [job["idempotency_key"] for job in stats["jobs"]] == [rows["hero"]["idempotency_key"]]
        assert ledger(tmp_path)["credits_charged"].sum() == stats["credits"]["charged"]


def test_an_archived_version_never_starts_a_paid_attempt():
    """The transitions behind it: a FAILED generation of an archived version ends there, and an
    old intent whose job the list does not hold is settled, not sent under a new key."""
    archived = t.Row(attempts=1, job_id="j", may_spend=False, superseded=True)
    failed = t.after_read(archived, {"id": "j", "status": "FAILED", "creditCost": 0}, None, t.Limits())
    assert failed.step is t.Step.FAIL
    absent = t.after_search(t.Row(may_spend=False, superseded=True), t.Search(match=None, complete=True))
    assert absent.step is t.Step.FAIL and absent.fields["status"] == "FAILED"
    unread = t.after_search(t.Row(may_spend=False, superseded=True), t.Search(match=None, complete=False))
    assert unread.step is t.Step.LEAVE  # no proof either way: kept in flight
    current = t.after_search(t.Row(), t.Search(match=None, complete=True))
    assert current.step is t.Step.RESUBMIT  # the manifest's own row still gets its new key


def test_an_old_version_whose_video_cannot_be_moved_aside_stops_the_run_and_keeps_its_clip(emulator_thread, tmp_path):
    """An edited row's downloaded clip is moved to its archived name before the ledger renames the
    row: a videos folder that refuses the move stops the run (exit 3, one line, nothing sent), and
    the new version is never downloaded over the old version's paid clip."""
    import hashlib
    import subprocess

    emu = emulator_thread()
    env = cli_env(emu.base_url)
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "hero", "prompt": "a red kite", "duration": 6}])
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    old = _rows(tmp_path)["hero"]
    write_manifest(manifest, [{"id": "hero", "prompt": "a blue kite", "duration": 6}])
    videos = Path(old["output_path"]).parent
    subprocess.run(["mount", "--bind", str(videos), str(videos)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(videos)], check=True)
        stopped = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    finally:
        subprocess.run(["umount", str(videos)], check=True)
    assert stopped.returncode == 3 and "Traceback" not in stopped.stdout + stopped.stderr, stopped.stdout + stopped.stderr
    assert f"cannot write {old['output_path']}: not writable (Read-only file system)" in stopped.stdout
    assert len(emu.stats()["jobs"]) == 1  # stopped before anything was sent
    assert _rows(tmp_path)["hero"]["output_path"] == old["output_path"]  # the ledger says what the disk holds

    again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = _rows(tmp_path)
    archived = rows[archived_name("hero", old["request_hash"])]
    assert archived["output_path"] != rows["hero"]["output_path"]
    assert hashlib.sha256(Path(archived["output_path"]).read_bytes()).hexdigest() == old["sha256"]  # the paid clip kept
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


def test_a_row_with_a_local_image_edited_back_shares_its_earlier_versions_job(emulator_thread, tmp_path):
    """A -> B -> A, with a local reference image. Its key is named by the image's content, so the
    third run sends A's key again with a new upload URL: the API answers 409 (same key, another
    body). A's job is held by the archived version `<id>@<A's hash>`: it is this id's own, and is
    shared as a replay would share it (counted once, invariant 7), not left uncertain for 23 h
    and then paid for again."""
    import shutil

    shutil.copy(Path(__file__).resolve().parents[2] / "manifests" / "refs" / "koi.png", tmp_path / "koi.png")
    emu = emulator_thread()
    env = cli_env(emu.base_url)

    def run(prompt: str):
        write_manifest(tmp_path / "m.yaml", [{"id": "koi", "prompt": prompt, "duration": 6,
                                              "reference_images": ["koi.png"]}])
        done = run_cli(*run_args(tmp_path / "m.yaml", tmp_path, "--retries", "0"), env=env, cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return _rows(tmp_path)["koi"]

    a = run("a koi in ink")
    run("a koi in watercolour")
    again = run("a koi in ink")
    assert again["job_id"] == a["job_id"] and again["credits_charged"] == 0  # A's job, paid once, by its first row
    stats = emu.stats()
    assert len(stats["jobs"]) == 2 and stats["uploads"] == 3  # one job per request; each run uploaded anew
    check_books(stats, ledger(tmp_path), in_flight_ok=False)


def test_an_old_clip_moved_aside_by_a_killed_run_is_still_the_archived_versions(emulator_thread, tmp_path):
    """A run killed after it moved an edited row's clip to its archived name, before its journal
    said so, leaves the ledger naming the old path. The rerun archives the row again and records
    the clip where it lies, so the new version's download never takes the old version's place."""
    import hashlib

    emu = emulator_thread()
    env = cli_env(emu.base_url)
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "hero", "prompt": "a red kite", "duration": 6}])
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    old = _rows(tmp_path)["hero"]
    name = archived_name("hero", old["request_hash"])
    Path(old["output_path"]).replace(video_path(tmp_path / "out", name))  # what the killed run did
    write_manifest(manifest, [{"id": "hero", "prompt": "a blue kite", "duration": 6}])
    done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(tmp_path)
    archived = rows[name]
    assert archived["output_path"] == str(video_path(tmp_path / "out", name)) != rows["hero"]["output_path"]
    assert hashlib.sha256(Path(archived["output_path"]).read_bytes()).hexdigest() == archived["sha256"] == old["sha256"]
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)
