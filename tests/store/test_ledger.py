"""The ledger keeps what was durable through torn writes, killed checkpoints and a second run."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.store.ledger import Ledger, LedgerCorrupt, LedgerLocked, read_ledger
from pipeline.store.runs import read_runs

NOW = datetime(2026, 11, 24, 1, 2, 3, tzinfo=timezone.utc)


def fill(ledger: Ledger, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        ledger.record(f"job-{i}", status="SUBMITTED", job_id=f"id-{i}", attempts=1, prompt=f"prompt {i}",
                      reference_images=[f"https://x.test/{i}.png"], submitted_at=NOW, credits_charged=10)


def die(ledger: Ledger) -> None:
    """What a killed process leaves: the files as they are, the lock gone with it, no checkpoint."""
    ledger._journal.close()
    ledger._release_lock()


def test_round_trip_of_every_column_type(tmp_path):
    path = tmp_path / "ledger.parquet"
    with Ledger.open(path, run_id="r1") as ledger:
        ledger.record("a", status="DOWNLOADED", duration=10, reference_images=["u1", "u2"], expired=False,
                      submitted_at=NOW, bytes=123, metadata='{"k": 1}')
        ledger.record("b", status="PENDING", prompt="ünïcode ✓")
        ledger.commit_sync()
    rows = read_ledger(path)
    a = rows.filter(rows["job_key"] == "a").row(0, named=True)
    assert (a["status"], a["duration"], a["reference_images"], a["submitted_at"], a["run_id"]) == (
        "DOWNLOADED", 10, ["u1", "u2"], NOW, "r1")
    assert rows.filter(rows["job_key"] == "b")["prompt"][0] == "ünïcode ✓"
    with pytest.raises(ValueError):
        Ledger.open(tmp_path / "other.parquet").record("x", no_such_column=1)


def test_torn_last_journal_line_loses_only_that_line(tmp_path):
    path = tmp_path / "ledger.parquet"
    ledger = Ledger.open(path, run_id="r")
    fill(ledger, 5)
    ledger.commit_sync()
    ledger.record("job-last", status="SUBMITTED", job_id="id-last")
    ledger.commit_sync()
    journal = ledger.journal_path.read_bytes()
    die(ledger)
    last_start = journal.rstrip(b"\n").rfind(b"\n") + 1
    for cut in range(last_start, len(journal)):  # every byte offset inside the last line
        ledger.journal_path.write_bytes(journal[:cut])
        rows = read_ledger(path)
        assert rows.height == 5 and "job-last" not in rows["job_key"].to_list()
    ledger.journal_path.write_bytes(journal[: len(journal) - 3])
    with Ledger.open(path, run_id="r2") as reopened:  # a writable open trims the tear and carries on
        assert len(reopened) == 5
        reopened.record("after", status="PENDING")
    assert sorted(read_ledger(path)["job_key"])[-1] == "job-4" and "after" in read_ledger(path)["job_key"].to_list()


def test_damage_before_intact_lines_is_corruption_not_a_guess(tmp_path):
    path = tmp_path / "ledger.parquet"
    ledger = Ledger.open(path)
    fill(ledger, 3)
    ledger.commit_sync()
    die(ledger)
    lines = ledger.journal_path.read_bytes().split(b"\n")
    ledger.journal_path.write_bytes(b"\n".join([lines[0], b"{garbage", *lines[1:]]))
    with pytest.raises(LedgerCorrupt, match="line 2"):
        read_ledger(path)
    with pytest.raises(LedgerCorrupt):
        Ledger.open(path, run_id="r2")
    assert b"{garbage" in ledger.journal_path.read_bytes()  # left for a human to look at


CHECKPOINT_LOOP = textwrap.dedent("""
    import sys
    from pipeline.store.ledger import Ledger
    ledger = Ledger.open(sys.argv[1], run_id="child")
    i = 0
    while True:
        for _ in range(200):
            ledger.record(f"job-{i}", status="SUBMITTED", job_id=f"id-{i}", prompt="p" * 200)
            i += 1
        ledger.commit_sync()
        print(i, flush=True)   # everything up to i is durable now
        ledger.checkpoint()
""")


def test_sigkill_during_checkpoints_loses_nothing_durable(tmp_path):
    path = tmp_path / "ledger.parquet"
    for delay in (0.3, 0.55, 0.8, 1.1):
        child = subprocess.Popen([sys.executable, "-c", CHECKPOINT_LOOP, str(path)], stdout=subprocess.PIPE,
                                 text=True, cwd=Path(__file__).resolve().parents[2])
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=10)
        durable = int(out.split()[-1]) if out.split() else 0
        rows = read_ledger(path)
        keys = set(rows["job_key"].to_list())
        assert {f"job-{i}" for i in range(durable)} <= keys
        with Ledger.open(path, run_id="check"):  # opens, cleans any half-written temp file
            pass
        assert not list(tmp_path.glob(".ledger.parquet.tmp-*")) and not list(path.glob(".tmp-*"))
        shutil.rmtree(path, ignore_errors=True)  # the ledger is a folder of parts
        (tmp_path / "ledger.journal.jsonl").unlink(missing_ok=True)
        (tmp_path / "ledger.highwater.json").unlink(missing_ok=True)  # a new ledger, not a lost one


def test_crash_between_rename_and_journal_reset_replays_nothing_twice(tmp_path):
    path = tmp_path / "ledger.parquet"
    ledger = Ledger.open(path, run_id="r")
    fill(ledger, 3)
    ledger.commit_sync()
    journal = ledger.journal_path.read_bytes()
    ledger.checkpoint()
    die(ledger)
    ledger.journal_path.write_bytes(journal)  # as if the process died right after the rename
    rows = read_ledger(path)
    assert rows.height == 3 and sorted(rows["job_key"]) == ["job-0", "job-1", "job-2"]


def test_group_commit_shares_fsyncs(tmp_path):
    async def many() -> Ledger:
        ledger = Ledger.open(tmp_path / "ledger.parquet", run_id="r")

        async def one(i: int) -> None:
            ledger.record(f"job-{i}", status="PENDING", attempts=1)
            await asyncio.sleep(0)
            await ledger.commit()

        await asyncio.gather(*(one(i) for i in range(300)))
        return ledger

    ledger = asyncio.run(many())
    assert ledger.stats["records"] == 300 and 1 <= ledger.stats["fsyncs"] <= 30
    assert read_ledger(ledger.path).height == 300  # durable before close
    ledger.close()


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pipeline.store.ledger import Ledger
    ledger = Ledger.open(sys.argv[1], run_id="holder-run")
    print("locked", flush=True)
    time.sleep(60)
""")


def test_second_open_names_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    path = tmp_path / "ledger.parquet"
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(LedgerLocked) as caught:
            Ledger.open(path, run_id="second")
        message = str(caught.value)
        assert f"pid {child.pid}" in message and os.uname().nodename in message and "since 20" in message
        assert read_ledger(path).height == 0  # readers never need the lock
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    with Ledger.open(path, run_id="after") as ledger:  # the dead run's lock file is still there
        ledger.record("x", status="PENDING")
    assert '"run_id": "after"' in (tmp_path / "ledger.lock").read_text()


def test_readonly_access_changes_no_file(tmp_path):
    path = tmp_path / "ledger.parquet"
    ledger = Ledger.open(path, run_id="r")
    fill(ledger, 4)
    ledger.checkpoint()
    fill(ledger, 2, start=4)
    ledger.commit_sync()
    die(ledger)
    with ledger.journal_path.open("ab") as journal:
        journal.write(b'{"s": 99, "k": "torn')  # a torn tail: a reader must leave it be
    def files() -> dict:  # every file, the ledger folder's parts included
        return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}

    before = files()
    assert read_ledger(path).height == 6
    assert read_runs(path).height == 0
    after = files()
    assert before == after


def test_rename_keeps_the_old_version(tmp_path):
    with Ledger.open(tmp_path / "ledger.parquet", run_id="r") as ledger:
        ledger.record("clip", status="DOWNLOADED", request_hash="aaaa", output_path="/v/clip.mp4")
        ledger.checkpoint()
        ledger.rename("clip", "clip@aaaa")
        ledger.record("clip", status="PENDING", request_hash="bbbb")
    rows = read_ledger(tmp_path / "ledger.parquet")
    old = rows.filter(rows["job_key"] == "clip@aaaa").row(0, named=True)
    new = rows.filter(rows["job_key"] == "clip").row(0, named=True)
    assert (old["status"], old["output_path"], new["status"], new["request_hash"]) == (
        "DOWNLOADED", "/v/clip.mp4", "PENDING", "bbbb")


def test_runs_table_appends(tmp_path):
    with Ledger.open(tmp_path / "ledger.parquet", run_id="r") as ledger:
        ledger.append_run({"run_id": "r1", "exit_code": 0, "started_at": NOW, "credits_charged": 10})
        ledger.append_run({"run_id": "r2", "exit_code": 3, "started_at": NOW, "credits_charged": 5})
    runs = read_runs(tmp_path / "ledger.parquet")
    assert runs["run_id"].to_list() == ["r1", "r2"] and runs["credits_charged"].sum() == 15


def test_a_reader_dropped_unclosed_lets_go_of_its_parts_at_once(tmp_path):
    """read_ledger never closes its read-only open: its pinned parts are closed as it is dropped
    (no reference cycle waits for the garbage collector)."""
    path = tmp_path / "ledger.parquet"
    with Ledger.open(path, run_id="r1") as ledger:
        fill(ledger, 3)
        ledger.checkpoint()
        fill(ledger, 2, start=3)
        ledger.checkpoint()
    before = len(os.listdir("/proc/self/fd"))
    gc.disable()
    try:
        for _ in range(5):
            assert read_ledger(path).height == 5
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        gc.enable()
