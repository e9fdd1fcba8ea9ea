"""What a run shows while it works, piped (cron's log), end to end (issue 20, point 4): the real
`videobatch run` in a child process against the emulator. Each line has the total this run must
do, done, failed, in flight, credits against the plan and an ETA, unknown until a generation has
been seen to finish; the last line's figures are the run's summary; rows already done are not
counted as work.

Covers: pipeline/run/progress.py pipeline/run/events.py
"""

from __future__ import annotations

import json
import re
import signal

from pipeline.emulator import Faults
from tests.harness import (cli_env, jobs_per_key, ledger, prompts, run_args, run_cli, start_cli, wait_for,
                           write_manifest)

LINE = re.compile(r"^progress: (\d+)/(\d+) done \((\d+)%\), (\d+) failed, (\d+) in flight, credits (\d+)/(\d+)"
                  r"(?:, ETA (unknown|any moment|\d+s|\d+m\d\ds))?$")


def progress_lines(stdout: str) -> list[re.Match]:
    lines = [line for line in stdout.splitlines() if line.startswith("progress: ")]
    matched = [LINE.match(line) for line in lines]
    assert all(matched), [line for line, m in zip(lines, matched) if not m]
    return matched


def test_piped_progress_has_a_total_an_eta_and_ends_on_the_summary(emulator_thread, tmp_path):
    # 1.5-7.5 s generations; a quarter fail for good (no retries): done and failed both move.
    emu = emulator_thread(time_scale=0.05, faults=Faults(seed=11, fail_generation=0.25))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(12))
    summary = tmp_path / "summary.json"
    env = cli_env(emu.base_url)
    done = run_cli(*run_args(manifest, tmp_path, "--retries", "0", "--progress-interval", "0.2",
                             "--summary-json", str(summary)), env=env, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    document = json.loads(summary.read_text())
    lines = progress_lines(done.stdout)
    assert len(lines) >= 3
    first, last = lines[0], lines[-1]
    assert all(int(m[2]) == 12 for m in lines)  # the total is known from the first line
    assert first[8] == "unknown"  # nothing has finished yet: no invented ETA
    assert any(m[8] not in (None, "unknown") for m in lines)  # then one from the times seen
    assert last[8] is None  # the last line has nothing left to time
    rows = document["rows"]
    assert 0 < rows["failed"] < 12  # the seed fails a few: both figures are tested
    assert (int(last[1]), int(last[4])) == (rows["downloaded"], rows["failed"])
    assert int(last[1]) + int(last[4]) == int(last[2]) == rows["planned"] - rows["skipped"] == 12
    assert int(last[3]) == 100 * rows["downloaded"] // 12
    assert (int(last[6]), int(last[7])) == (document["credits"]["charged"], document["credits"]["estimated"])
    assert int(last[5]) == 0
    done_so_far = [int(m[1]) for m in lines]
    assert done_so_far == sorted(done_so_far)  # done only grows
    stats, book = emu.stats(), ledger(tmp_path)
    assert book["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"]
    assert len(stats["jobs"]) == book.height == 12

    # Two rows more: the rows already done (and those failed, left alone) are not this run's work.
    emu.configure(faults={"fail_generation": 0.0}, time_scale=0.0)
    write_manifest(manifest, prompts(12) + prompts(2, prefix="dawn"))
    again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert again.returncode in (0, 1), again.stdout + again.stderr
    assert f"{rows['downloaded']} already done" in again.stdout
    last = progress_lines(again.stdout)[-1]
    assert last.group(0) == "progress: 2/2 done (100%), 0 failed, 0 in flight, credits 25/25"  # 10 + 15
    stats, book = emu.stats(), ledger(tmp_path)
    assert book["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"]
    assert all(len(jobs) == 1 for jobs in jobs_per_key(stats).values()) and len(stats["jobs"]) == book.height == 14


def test_jobs_a_killed_run_left_uncharged_count_in_the_credits_against_the_plan(emulator_thread, tmp_path):
    # A run killed after its submits, before it read what they cost: the next run follows those
    # jobs, and their charge lands in its figures, so they belong in its plan ("credits 50/0" else).
    emu = emulator_thread(time_scale=0.05)  # 1.5-7.5 s generations
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    env = cli_env(emu.base_url)
    first = start_cli(*run_args(manifest, tmp_path, "--poll-interval", "60"), env=env, cwd=tmp_path)
    try:
        journal = tmp_path / "ledger.journal.jsonl"  # each job id durably recorded, none read since
        assert wait_for(lambda: journal.exists() and journal.read_text().count('"job_id":"') >= 3, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    planned = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), env=env, cwd=tmp_path)
    tracked = [line for line in planned.stdout.splitlines() if line.endswith(" track")]
    assert len(tracked) == 3, planned.stdout  # the three jobs, followed, not submitted again
    again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    stats, book = emu.stats(), ledger(tmp_path)
    charged = stats["credits"]["charged"]
    last = progress_lines(again.stdout)[-1]
    assert last.group(0) == f"progress: 3/3 done (100%), 0 failed, 0 in flight, credits {charged}/{charged}"
    assert len(stats["jobs"]) == book.height == 3 and all(len(jobs) == 1 for jobs in jobs_per_key(stats).values())
    assert book["credits_charged"].sum() == charged - stats["credits"]["refunded"] == int(book["credits_estimated"].sum())
