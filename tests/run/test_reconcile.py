"""`videobatch reconcile`: the API's jobs matched to a manifest's rows, the ledger audited against
them, and `--adopt` rebuilding a lost ledger, all with GETs only. Real CLI, real emulator, real sockets."""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from pipeline.run.account import account_path
from pipeline.batch import reconcile_batch
from pipeline.manifest.load import load_manifest
from pipeline.store.ledger import Ledger, read_ledger
from tests.harness import TEST_KEY, check_books, cli_env, jobs_per_key, prompts, run_args, run_cli, write_manifest

REFS = Path(__file__).resolve().parents[2] / "manifests" / "refs"
OUTSIDE = ("--refs-root", str(REFS))  # the images lie outside the test's folder: run and reconcile both take it
GENERATE = "POST /v2/videos/generate"


def reconcile(manifest: Path, disk: Path, env: dict, *more: str):
    """`videobatch reconcile --json`: (exit code, the JSON document, stderr)."""
    done = run_cli("reconcile", str(manifest), "--ledger", str(disk / "ledger.parquet"), "--json", *more,
                   env=env, cwd=manifest.parent)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.fixture
def audit(monkeypatch):
    """`audit(emu, manifest, disk, **options)`: the library's reconcile_batch in this process (no
    interpreter to start), keyed like the CLI: (exit code, the --json document)."""

    def call(emu, manifest: Path, disk: Path, **options):
        monkeypatch.chdir(manifest.parent)
        monkeypatch.setenv("APIFRAME_BASE_URL", emu.base_url)
        monkeypatch.setenv("APIFRAME_API_KEY", TEST_KEY)
        report = reconcile_batch(manifest, ledger=disk / "ledger.parquet", **options)
        return report.exit_code, report.as_dict()

    return call


def paid_requests(emu) -> int:
    return emu.stats()["requests"].get(GENERATE, 0)


def test_a_lost_ledger_is_rebuilt_from_the_api_and_nothing_is_paid_twice(emulator_thread, audit, tmp_path):
    emu = emulator_thread()
    env = cli_env(emu.base_url)
    jobs = prompts(3) + [{"prompt": "twin koi circling", "count": 2},
                         {"prompt": "koi on paper", "reference_images": [str(REFS / "koi.png")]}]
    manifest = write_manifest(tmp_path / "m.yaml", jobs)
    disk = tmp_path / "disk"  # ledger, journal, runs table, owner file and videos: the team's disk
    first = run_cli(*run_args(manifest, disk, *OUTSIDE), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    rows = 6
    paid = paid_requests(emu)
    assert paid == rows
    charged = emu.stats()["credits"]["charged"]

    code, healthy = audit(emu, manifest, disk, refs_root=REFS)
    assert code == 0 and healthy["found"]["books_agree"], healthy
    assert healthy["found"]["credits"] == {"rows": [], "ledger": charged, "api": charged}

    shutil.rmtree(disk)  # the disk is lost
    code, lost = audit(emu, manifest, disk, refs_root=REFS)
    found = lost["found"]
    assert code == 1
    assert lost["job_list"]["complete"] and found["matched_rows"] == rows
    assert len(found["unknown_paid_jobs"]) == rows and found["in_flight_not_shown"] == []
    assert found["credits"] == {"rows": [], "ledger": 0, "api": charged}
    # The row with a local image went out as an upload URL: matched on everything else, and said so.
    by_prompt = [job for job in found["unknown_paid_jobs"] if job["by_prompt_only"]]
    assert found["rows_matched_by_prompt_only"] == 1 and len(by_prompt) == 1
    assert {job["adopt_into"] for job in found["unknown_paid_jobs"]} == set(load_manifest(manifest, refs_root=REFS)["job_key"])
    text = run_cli("reconcile", str(manifest), "--ledger", str(disk / "ledger.parquet"), *OUTSIDE, env=env, cwd=tmp_path)
    assert text.returncode == 1
    assert f"paid jobs the ledger does not know: {rows}" in text.stdout
    assert f"credits: ledger 0, API {charged}: they differ by {charged}" in text.stdout
    assert "1 rows by prompt and settings only" in text.stdout and "--adopt takes 6" in text.stdout

    code, adopted, _ = reconcile(manifest, disk, env, "--adopt", *OUTSIDE)
    assert code == 0 and adopted["adopted"] == rows, adopted
    assert adopted["after_adopting"]["books_agree"]
    code, again = audit(emu, manifest, disk, refs_root=REFS)
    assert code == 0 and again["found"]["unknown_paid_jobs"] == [] and again["found"]["books_agree"]
    assert paid_requests(emu) == paid  # reconcile sent GETs only

    # Adopted rows name no run in the runs table; with the owner file lost as well, the key proves
    # it owns them by reading their jobs back (account.unseen_by_this_key), instead of a refusal.
    account_path(disk / "ledger.parquet").unlink()
    rerun = run_cli(*run_args(manifest, disk, *OUTSIDE), env=env, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "up to 0 credits to spend" in rerun.stdout
    stats = emu.stats()
    assert stats["requests"][GENERATE] == paid and stats["uploads"] == 1  # no new job, no new upload
    check_books(stats, read_ledger(disk / "ledger.parquet"), in_flight_ok=False)


def test_every_job_of_a_row_is_reported_and_the_newest_that_did_not_fail_is_adopted(emulator_thread, audit, tmp_path):
    emu = emulator_thread()
    env = cli_env(emu.base_url)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    disk = tmp_path / "disk"
    emu.configure(faults={"fail_generation": 1.0})
    failing = run_cli(*run_args(manifest, disk, "--retries", "1"), env=env, cwd=tmp_path)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    emu.configure(faults={"fail_generation": 0.0})
    assert run_cli(*run_args(manifest, disk, "--retry-failed"), env=env, cwd=tmp_path).returncode == 0
    # Two failed attempts (refunded) and one clip per row; the ledger records only the clip's job.
    code, healthy = audit(emu, manifest, disk)
    assert code == 0, healthy
    assert len(healthy["found"]["unknown_failed_jobs"]) == 4 and healthy["found"]["unknown_paid_jobs"] == []

    shutil.rmtree(disk)
    code, lost = audit(emu, manifest, disk)
    assert code == 1
    several = lost["found"]["rows_with_several_jobs"]
    assert sorted(len(entry["jobs"]) for entry in several) == [3, 3]  # every job of each row, reported
    for entry in several:
        statuses = [job["status"] for job in entry["jobs"]]
        assert statuses == ["COMPLETED", "FAILED", "FAILED"]  # newest first
    adopt = {job["adopt_into"]: job for job in lost["found"]["unknown_paid_jobs"]}
    assert {job["status"] for job in adopt.values()} == {"COMPLETED"} and None not in adopt

    code, adopted = audit(emu, manifest, disk, adopt=True)
    assert code == 0 and adopted["adopted"] == 2
    rows = read_ledger(disk / "ledger.parquet")
    assert set(rows["attempts"]) == {3}  # the failed jobs are its earlier attempts
    assert dict(zip(rows["job_key"], rows["job_id"])) == {key: job["job_id"] for key, job in adopt.items()}
    paid = paid_requests(emu)
    assert run_cli(*run_args(manifest, disk), env=env, cwd=tmp_path).returncode == 0
    stats = emu.stats()
    assert stats["requests"][GENERATE] == paid
    check_books(stats, read_ledger(disk / "ledger.parquet"), in_flight_ok=False, retried=True)


def test_a_job_another_row_records_is_never_adopted(emulator_thread, audit, tmp_path):
    """A reviewer's regeneration archives the row (`hero@<hash>`) with its job: a job of the very
    request the manifest's row asks for, that the archived row pays for (invariant 7)."""
    emu = emulator_thread()
    env = cli_env(emu.base_url)
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "hero", "prompt": "a red kite over dunes"}])
    disk = tmp_path / "disk"
    assert run_cli(*run_args(manifest, disk), env=env, cwd=tmp_path).returncode == 0
    with Ledger.open(disk / "ledger.parquet", run_id="archive") as book:
        book.rename("hero", "hero@archived")
    code, found = audit(emu, manifest, disk, adopt=True)
    assert code == 0, found
    assert found["adopted"] == 0 and found["found"]["unknown_paid_jobs"] == []
    rows = read_ledger(disk / "ledger.parquet")
    assert rows["job_key"].to_list() == ["hero@archived"]
    stats = emu.stats()
    assert stats["requests"][GENERATE] == 1
    assert rows["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"]


def test_rows_in_flight_that_an_emulator_which_lost_its_state_does_not_show_are_reported(emulator_thread, audit, tmp_path):
    slow = {d: (2.0, 2.0) for d in (6, 10, 15)}
    emu = emulator_thread(time_scale=1.0, generation_seconds=slow)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    disk = tmp_path / "disk"
    left = run_cli(*run_args(manifest, disk, "--job-timeout", "0.3"), env=cli_env(emu.base_url), cwd=tmp_path)
    assert left.returncode == 3, left.stdout + left.stderr  # left in flight for the next run
    in_flight = read_ledger(disk / "ledger.parquet")
    assert set(in_flight["status"]) <= {"SUBMITTED", "PROCESSING"} and in_flight["job_id"].is_not_null().all()

    forgetful = emulator_thread()  # same key, but none of the jobs: a server that lost its state
    code, found = audit(forgetful, manifest, disk, adopt=True)
    assert code == 1
    missing = found["found"]["in_flight_not_shown"]
    assert {(m["job_key"], m["job_id"]) for m in missing} == set(zip(in_flight["job_key"], in_flight["job_id"]))
    assert all("404" in m["detail"] for m in missing)
    assert found["adopted"] == 0
    text = run_cli("reconcile", str(manifest), "--ledger", str(disk / "ledger.parquet"),
                   env=cli_env(forgetful.base_url), cwd=tmp_path)
    assert text.returncode == 1 and "rows the ledger has in flight that the API does not show: 3" in text.stdout
    assert forgetful.stats()["requests"].get(GENERATE, 0) == 0

    code, found = audit(emu, manifest, disk)  # the API that made them shows them
    assert code == 0 and found["found"]["in_flight_not_shown"] == [], found
    done = run_cli(*run_args(manifest, disk), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = emu.stats()
    assert stats["requests"][GENERATE] == 3
    check_books(stats, read_ledger(disk / "ledger.parquet"), in_flight_ok=False)


def test_a_hand_recorded_job_and_an_intent_that_made_no_job_are_reported(emulator_thread, audit, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    rows = load_manifest(manifest)
    disk = tmp_path / "disk"
    typed_in = str(uuid.uuid4())
    with Ledger.open(disk / "ledger.parquet", run_id="by-hand") as book:
        first, second = rows.iter_rows(named=True)
        book.record(first["job_key"], manifest=first["manifest"], status="SUBMITTED", job_id=typed_in,
                    attempts=1, credits_charged=0)
        body = {"model": "grok-imagine-video", "prompt": second["prompt"],
                "grokImagineVideoParams": {"duration": second["duration"], "aspect_ratio": second["aspect_ratio"]}}
        book.record(second["job_key"], manifest=second["manifest"], status="PENDING", attempts=1,
                    idempotency_key="vb-by-hand-a1", request_body=json.dumps(body), credits_charged=0,
                    first_sent_at=datetime.now(timezone.utc) - timedelta(minutes=5))
        book.commit_sync()
    code, found = audit(emu, manifest, disk)
    assert code == 1
    missing = {m["job_key"]: m for m in found["found"]["in_flight_not_shown"]}
    assert missing[first["job_key"]]["job_id"] == typed_in and "404" in missing[first["job_key"]]["detail"]
    assert missing[second["job_key"]]["job_id"] is None and "no job" in missing[second["job_key"]]["detail"]
    stats = emu.stats()
    assert stats["requests"].get(GENERATE, 0) == 0 and stats["jobs"] == []
    assert stats["requests"]["GET /v2/jobs/{id}"] == 1  # only the job the list did not show was read
    assert jobs_per_key(stats) == {} and stats["credits"]["charged"] == 0


def test_reconcile_refuses_bad_input_with_one_line(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    no_key = run_cli("reconcile", str(manifest), env=cli_env(emu.base_url, key=None), cwd=tmp_path)
    assert no_key.returncode == 2 and "no API key: set APIFRAME_API_KEY" in no_key.stderr
    (tmp_path / "bad.yaml").write_text("jobs:\n  - duration: 6\n")
    bad = run_cli("reconcile", str(tmp_path / "bad.yaml"), env=cli_env(emu.base_url), cwd=tmp_path)
    assert bad.returncode == 2 and "bad.yaml" in bad.stderr and "Traceback" not in bad.stderr
    no_state = run_cli("reconcile", str(manifest), "--emulate", "--ledger", str(tmp_path / "x" / "ledger.parquet"),
                       env=cli_env(emu.base_url), cwd=tmp_path)
    assert no_state.returncode == 2 and "no emulator state at" in no_state.stderr
    assert emu.stats()["requests"] == {}


def test_reconcile_with_no_api_or_a_refused_key_says_so_at_once(emulator_thread, tmp_path):
    # Issue 20: an unreachable API was retried page by page for minutes; a refused key is configuration.
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    disk = tmp_path / "disk"
    first = run_cli(*run_args(manifest, disk), env=cli_env(emu.base_url), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    charged, paid = emu.stats()["credits"]["charged"], paid_requests(emu)
    ledger = str(disk / "ledger.parquet")
    gone = run_cli("reconcile", str(manifest), "--ledger", ledger, env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    assert gone.returncode == 4, gone.stdout + gone.stderr
    assert "could not connect to the API at http://127.0.0.1:9" in gone.stderr and "nothing was compared" in gone.stderr
    wrong = "afk_wrong_secret_for_reconcile"
    refused = run_cli("reconcile", str(manifest), "--ledger", ledger, env=cli_env(emu.base_url, key=wrong), cwd=tmp_path)
    assert refused.returncode == 2 and "the API refused the key (401)" in refused.stderr, refused.stderr
    assert wrong not in refused.stdout + refused.stderr and "Traceback" not in gone.stderr + refused.stderr
    # The books: nothing more was sent that costs, and the ledger still holds what the API charged.
    assert (paid_requests(emu), emu.stats()["credits"]["charged"]) == (paid, charged) and paid == 2
    assert read_ledger(ledger)["credits_charged"].sum() == charged > 0


def _submit_directly(base_url: str, prompt: str) -> None:
    """A job made outside videobatch (another tool, a colleague's script): the list shows it all the same."""
    import urllib.request

    body = json.dumps({"model": "grok-imagine-video", "prompt": prompt,
                       "grokImagineVideoParams": {"duration": 6, "aspect_ratio": "16:9"}}).encode()
    request = urllib.request.Request(base_url + "/v2/videos/generate", data=body, method="POST",
                                     headers={"X-API-Key": TEST_KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 202


def test_a_list_read_short_of_its_end_says_how_far_it_got_and_exits_3(emulator_thread, audit, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", [{"prompt": "the oldest job of the account",
                                                     "duration": 6, "aspect_ratio": "16:9"}])
    _submit_directly(emu.base_url, "the oldest job of the account")  # this manifest's job, on page 2
    for n in range(100):
        _submit_directly(emu.base_url, f"someone else's clip {n}")
    paid = paid_requests(emu)
    env = cli_env(emu.base_url)
    short = run_cli("reconcile", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), "--max-pages", "1",
                    env=env, cwd=tmp_path)
    assert short.returncode == 3, short.stdout + short.stderr
    assert "job list: 1 pages, 100 jobs back to" in short.stdout
    assert "NOT read to its end: stopped at --max-pages 1" in short.stdout and "not a proof" in short.stdout
    code, deeper = audit(emu, manifest, tmp_path, max_pages=2)
    assert code == 1 and deeper["job_list"] == {**deeper["job_list"], "pages": 2, "jobs": 101, "complete": True}
    assert len(deeper["found"]["unknown_paid_jobs"]) == 1  # the stranger's jobs are not this manifest's
    assert paid_requests(emu) == paid

    refused = emulator_thread(dialects=("list-4xx",))
    code, stopped = audit(refused, manifest, tmp_path)
    assert code == 3 and "the job list could not be read" in stopped["job_list"]["stopped"]


def test_the_emulated_ledger_is_reconciled_with_the_built_in_emulator(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    env = cli_env("http://127.0.0.1:9", key=None)  # no key, no real API: --emulate needs neither
    ledger = tmp_path / "emu" / "ledger.parquet"
    done = run_cli("run", str(manifest), "--emulate", "--emulator-time-scale", "0", "--ledger", str(ledger),
                   "--out", str(tmp_path / "emu"), "--poll-interval", "0.05", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    books = run_cli("reconcile", str(manifest), "--emulate", "--ledger", str(ledger), env=env, cwd=tmp_path)
    assert books.returncode == 0, books.stdout + books.stderr
    assert "matched 2 jobs to 2 of 2 rows" in books.stdout and "the books agree" in books.stdout


def test_jobs_of_rows_told_apart_only_by_their_local_images_are_reported_not_adopted(emulator_thread, audit, tmp_path):
    """Upload URLs cannot be rebuilt, so two rows that differ only in a local reference image match
    each other's jobs: adopting either way could swap their videos, so neither is adopted."""
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"id": "koi", "prompt": "a fish in ink", "reference_images": [str(REFS / "koi.png")]},
        {"id": "paper", "prompt": "a fish in ink", "reference_images": [str(REFS / "paper-texture.png")]}])
    disk = tmp_path / "disk"
    assert run_cli(*run_args(manifest, disk, *OUTSIDE), env=cli_env(emu.base_url), cwd=tmp_path).returncode == 0
    shutil.rmtree(disk)
    code, found = audit(emu, manifest, disk, adopt=True, refs_root=REFS)
    assert code == 1 and found["adopted"] == 0
    unknown = found["found"]["unknown_paid_jobs"]
    assert len(unknown) == 2 and all(job["adopt_into"] is None and "several rows" in job["note"] for job in unknown)
    assert all(set(job["rows"]) == {"koi", "paper"} and job["by_prompt_only"] for job in unknown)
    stats = emu.stats()
    assert stats["requests"][GENERATE] == 2  # the run's two; reconcile paid for nothing
    assert found["found"]["credits"]["api"] == stats["credits"]["charged"] - stats["credits"]["refunded"]
    assert found["found"]["credits"]["ledger"] == 0 and not (disk / "ledger.parquet").exists() or \
        read_ledger(disk / "ledger.parquet").height == 0


def test_adopt_waits_for_a_run_that_holds_the_ledger_but_an_audit_does_not(emulator_thread, audit, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    disk = tmp_path / "disk"
    assert run_cli(*run_args(manifest, disk), env=cli_env(emu.base_url), cwd=tmp_path).returncode == 0
    with Ledger.open(disk / "ledger.parquet", run_id="a-run-in-progress"):
        code, held = audit(emu, manifest, disk, adopt=True)
        assert code == 3 and "another videobatch run" in held["error"] and "nothing was adopted" in held["error"]
        code, audited = audit(emu, manifest, disk)
        assert code == 0 and audited["found"]["books_agree"]
    assert emu.stats()["requests"][GENERATE] == 1


def test_check_books_accepts_adopted_rows_yet_fails_a_row_paid_twice_or_a_job_held_twice(emulator_thread, tmp_path):
    """check_books judges adopted rows (no Idempotency-Key: the API never shows one) by their jobs'
    keys; that must not let a second paid job of a row, or one job held by two rows, pass."""
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    assert run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path).returncode == 0
    stats, rows = emu.stats(), read_ledger(tmp_path / "ledger.parquet").sort("job_key")
    adopted = rows.with_columns(idempotency_key=pl.lit(None, pl.String))  # as reconcile --adopt records them
    check_books(stats, rows, in_flight_ok=False)
    check_books(stats, adopted, in_flight_ok=False)

    first = next(job for job in stats["jobs"] if job["id"] == rows["job_id"][0])
    twice = copy.deepcopy(stats)  # the first row paid again under its next key, and the ledger counting it
    twice["jobs"].append({**first, "id": "job-paid-again", "idempotency_key": first["idempotency_key"].replace("-a1-", "-a2-")})
    twice["credits"]["charged"] += rows["credits_charged"][0]
    counted = adopted.with_columns(credits_charged=pl.col("credits_charged") * pl.Series([2, 1]))
    with pytest.raises(AssertionError):
        check_books(twice, counted, in_flight_ok=False)
    held_twice = adopted.with_columns(job_id=pl.lit(rows["job_id"][0]))  # both rows record the first row's job
    with pytest.raises(AssertionError):
        check_books(stats, held_twice, in_flight_ok=False)
    # With `retried`, two jobs of one version may not pass for the jobs of two versions of its id.
    versions = pl.concat([rows, rows.head(1).with_columns(
        job_key=pl.lit(rows["job_key"][0] + "@deadbeef"),
        idempotency_key=pl.lit(first["idempotency_key"].replace("-a1-", "-a9-")))])
    with pytest.raises(AssertionError):
        check_books(twice, versions, in_flight_ok=False, retried=True)


def test_adopt_into_a_read_only_ledger_folder_is_one_line_and_exit_3(emulator_thread, tmp_path):
    import subprocess

    emu = emulator_thread()
    env = cli_env(emu.base_url)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    disk = tmp_path / "disk"
    assert run_cli(*run_args(manifest, disk), env=env, cwd=tmp_path).returncode == 0
    subprocess.run(["mount", "--bind", str(disk), str(disk)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(disk)], check=True)
        done = run_cli("reconcile", str(manifest), "--ledger", str(disk / "ledger.parquet"), "--adopt",
                       env=env, cwd=tmp_path)
        audited = run_cli("reconcile", str(manifest), "--ledger", str(disk / "ledger.parquet"), env=env, cwd=tmp_path)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stdout + done.stderr
    lease = disk / "ledger.parquet" / "_videobatch" / "leases" / "m.json"  # --adopt's first write: the run lease
    assert done.stderr.strip().splitlines() == [
        f"videobatch: cannot write {lease}: not writable (Read-only file system); everything durable "
        "is kept: make the folder writable and run the same command again; nothing was adopted"]
    assert audited.returncode == 0, audited.stdout + audited.stderr  # an audit writes nothing
    assert emu.stats()["requests"][GENERATE] == 2
    check_books(emu.stats(), read_ledger(disk / "ledger.parquet"), in_flight_ok=False)
