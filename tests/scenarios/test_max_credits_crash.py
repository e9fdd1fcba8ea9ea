"""`--max-credits` under SIGKILL: runs with small caps, some killed at random moments, against an
emulator that drops answers after creating jobs (so runs resume intents that may already have made
their job) and fails generations (so retries ask the budget again). No completed run charges more
than its cap for the jobs it created; every intent a killed or capped run left is settled later
without a second job; the final uncapped runs finish every row and the books balance.

Covers: pipeline/plan/budget.py pipeline/run/spending.py pipeline/run/submit.py pipeline/run/intake.py
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from pipeline.emulator import EmulatorConfig, EmulatorThread, Faults
from pipeline.store.ledger import read_ledger
from tests.harness import TEST_KEY, check_books, cli_env, run_args, run_cli, start_cli, write_manifest

SEED = int(os.environ.get("CRASH_SEED", "20261202"))
ROWS = [{"prompt": f"budget crash {n}: a kite over the dunes", "duration": (6, 10, 15)[n % 3]} for n in range(24)]


@pytest.mark.slow
def test_capped_runs_killed_at_random_never_pass_their_cap_nor_pay_twice(tmp_path):
    rng = random.Random(SEED)
    faults = Faults(seed=SEED, drop_after_create=0.3, fail_generation=0.15, error_503=0.03)
    config = EmulatorConfig(api_key=TEST_KEY, credits=1_000_000, time_scale=0.1, rpm=0, faults=faults)
    manifest = write_manifest(tmp_path / "m.yaml", ROWS)
    base = run_args(manifest, tmp_path, "--retries", "3", "--checkpoint-every", "0.3")
    completed = 0
    with EmulatorThread(config) as emu:
        env = cli_env(emu.base_url)
        for turn in range(12):
            cap = rng.choice([10, 25, 40, 60])
            args = [*base, "--max-credits", str(cap)] + (["--retry-failed"] if turn % 3 == 2 else [])
            if turn % 2 == 0:  # killed mid-run: submits cut off, intents left for the next run
                with open(os.devnull, "w") as sink:
                    proc = start_cli(*args, env=env, cwd=tmp_path, stdout=sink)
                    time.sleep(rng.uniform(0.3, 1.5))
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                time.sleep(0.3)  # a request the killed run had in the air lands before the next starts
                continue
            before = emu.stats()["credits"]["charged"]
            done = run_cli(*args, env=env, cwd=tmp_path, timeout=240)
            assert done.returncode in (0, 1, 3), done.stdout + done.stderr
            assert "Traceback" not in done.stdout + done.stderr
            spent = emu.stats()["credits"]["charged"] - before
            assert spent <= cap, (cap, spent, done.stdout)
            completed += 1
        for _ in range(6):  # uncapped: everything left is made, intents settled
            done = run_cli(*base, "--retry-failed", env=env, cwd=tmp_path, timeout=240)
            if done.returncode == 0:
                break
            assert done.returncode in (1, 3), done.stdout + done.stderr
        assert done.returncode == 0, done.stdout + done.stderr
        stats = emu.stats()
    rows = read_ledger(tmp_path / "ledger.parquet")
    assert completed == 6 and rows.height == len(ROWS) and set(rows["status"]) == {"DOWNLOADED"}
    assert sum(stats["faults"].values()) > 0
    check_books(stats, rows, in_flight_ok=False, retried=True)
