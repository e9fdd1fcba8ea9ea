"""Our own storage failing under a real run, over real sockets: the ledger's disk (a real tmpfs)
fills while jobs are being paid for, the ledger's folder is read-only, or a file of the ledger is
damaged. Each time: exit 3, one line naming the file and what to do, no traceback, and the rerun
pays for nothing twice.

The videos folder (--out) stays off the small disk, on the test's own folder: the ledger, its
journal, parts, runs table and run log are what fill up, so the failure is always ours to stop on
(a video that cannot be saved is another path: retried, then left for the next run to download).

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/account.py pipeline/store/atomic.py pipeline/store/highwater.py pipeline/store/lock.py pipeline/store/parts.py pipeline/store/runs.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from pipeline.store.ledger import read_ledger
from pipeline.store.location import parse
from pipeline.store.table import LedgerTable
from tests.harness import (
    Receiver, SmallDisk, check_books, cli_env, prompts, run_cli, start_cli, wait_for, write_manifest,
)

ROWS = 10


def run_on(disk: SmallDisk, manifest, tmp, *more: str) -> list[str]:
    """`run` with the ledger (and so its run log) on the small disk, the videos beside the test."""
    return ["run", str(manifest), "--ledger", str(disk.path / "ledger.parquet"), "--out", str(tmp / "out"),
            "--rpm", "0", "--poll-interval", "0.05", "--progress-interval", "0.5", "--checkpoint-every", "0.3",
            *more]


def downloaded(disk: SmallDisk) -> int:
    """Rows the running batch has downloaded, read as status would (read-only, while it merges)."""
    try:
        rows = read_ledger(disk.path / "ledger.parquet")
    except FileNotFoundError:
        return 0
    return rows.filter(rows["status"] == "DOWNLOADED").height


def no_traceback(done) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_disk_full_mid_run_stops_cleanly_and_the_rerun_pays_once(emulator_thread, tmp_path):
    emu = emulator_thread(time_scale=0.03)  # generations of 0.9-4.5 s: the disk fills mid-run
    manifest = write_manifest(tmp_path / "m.yaml", prompts(ROWS, "full"))
    with SmallDisk(tmp_path / "disk", "2m") as disk, Receiver() as receiver:
        summary, metrics = tmp_path / "summary.json", tmp_path / "run.prom"
        args = run_on(disk, manifest, tmp_path, "--summary-json", str(summary), "--metrics-file", str(metrics),
                      "--notify", receiver.url("/hook"), "--notify-retry-delay", "0.05")
        proc = start_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
        assert wait_for(lambda: downloaded(disk) >= 3, timeout=60), proc.communicate(timeout=60)[0]
        disk.fill()  # while the other rows generate: their journal lines or the next part meet ENOSPC
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 3, out
        assert "Traceback" not in out
        stop = [line for line in out.splitlines() if "disk full" in line and "ended with exit code 3" in line]
        assert len(stop) == 1 and str(disk.path) in stop[0] and "No space left on device" in stop[0], out
        assert "free space there and run the same command again" in stop[0]
        # The summary, metrics and notification are written where they can be (off the full disk).
        written = json.loads(summary.read_text())
        assert written["exit_code"] == 3 and "disk full" in written["stop_reason"]
        assert re.search(r"^videobatch_last_run_exit_code\{[^}]*\} 3$", metrics.read_text(), re.M), metrics.read_text()
        assert len(receiver.received) == 1 and "disk full" in json.dumps(receiver.received[0])
        kept = read_ledger(disk.path / "ledger.parquet")
        assert kept.filter(kept["status"] == "DOWNLOADED").height >= 3  # nothing durable was dropped

        disk.free()
        again = run_cli(*run_on(disk, manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        rows = read_ledger(disk.path / "ledger.parquet")
    assert rows.height == ROWS
    check_books(emu.stats(), rows, in_flight_ok=False)  # one paid job per row, every credit in the ledger


def test_a_read_only_ledger_folder_is_one_line_and_exit_3(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3, "ro"))
    with SmallDisk(tmp_path / "disk", "2m") as disk:
        first = run_cli(*run_on(disk, manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        write_manifest(manifest, prompts(5, "ro"))
        subprocess.run(["mount", "-o", "remount,ro", str(disk.path)], check=True)
        done = run_cli(*run_on(disk, manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        no_traceback(done)
        assert done.returncode == 3
        lease = disk.path / "ledger.parquet" / "_videobatch" / "leases" / "m.json"  # the run's first write
        assert done.stderr.strip().splitlines() == [
            f"videobatch: cannot write {lease}: not writable (Read-only file system); "
            "everything durable is kept: make the folder writable and run the same command again"]
        assert len(emu.stats()["jobs"]) == 3  # refused before anything was sent
        status = run_cli("status", "--ledger", str(disk.path / "ledger.parquet"), env=cli_env(emu.base_url),
                         cwd=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr  # reading needs no write
        subprocess.run(["mount", "-o", "remount,rw", str(disk.path)], check=True)
        done = run_cli(*run_on(disk, manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        check_books(emu.stats(), read_ledger(disk.path / "ledger.parquet"), in_flight_ok=False)


def _a_data_file(ledger_path) -> Path:
    table = LedgerTable(parse(str(ledger_path)))
    assert table.load()
    return Path(table.files()[0])


def lose_a_part(ledger_path) -> str:
    victim = _a_data_file(ledger_path)
    victim.unlink()
    return f"{victim} is missing"


def cut_the_journal(ledger_path) -> str:
    journal = ledger_path.with_name("ledger.journal.jsonl")
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join([lines[0], *lines[2:]]))
    return f"{journal}: seq"


def damage_the_runs_table(ledger_path) -> str:
    runs = ledger_path.with_name("runs.parquet")
    runs.write_bytes(b"PAR1 not a table PAR1")
    return f"{runs} cannot be read"


def damage_a_part_inside(ledger_path) -> str:
    """Bytes changed inside a part, its size and footer magic intact: the open's checks pass, and
    only reading its rows finds the damage (bit rot, a bad sector)."""
    victim = _a_data_file(ledger_path)
    data = bytearray(victim.read_bytes())
    data[4:len(data) // 2] = b"A" * (len(data) // 2 - 4)
    victim.write_bytes(bytes(data))
    return f"{victim} is damaged"


def test_every_command_names_a_damaged_ledger_file_in_one_line(emulator_thread, tmp_path):
    """A lost part before every command; a journal cut mid-file and a damaged runs table before a
    reader and a run (each CLI start costs a second)."""
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(4, "dmg"))
    ledger_path = tmp_path / "books" / "ledger.parquet"
    env = cli_env(emu.base_url)
    first = run_cli("run", str(manifest), "--ledger", str(ledger_path), "--out", str(tmp_path / "out"), "--rpm", "0",
                    "--poll-interval", "0.05", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    write_manifest(manifest, prompts(6, "dmg"))
    # Lines in the journal past the last part, as a run killed mid-way leaves them.
    run = start_cli("run", str(manifest), "--ledger", str(ledger_path), "--out", str(tmp_path / "out"), "--rpm", "0",
                    "--checkpoint-every", "3600", env=env, cwd=tmp_path)
    # At least three lines, so that cutting the second leaves a gap inside the journal (a cut last line
    # is a torn tail, which a kill leaves too, and is not damage): a loaded machine was seen killing at two.
    journal = ledger_path.with_name("ledger.journal.jsonl")
    assert wait_for(lambda: journal.exists() and journal.read_bytes().count(b"\n") >= 3)
    run.kill()
    run.wait(timeout=10)
    jobs = len(emu.stats()["jobs"])
    for damage, names in [(lose_a_part, ["status", "report", "review", "export", "plan", "run"]),
                          (cut_the_journal, ["status", "run"]), (damage_the_runs_table, ["plan", "run"]),
                          (damage_a_part_inside, ["status", "report", "export", "plan", "run", "reconcile"])]:
        copy = tmp_path / damage.__name__
        shutil.copytree(ledger_path.parent, copy)
        needle = damage(copy / "ledger.parquet")
        args = ["--ledger", str(copy / "ledger.parquet")]
        commands = {"status": ["status", *args], "report": ["report", *args],
                    "review": ["review", *args, "--port", "0"],
                    "export": ["export", *args, "--approved", str(tmp_path / "approved")],
                    "plan": ["plan", str(manifest), *args], "run": ["run", str(manifest), *args, "--rpm", "0"],
                    "reconcile": ["reconcile", str(manifest), *args, "--adopt"]}
        for name in names:
            done = run_cli(*commands[name], env=env, cwd=tmp_path, timeout=60)
            no_traceback(done)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 3, (damage.__name__, name, done.stdout, done.stderr)
            assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("videobatch: "), (name, done.stderr)
    stats = emu.stats()
    assert len(stats["jobs"]) == jobs  # the damaged ledgers sent nothing
    rerun = run_cli("run", str(manifest), "--ledger", str(ledger_path), "--out", str(tmp_path / "out"), "--rpm", "0",
                    "--poll-interval", "0.05", env=env, cwd=tmp_path)  # the undamaged books finish
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    check_books(emu.stats(), read_ledger(ledger_path), in_flight_ok=False)


def test_a_lock_deleted_mid_run_stops_it_naming_the_lock(emulator_thread, tmp_path):
    emu = emulator_thread(time_scale=0.03)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(6, "lock"))
    ledger_path = tmp_path / "ledger.parquet"
    args = ["run", str(manifest), "--ledger", str(ledger_path), "--out", str(tmp_path / "out"), "--rpm", "0",
            "--poll-interval", "0.05", "--checkpoint-every", "0.3"]
    proc = start_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
    assert wait_for(lambda: len(emu.stats()["jobs"]) == 6, timeout=60)
    lock = tmp_path / "ledger.lock"
    lock.unlink()  # another run could now lock a new file of that name and write the same ledger
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3 and "Traceback" not in out, out
    stop = [line for line in out.splitlines() if "ended with exit code 3" in line]
    assert len(stop) == 1 and f"the lock file {lock} was deleted or replaced" in stop[0], out
    again = run_cli(*args, env=cli_env(emu.base_url), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    check_books(emu.stats(), read_ledger(ledger_path), in_flight_ok=False)


def test_a_full_disk_when_the_owner_file_is_written_stops_before_spending(emulator_thread, tmp_path):
    """The owner file is written before the first paid request; on a disk with room for the lock
    and the high-water file only, that write fails: exit 3 naming it, nothing sent, no traceback."""
    import os

    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2, "owner"))
    with SmallDisk(tmp_path / "disk", "256k") as disk:
        disk.fill()
        # Three pages: the run lease's file (tmpfs folders take none), the lock, the high-water file.
        os.truncate(disk.filler, max(0, disk.filler.stat().st_size - 3 * 4096))
        done = run_cli(*run_on(disk, manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        no_traceback(done)
        assert done.returncode == 3, done.stdout + done.stderr
        assert f"cannot write {disk.path / 'ledger.account.json'}: disk full" in done.stdout, done.stdout
        assert emu.stats()["jobs"] == []  # refused before any paid request
        disk.free()
        again = run_cli(*run_on(disk, manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        check_books(emu.stats(), read_ledger(disk.path / "ledger.parquet"), in_flight_ok=False)
