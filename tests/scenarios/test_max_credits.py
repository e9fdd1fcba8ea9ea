"""`--max-credits` end to end (issue 20, point 6): the real `plan` and `run` in child processes
against the emulator. The budget is filled with every row that still fits, in plan order, not cut
at the first row that does not; the rows left out are named, never submitted, and made by a later
run; a retry after a definite FAILED is a new attempt that must fit too. Every test ends on the
books: one paid job per row made, ledger credits = the emulator's charges.

Covers: pipeline/plan/budget.py pipeline/run/spending.py pipeline/run/intake.py pipeline/run/submit.py
"""

from __future__ import annotations

import json
import shlex

from pipeline.emulator import Faults
from tests.harness import check_books, cli_env, jobs_per_key, ledger, run_args, run_cli, write_manifest

# 10 + 15 + 25 + 10 + 15 + 25 credits. Under a cap of 40, stopping at the first row that does not
# fit made 25 credits (a-six, b-ten; the finding); every row that still fits makes 35.
ROWS = [{"id": key, "prompt": f"scene {n}: a lighthouse keeper paints a wave", "duration": duration}
        for n, (key, duration) in enumerate([("a-six", 6), ("b-ten", 10), ("c-fifteen", 15),
                                             ("d-six", 6), ("e-ten", 10), ("f-fifteen", 15)])]
LEFT = "--max-credits 40: 3 rows left out (65 credits): c-fifteen, e-ten, f-fifteen"


def test_the_budget_is_filled_with_the_rows_that_still_fit_and_the_rest_are_named(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", ROWS)
    env = cli_env(emu.base_url)

    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), "--max-credits", "40",
                   env=env, cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "a run would spend at most 35 credits" in plan.stdout
    assert f"  {LEFT}; raise --max-credits to 100 to include them" in plan.stdout.splitlines()

    summary = tmp_path / "summary.json"
    done = run_cli(*run_args(manifest, tmp_path, "--max-credits", "40", "--summary-json", str(summary)),
                   env=env, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr  # rows are left for the next run
    assert f"ended with exit code 3: {LEFT}; run again with --max-credits 65 to make them" in done.stdout
    stats = emu.stats()
    assert stats["credits"]["charged"] == 35  # > 25 (first stop), <= 40 (the cap)
    assert sorted(jobs_per_key(stats)) == ["a-six", "b-ten", "d-six"]  # the left rows were never submitted
    rows = ledger(tmp_path)
    assert sorted(rows["job_key"]) == ["a-six", "b-ten", "d-six"]
    check_books(stats, rows, in_flight_ok=False)
    document = json.loads(summary.read_text())
    assert document["credits"] == {"estimated": 35, "charged": 35}
    assert {row["job_key"]: row["reason"] for row in document["unfinished"]} == {
        "c-fifteen": "not submitted: budget: --max-credits 40: its 25 credits did not fit (25 credits of attempts started)",
        "e-ten": "not submitted: budget: --max-credits 40: its 15 credits did not fit (35 credits of attempts started)",
        "f-fifteen": "not submitted: budget: --max-credits 40: its 25 credits did not fit (35 credits of attempts started)",
    }
    progress = [line for line in done.stdout.splitlines() if line.startswith("progress: ")]
    assert progress[-1] == "progress: 3/3 done (100%), 0 failed, 0 in flight, 3 left out by --max-credits, credits 35/35"

    # The advice holds: the one next command, run as printed (the cap it names, every other flag
    # kept), makes exactly the rows left out.
    advice = done.stdout.splitlines()[-1]
    assert advice.startswith("next: videobatch run ") and advice.endswith(
        " --max-credits 65   (the rows --max-credits left out)"), advice
    printed = shlex.split(advice.removeprefix("next: ").split("   (")[0])
    assert printed.count("--max-credits") == 1 and "40" not in printed
    rest = run_cli(*printed[1:], env=env, cwd=tmp_path)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    stats = emu.stats()
    assert stats["credits"]["charged"] == 100
    check_books(stats, ledger(tmp_path), in_flight_ok=False)


def test_a_retry_is_a_new_attempt_that_must_fit_too(emulator_thread, tmp_path):
    emu = emulator_thread(faults=Faults(seed=3, fail_generation=1.0))
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": f"gale-{n}", "prompt": f"gale {n}", "duration": 6}
                                                    for n in range(2)])
    done = run_cli(*run_args(manifest, tmp_path, "--max-credits", "30", "--retries", "2"),
                   env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # both FAILED; nothing left unsent
    stats = emu.stats()
    # Two first attempts (20) and one retry (30); every later retry would pass the cap.
    assert len(stats["jobs"]) == 3 and sum(len(jobs) for jobs in jobs_per_key(stats).values()) == 3
    rows = ledger(tmp_path)
    assert set(rows["status"]) == {"FAILED"} and sorted(rows["attempts"]) == [1, 2]
    assert rows["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"] == 0
    end = next(line for line in done.stdout.splitlines() if "ended with exit code 1" in line)
    assert "--max-credits 30: 2 rows left out (20 credits): " in end
    assert end.count("(its retry)") == 2 and "gale-0" in end and "gale-1" in end
    assert end.endswith("run again with --max-credits 20 --retry-failed to make them")
