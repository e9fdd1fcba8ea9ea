"""The crash test under every dialect at once: 200 rows, SIGKILL at random moments, then reruns.

What must hold at the end, judged by the emulator's records: one live job per row; the ledger's
credits equal to the emulator's charges; every file the bytes it served; no paid, finished job
marked FAILED; the only rows not DOWNLOADED are those whose job never finishes (`stuck`), left
in flight with their job_id.

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/runner.py pipeline/run/tracker.py pipeline/emulator/dialects.py
"""

from __future__ import annotations

import os
import random

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorThread, Faults
from pipeline.emulator.dialects import DIALECTS
from pipeline.store.ledger import Ledger, read_ledger
from tests.harness import TEST_KEY, check_books, cli_env, kill_repeatedly, prompts, run_args, run_cli, write_manifest

ROWS = 200
KILLS = 12
SEED = int(os.environ.get("CRASH_SEED", "20261125"))


@pytest.mark.slow
def test_sigkill_storm_under_every_dialect_pays_once(tmp_path):
    rng = random.Random(SEED)
    faults = Faults(seed=SEED, drop_after_create=0.1, error_503=0.03, fail_generation=0.05,
                    truncate_download=0.1, reset_connection=0.02)
    config = EmulatorConfig(api_key=TEST_KEY, credits=1_000_000, time_scale=0.03, rpm=0, faults=faults,
                            dialects=tuple(DIALECTS))
    manifest = write_manifest(tmp_path / "crash.yaml", prompts(ROWS, prefix="dialects"))
    args = run_args(manifest, tmp_path, "--retries", "10", "--checkpoint-every", "0.3", "--job-timeout", "6")
    with EmulatorThread(config) as emu:
        env = cli_env(emu.base_url)
        kills = kill_repeatedly(args, env=env, cwd=tmp_path, rng=rng, kills=KILLS, window=(0.3, 2.5))
        for _ in range(4):  # let it finish: only the stuck rows may stay in flight
            done = run_cli(*args, env=env, cwd=tmp_path, timeout=300)
            assert done.returncode in (1, 3), done.stdout + done.stderr  # 3: stuck rows left in flight
            rows = read_ledger(tmp_path / "ledger.parquet")
            left = rows.filter(rows["status"] != "DOWNLOADED")
            if left.height and left.height == sum(1 for line in done.stdout.splitlines()
                                                  if "still generating" in line):
                break
        stats = emu.stats()

    with Ledger.open(tmp_path / "ledger.parquet", run_id="check"):  # opens with no manual repair
        pass
    served = {job["id"]: job for job in stats["jobs"]}
    net = stats["credits"]["charged"] - stats["credits"]["refunded"]
    print(f"\ndialect crash test: {kills} SIGKILLs, {ROWS} rows, {len(served)} jobs, {left.height} left in flight, "
          f"ledger credits {rows['credits_charged'].sum()} vs emulator {net}, faults {stats['faults']}")
    assert kills >= 6
    assert rows.height == ROWS
    check_books(stats, rows, in_flight_ok=True, retried=True)  # one live job per row, every credit, every byte
    # Left in flight: only the stuck jobs, which the emulator still has generating.
    assert {served[job_id]["status"] for job_id in left["job_id"]} <= {"PROCESSING"}
    finished_paid = {j["id"] for j in stats["jobs"] if j["status"] == "COMPLETED"}
    assert not rows.filter((rows["status"] == "FAILED") & rows["job_id"].is_in(list(finished_paid))).height
    assert 0 < left.height <= len(served) // 7 + 1  # the stuck ones (every 7th job made), no more
