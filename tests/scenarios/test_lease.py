"""The run lease and --shard, end to end: real `videobatch` processes against the emulator.

- a second run of a manifest while the first runs (past several lease renewals) is refused in one
  line naming the first's host and pid, submits nothing, and the first finishes its books;
- a run SIGKILLed leaves its lease: of a run on another machine, the next run is refused while it
  is live and takes over once it has expired; of a run on this machine (its pid gone), at once;
  either way the books end with one paid job per row;
- two shards of one manifest run at once and cover every row exactly once; shards run in turn
  into one ledger leave nothing for a whole run to do.

The ledger here is a local folder, so its lease is `ledger.parquet/_videobatch/leases/<batch>.json`
(the same code runs against S3 in tests/store/test_lease.py).

Covers: pipeline/store/lease.py pipeline/plan/shard.py pipeline/batch.py pipeline/cli.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.manifest.load import load_manifest
from pipeline.store.ledger import read_ledger
from tests.harness import (check_books, cli_env, jobs_per_key, ledger, prompts, run_args, run_cli, start_cli,
                           wait_for, write_manifest)

EXIT_STOPPED = 3


def steady(seconds: float) -> dict:
    """Emulator settings: every generation takes `seconds` of wall time, so a run lasts that long."""
    return {"time_scale": 1.0, "generation_seconds": {d: (seconds, seconds) for d in (6, 10, 15)}}


def lease_file(tmp: Path, name: str = "m") -> Path:
    return tmp / "ledger.parquet" / "_videobatch" / "leases" / f"{name}.json"


def finish(proc, timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


@pytest.mark.slow
def test_a_second_run_of_the_same_manifest_is_refused_naming_host_and_pid(emulator_thread, tmp_path):
    emu = emulator_thread(**steady(15.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    env = cli_env(emu.base_url, VIDEOBATCH_LEASE_TTL="2")  # renewed every 0.7 s: the run outlives it 3 times
    first = start_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    try:
        assert wait_for(lambda: len(emu.stats()["jobs"]) == 3, timeout=60)
        held = json.loads(lease_file(tmp_path).read_text())
        assert held["pid"] == first.pid and held["host"] == socket.gethostname()
        time.sleep(2.5)  # past one TTL since the lease was taken: only its renewals hold it now

        second = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        assert second.returncode == EXIT_STOPPED, second.stdout + second.stderr
        error = second.stderr.splitlines()
        assert len(error) == 1 and "Traceback" not in second.stdout + second.stderr, second.stderr
        assert error[0].startswith("videobatch: another videobatch run of m.yaml holds it: "
                                   f"pid {first.pid} on host {socket.gethostname()} (run ")
        assert "lease expires at" in error[0]
        assert emu.stats()["requests"].get("POST /v2/videos/generate", 0) == 3  # the second sent nothing
        assert first.poll() is None  # refused while the first ran, not after it
    finally:
        out = finish(first)
    assert first.returncode == 0, out
    assert not lease_file(tmp_path).exists()  # released at the end
    rows = ledger(tmp_path)
    assert rows.height == 3
    check_books(emu.stats(), rows, in_flight_ok=False)


def kill_mid_run(emu, manifest: Path, tmp_path: Path, env: dict, rows: int):
    """A run SIGKILLed once the emulator has made its `rows` jobs: its lease is left behind."""
    dead = start_cli(*run_args(manifest, tmp_path, "--checkpoint-every", "0.2"), env=env, cwd=tmp_path,
                     stdout=subprocess.DEVNULL)
    assert wait_for(lambda: len(emu.stats()["jobs"]) == rows, timeout=60)
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=10)
    assert json.loads(lease_file(tmp_path).read_text())["pid"] == dead.pid  # nobody released it
    return dead


def books_after(emu, tmp_path: Path) -> None:
    stats = emu.stats()
    assert {key: len(jobs) for key, jobs in jobs_per_key(stats).items()} == {k: 1 for k in ledger(tmp_path)["job_key"]}
    check_books(stats, ledger(tmp_path), in_flight_ok=False)  # one paid job per row, every credit, every byte


@pytest.mark.slow
def test_a_lease_of_a_machine_gone_holds_until_it_expires_then_the_next_run_takes_over(emulator_thread, tmp_path):
    emu = emulator_thread(**steady(4.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(4))
    env = cli_env(emu.base_url, VIDEOBATCH_LEASE_TTL="10")
    dead = kill_mid_run(emu, manifest, tmp_path, env, rows=4)
    # As if it had run on another machine, now gone: its pid says nothing here, only expiry frees it.
    left = lease_file(tmp_path)
    left.write_text(json.dumps({**json.loads(left.read_text()), "machine": "another-boot/pid:[1]"}))

    refused = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert refused.returncode == EXIT_STOPPED, refused.stdout + refused.stderr
    assert f"pid {dead.pid} on host {socket.gethostname()}" in refused.stderr
    assert emu.stats()["requests"].get("POST /v2/videos/generate", 0) == 4

    expires = left.stat().st_mtime + 10  # a local lease's clock is this machine's: its mtime + TTL
    time.sleep(max(0.0, expires - time.time()) + 0.5)
    taken = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert not left.exists()
    books_after(emu, tmp_path)


@pytest.mark.slow
def test_a_lease_of_a_run_killed_on_this_machine_is_taken_over_at_once(emulator_thread, tmp_path):
    """As the kernel drops the ledger's flock when its process dies: a crash (SIGKILL, OOM) does not
    keep the next run on this machine waiting 10 minutes."""
    emu = emulator_thread(**steady(3.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    env = cli_env(emu.base_url)  # the real TTL: 10 minutes
    kill_mid_run(emu, manifest, tmp_path, env, rows=3)
    taken = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert not lease_file(tmp_path).exists()
    books_after(emu, tmp_path)


@pytest.mark.slow
def test_two_shards_at_once_cover_every_row_once(emulator_thread, tmp_path):
    emu = emulator_thread(**steady(1.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(10))
    keys = set(load_manifest(manifest)["job_key"])
    env = cli_env(emu.base_url)
    # Each worker its own ledger folder: the local ledger of this version takes one writer (its flock).
    workers = [start_cli(*run_args(manifest, tmp_path / f"w{i}", "--shard", f"{i}/2"), env=env, cwd=tmp_path)
               for i in (1, 2)]
    outs = [finish(proc) for proc in workers]
    assert [proc.returncode for proc in workers] == [0, 0], outs
    parts = [read_ledger(tmp_path / f"w{i}" / "ledger.parquet") for i in (1, 2)]
    for i, (out, part) in enumerate(zip(outs, parts), start=1):
        assert f"shard {i}/2: {part.height} of 10 rows" in out
        assert 0 < part.height < 10
    rows = pl.concat(parts)
    assert sorted(rows["job_key"]) == sorted(keys)  # every row once, in one shard only
    check_books(emu.stats(), rows, in_flight_ok=False)  # one paid job per row, credits equal the emulator's


@pytest.mark.slow
def test_shards_in_turn_fill_one_ledger_and_a_whole_run_finds_nothing_to_do(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(8))
    env = cli_env(emu.base_url)
    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), "--shard", "2/2",
                   env=env, cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert plan.stdout.splitlines()[0].startswith("shard 2/2: ") and plan.stdout.splitlines()[0].endswith(" of 8 rows")
    done = [run_cli(*run_args(manifest, tmp_path, "--shard", s, "--summary-json", str(tmp_path / f"{i}.json")),
                    env=env, cwd=tmp_path) for i, s in enumerate(("1/2", "2/2"))]
    assert [d.returncode for d in done] == [0, 0], [d.stdout + d.stderr for d in done]
    shards = [json.loads((tmp_path / f"{i}.json").read_text())["shard"] for i in range(2)]
    assert [s["index"] for s in shards] == [1, 2] and sum(s["rows"] for s in shards) == 8
    assert plan.stdout.splitlines()[0] == f"shard 2/2: {shards[1]['rows']} of 8 rows"
    whole = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert whole.returncode == 0 and "8 already done" in whole.stdout, whole.stdout + whole.stderr
    assert emu.stats()["requests"].get("POST /v2/videos/generate", 0) == 8
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


@pytest.mark.slow
@pytest.mark.parametrize("signals", [1, 2])
def test_ctrl_c_releases_the_lease_and_the_next_run_needs_not_wait(emulator_thread, tmp_path, signals):
    """A first Ctrl-C stops cleanly and releases the lease on the way out; a second quits at once
    (os._exit) and releases it first. Either way the next run starts at once (TTL 10 min here)."""
    emu = emulator_thread(**steady(5.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    env = cli_env(emu.base_url)
    proc = start_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert wait_for(lambda: len(emu.stats()["jobs"]) == 3, timeout=60)
    assert lease_file(tmp_path).exists()
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)  # the second lands while the first is still stopping the run
    out = finish(proc, timeout=60)
    assert proc.returncode == EXIT_STOPPED and "Traceback" not in out, out
    assert ("exiting now" in out) == (signals == 2), out
    assert not lease_file(tmp_path).exists()

    rest = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


def test_reconcile_adopt_is_refused_while_a_run_holds_the_manifest(emulator_thread, tmp_path):
    from pipeline.store.lease import Lease, lease_folder  # the holder: this test process, as a run would

    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    env = cli_env(emu.base_url)
    holder = Lease(lease_folder(tmp_path / "ledger.parquet"), "m", run_id="holding", what="m.yaml")
    holder.acquire()
    args = ["reconcile", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), "--adopt", "--rpm", "0"]
    refused = run_cli(*args, env=env, cwd=tmp_path)
    assert refused.returncode == EXIT_STOPPED, refused.stdout + refused.stderr
    assert refused.stderr.count("\n") == 1 and f"pid {os.getpid()} on host {socket.gethostname()}" in refused.stderr
    assert refused.stderr.rstrip().endswith("; nothing was adopted")
    assert emu.stats()["requests"] == {}  # not even a read: refused before the API
    holder.release()
    assert run_cli(*args, env=env, cwd=tmp_path).returncode == 0
    assert not lease_file(tmp_path).exists()  # reconcile released its own
