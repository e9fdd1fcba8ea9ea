"""Failures of ours end cleanly, never in a traceback: an absurd --deadline, a reader that leaves
early (`| head -1`), a signal during start-up, a submit whose answer never came, a run with nothing
to do under a deadline. The real command in child processes, the emulator over loopback.

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/deadline.py pipeline/run/progress.py pipeline/run/outcome.py pipeline/store/runs.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from pipeline.api.client import ApiClient, TransientError
from pipeline.api.retry import RetryPolicy
from pipeline.emulator import Faults
from pipeline.store.runs import read_runs
from tests.harness import (
    TEST_KEY, check_books, cli_command, cli_env, free_port, ledger, prompts, run_args, run_cli, start_cli,
    wait_for, write_manifest,
)

NOWHERE = cli_env(f"http://127.0.0.1:{free_port()}")  # refused before any request


# --- --deadline --------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["99999999h", "99999999999999999999999s"])  # the rest: tests/run/test_deadline.py
def test_an_absurd_deadline_is_bad_input_in_one_line(tmp_path, given):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    done = run_cli(*run_args(manifest, tmp_path), f"--deadline={given}", env=NOWHERE, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Error:" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"videobatch: --deadline '{given}': ") and "07:00" in lines[0] and "6h" in lines[0]
    assert not (tmp_path / "ledger.parquet").exists()


def test_a_run_with_nothing_to_do_under_a_deadline_exits_0(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    env = cli_env(emu.base_url)
    first = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    # A deadline a second away: before, its stop landed on the finished run and made it exit 3.
    again = run_cli(*run_args(manifest, tmp_path, "--deadline", "1s"), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 skipped (already done)" in again.stdout and "deadline" not in again.stdout
    assert read_runs(tmp_path / "ledger.parquet")["exit_code"].to_list() == [0, 0]
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


# --- a reader that leaves early ----------------------------------------------------------------


@pytest.mark.parametrize("closed", ["stdout", "stdout and stderr"])
def test_a_reader_that_leaves_early_ends_no_run(emulator_thread, tmp_path, closed):
    emu = emulator_thread(time_scale=0.02)  # 0.6-3 s generations: progress is printed after the reader left
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    proc = subprocess.Popen(cli_command(*run_args(manifest, tmp_path, "--progress-interval", "0.05")),
                            env=cli_env(emu.base_url), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # `| head -1`
    assert first.startswith("run "), first
    proc.stdout.close()
    if closed == "stdout and stderr":
        proc.stderr.close()
        errors = ""
    else:
        errors = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors
    runs = read_runs(tmp_path / "ledger.parquet")
    assert runs.height == 1 and runs["exit_code"][0] == 0 and runs["rows_finished"][0] == 3
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


# --- signals during start-up -------------------------------------------------------------------


def handles(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has its own handler for `sig` (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (sig - 1)))


def ends_cleanly_on(proc: subprocess.Popen, sig: signal.Signals) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert f"{sig.name}: exiting now; run the same command again to continue" in out
    return out


def finish_and_check(emu, manifest: Path, tmp_path: Path) -> None:
    """The ledger opens cleanly after the stop, and the rerun pays one job per row."""
    rest = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_starts_exits_3(emulator_thread, tmp_path, sig):
    # The handler is in place from the first line of main(), before the imports and the parser
    # (before, it came ~0.8 s later: a Ctrl-C there was a KeyboardInterrupt traceback, a SIGTERM
    # killed the process with -15). The signal is sent the moment it is: still importing.
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    proc = start_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert wait_for(lambda: handles(proc.pid, signal.SIGTERM), timeout=20, interval=0.001)
    out = ends_cleanly_on(proc, sig)
    assert "on http" not in out  # stopped before the run began
    assert emu.stats()["requests"] == {} and not (tmp_path / "ledger.parquet").exists()


def test_a_signal_while_the_manifest_loads_exits_3(tmp_path):
    manifest = tmp_path / "m.yaml"
    os.mkfifo(manifest)  # the loader blocks reading it: the signal lands in load_manifest for sure
    proc = start_cli(*run_args(manifest, tmp_path), env=NOWHERE, cwd=tmp_path)
    with open(manifest, "w"):  # opens once the child opened it to read
        ends_cleanly_on(proc, signal.SIGINT)
    assert not (tmp_path / "ledger.parquet").exists()


def test_a_signal_while_the_emulator_starts_exits_3_and_the_ledger_opens_after(tmp_path):
    # With --emulate the emulator reads its memory beside the ledger once the ledger is open and
    # the plan made; as a FIFO it holds start-up there, before any runner exists.
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    memory = tmp_path / "emulator-state.jsonl"
    os.mkfifo(memory)
    args = [*run_args(manifest, tmp_path), "--emulate", "--emulator-time-scale", "0"]
    env = cli_env(f"http://127.0.0.1:{free_port()}")
    proc = start_cli(*args, env=env, cwd=tmp_path)
    with open(memory, "w"):
        out = ends_cleanly_on(proc, signal.SIGTERM)
    assert "on emulator: 3 jobs" in out  # the ledger was open and the plan made
    memory.unlink()
    rest = run_cli(*args, env=env, cwd=tmp_path)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    rows = ledger(tmp_path)
    assert rows.height == 3 and set(rows["status"]) == {"DOWNLOADED"}
    assert read_runs(tmp_path / "ledger.parquet")["exit_code"].to_list() == [0]


# --- a submit that left without an answer ------------------------------------------------------


async def test_the_client_says_whether_a_failed_call_may_have_reached_the_api(emulator):
    emu = await emulator(faults=Faults(slow_response=1.0, slow_seconds=1.0))
    quick = RetryPolicy(attempts=2, base=0.01, jitter=False)
    async with ApiClient(emu.base_url, TEST_KEY, retry=quick, timeout=0.2) as client:
        with pytest.raises(TransientError, match="no answer in time") as timed_out:
            await client.submit(b'{"model":"grok-imagine-video"}', "vb-k-a1-0123456789abcdef")
    assert timed_out.value.reached  # it left; the answer did not come back
    async with ApiClient(f"http://127.0.0.1:{free_port()}", TEST_KEY, retry=quick) as client:
        with pytest.raises(TransientError, match="connection failed") as refused:
            await client.submit(b'{"model":"grok-imagine-video"}', "vb-k-a1-0123456789abcdef")
    assert not refused.value.reached  # no connection: nothing left this machine


def test_a_submit_stopped_while_its_answer_was_awaited_is_said_sent_not_unsubmitted(emulator_thread, tmp_path):
    # Seed 15 draws 0.97 then 0.01: GET /v2/me answers at once, the submit waits 3 s in the API.
    emu = emulator_thread(faults=Faults(seed=15, slow_response=0.5, slow_seconds=3.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    summary_path = tmp_path / "summary.json"
    proc = start_cli(*run_args(manifest, tmp_path, "--summary-json", str(summary_path)),
                     env=cli_env(emu.base_url), cwd=tmp_path)
    assert wait_for(lambda: emu.stats()["requests"].get("POST /v2/videos/generate", 0) == 1, timeout=20)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, out
    summary = json.loads(summary_path.read_text())
    [row] = summary["unfinished"]
    assert row["status"] == "PENDING"
    assert row["reason"].startswith("sent, answer not received (the next run asks again under the same "
                                    "Idempotency-Key)"), row
    assert "not submitted" not in out and "UNFINISHED" in out and "sent, answer not received" in out
    # Whether the API made the job or not, the rerun asks under the journaled key: one job, no second.
    [intent] = ledger(tmp_path)["idempotency_key"].to_list()
    emu.configure(faults={"slow_response": 0.0})
    finish_and_check(emu, manifest, tmp_path)
    assert [job["idempotency_key"] for job in emu.stats()["jobs"]] == [intent]
