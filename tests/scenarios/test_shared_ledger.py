"""One ledger in an object store, written by two machines at once: two `videobatch run` processes
of two manifests, each with its own state folder, against a real S3 protocol (moto's server, in its
own process) and the emulator; then the readers on the remote ledger, from a third state folder.

Covers: pipeline/store/state.py pipeline/store/runs.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from pipeline.store.ledger import read_ledger
from tests.harness import check_books, cli_env, prompts, run_cli, start_cli, wait_for, write_manifest

pytestmark = pytest.mark.slow


def _run(manifest: Path, ledger: str, state: Path, out: Path, *more: str) -> list[str]:
    return ["run", str(manifest), "--ledger", ledger, "--state-dir", str(state), "--out", str(out),
            "--rpm", "0", "--poll-interval", "0.05", "--checkpoint-every", "0.2", *more]


def _everything_written(objects: dict[str, bytes], *folders: Path) -> bytes:
    """Every byte under `folders` (the state folders, the videos) and in the bucket's objects."""
    found = b"".join(objects.values())
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                found += path.read_bytes()
    return found


def test_two_machines_write_one_remote_ledger_at_once_and_lose_no_update(emulator_thread, s3, tmp_path):
    emu = emulator_thread(time_scale=0.05)  # 1.5-7.5 s generations: the two runs overlap, checkpoint after checkpoint
    bucket = s3.bucket()
    url = f"s3://{bucket}/team/ledger"
    env = cli_env(emu.base_url, **s3.env)
    first = write_manifest(tmp_path / "alpha.yaml", prompts(12, "alpha"))
    second = write_manifest(tmp_path / "beta.yaml", prompts(12, "beta"))
    one = start_cli(*_run(first, url, tmp_path / "machine-1", tmp_path / "out-1"), env=env, cwd=tmp_path)
    two = start_cli(*_run(second, url, tmp_path / "machine-2", tmp_path / "out-2"), env=env, cwd=tmp_path)
    out_one, _ = one.communicate(timeout=240)
    out_two, _ = two.communicate(timeout=240)
    assert one.returncode == 0, out_one
    assert two.returncode == 0, out_two
    rows = read_ledger(tmp_path / "machine-1" / "ledger")  # the state folder names the table
    assert rows.height == 24 and rows["job_key"].n_unique() == 24  # one current row per job, none lost
    assert set(rows["batch"] if "batch" in rows.columns else []) <= {"alpha.yaml", "beta.yaml"}
    check_books(emu.stats(), rows, in_flight_ok=False)
    # The two runs wrote at the same time: each committed while the other was committing too.
    history = DeltaTable(url).history()
    table = pl.read_delta(url)
    commits: dict[str, list[int]] = {}  # each journal's commit times
    for commit in history:
        said = json.loads(commit.get("videobatch") or "{}")
        if "journal" in said:
            commits.setdefault(said["journal"], []).append(commit["timestamp"])
    assert len(commits) == 2, history
    (a, b) = commits.values()
    assert min(a) < max(b) and min(b) < max(a), commits  # their commits overlap in time, not one run after the other
    assert table.height == 24 and set(table["batch"]) == {"alpha.yaml", "beta.yaml"}
    assert table["credits_charged"].sum() == emu.stats()["credits"]["charged"]
    # No credential anywhere we wrote: the state folders, the videos, the bucket's objects.
    written = _everything_written(s3.objects(bucket), tmp_path / "machine-1", tmp_path / "machine-2",
                                  tmp_path / "out-1", tmp_path / "out-2")
    assert s3.env["AWS_SECRET_ACCESS_KEY"].encode() not in written
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in out_one + out_two


def test_the_readers_work_on_a_remote_ledger_from_another_machine(emulator_thread, s3, tmp_path):
    emu = emulator_thread()
    url = f"s3://{s3.bucket()}/ledger"
    env = cli_env(emu.base_url, **s3.env)
    manifest = write_manifest(tmp_path / "night.yaml", prompts(5, "night"))
    done = run_cli(*_run(manifest, url, tmp_path / "writer", tmp_path / "out"), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ledger: {url}" in done.stdout and f"--ledger {url} --state-dir" in done.stdout
    reader = ["--ledger", url, "--state-dir", str(tmp_path / "reader")]  # another machine: a state folder of its own
    status = run_cli("status", *reader, "--json", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    figures = json.loads(status.stdout)
    assert figures["rows"] == 5 and figures["credits"]["charged"] == emu.stats()["credits"]["charged"], figures
    assert figures["last_run"]["manifest"].endswith("night.yaml")  # the runs table is in the store, not on the writer
    report = run_cli("report", *reader, "--html", str(tmp_path / "report.html"), env=env, cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    assert (tmp_path / "report.html").read_text().count("<video") == 5
    plan = run_cli("plan", str(manifest), *reader, env=env, cwd=tmp_path)
    assert plan.returncode == 0 and "to submit: 0 new" in plan.stdout, plan.stdout + plan.stderr
    again = run_cli(*_run(manifest, url, tmp_path / "reader", tmp_path / "out"), env=env, cwd=tmp_path)
    assert again.returncode == 0 and len(emu.stats()["jobs"]) == 5, again.stdout  # nothing paid twice
    # A state folder serves one ledger: another URL with it is refused in one line.
    other = run_cli("status", "--ledger", f"s3://{s3.bucket()}/elsewhere", "--state-dir", str(tmp_path / "reader"),
                    env=env, cwd=tmp_path)
    assert other.returncode == 2 and other.stderr.count("\n") == 1 and "give each ledger its own --state-dir" in other.stderr


def test_a_store_out_of_reach_is_one_line_and_nothing_is_sent(emulator_thread, s3, tmp_path):
    emu = emulator_thread()
    env = cli_env(emu.base_url, **{**s3.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})  # nothing listens there
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2, "far"))
    done = run_cli(*_run(manifest, f"s3://{s3.bucket()}/ledger", tmp_path / "state", tmp_path / "out"),
                   env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 3, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "Traceback" not in said
    assert "could not take the run lease s3://" in said  # the lease is the first thing a run asks of the store
    assert emu.stats()["jobs"] == []


def test_a_machine_lost_mid_run_loses_only_its_journal_and_nothing_is_paid_twice(emulator_thread, s3, tmp_path):
    """The run's machine dies with jobs submitted but not yet in the table (no checkpoint yet): its
    state folder is gone with it. Another machine runs the manifest: the same deterministic
    Idempotency-Keys get the same jobs back from the API (its 24 h replay), so none is paid twice."""
    emu = emulator_thread(time_scale=0.2)  # 6-30 s generations: the first machine dies with every job in flight
    url = f"s3://{s3.bucket()}/ledger"
    env = cli_env(emu.base_url, **s3.env)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(6, "lost"))
    dying = start_cli(*_run(manifest, url, tmp_path / "machine-1", tmp_path / "out"), "--checkpoint-every", "3600",
                      env=env, cwd=tmp_path)
    assert wait_for(lambda: len(emu.stats()["jobs"]) == 6, timeout=60)
    dying.kill()
    dying.wait(timeout=10)
    shutil.rmtree(tmp_path / "machine-1")  # the machine and its journal are gone
    emu.configure(time_scale=0.0)
    done = run_cli(*_run(manifest, url, tmp_path / "machine-2", tmp_path / "out"), env=env, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(emu.stats()["jobs"]) == 6  # the API handed back each job its key had made
    check_books(emu.stats(), read_ledger(tmp_path / "machine-2" / "ledger"), in_flight_ok=False)
