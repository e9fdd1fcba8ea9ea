"""A run against a misbehaving API: it slows down, retries what is safe, and says what it could not do.

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/runner.py pipeline/run/outcome.py pipeline/api/client.py pipeline/api/retry.py
"""

from __future__ import annotations

import pytest

from pipeline.emulator import Faults
from tests.harness import cli_env, jobs_per_key, ledger, prompts, run_args, run_cli, write_manifest


def test_429_storm_slows_the_run_and_never_jumps_retry_after(emulator_thread, tmp_path):
    emu = emulator_thread(rpm=6, rate_window_seconds=1.0)  # far below what the client would send
    manifest = write_manifest(tmp_path / "m.yaml", prompts(12))
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = emu.stats()
    assert stats["rate_limited"] > 0
    assert stats["retry_after_violations"] == 0
    assert all(len(jobs) == 1 for jobs in jobs_per_key(stats).values())
    assert "rate-limited" in done.stdout


def test_client_rpm_at_the_servers_limit_gets_no_429(emulator_thread, tmp_path):
    emu = emulator_thread(rpm=30, rate_window_seconds=2.0)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(20))
    args = run_args(manifest, tmp_path)
    args[args.index("--rpm") + 1] = "30"
    done = run_cli(*args, "--rate-period", "2", env=cli_env(emu.base_url), cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert emu.stats()["rate_limited"] == 0


def test_answers_slower_than_the_timeout_are_retried_safely(emulator_thread, tmp_path):
    emu = emulator_thread(faults=Faults(seed=4, slow_response=0.3, slow_seconds=2.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(6))
    done = run_cli(*run_args(manifest, tmp_path, "--timeout", "0.5"), env=cli_env(emu.base_url), cwd=tmp_path,
                   timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = emu.stats()
    assert stats["faults"]["slow_response"] > 0
    assert all(len(jobs) == 1 for jobs in jobs_per_key(stats).values())
    assert len(stats["jobs"]) == 6


def test_503_bursts_and_resets_are_ridden_out(emulator_thread, tmp_path):
    emu = emulator_thread(faults=Faults(seed=9, error_503=0.4, reset_connection=0.2))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(8))
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = emu.stats()
    assert stats["faults"]["error_503"] > 0 and stats["faults"]["reset_connection"] > 0
    assert all(len(jobs) == 1 for jobs in jobs_per_key(stats).values())


def test_expired_results_are_marked_and_regenerated_only_when_asked(emulator_thread, tmp_path):
    emu = emulator_thread(faults=Faults(seed=1, expire_results=1.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    env = cli_env(emu.base_url)
    done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 results expired" in done.stdout and "--retry-failed" in done.stdout
    rows = ledger(tmp_path)
    assert set(rows["status"]) == {"FAILED"} and rows["expired"].all()
    assert rows["credits_charged"].sum() == 50  # 10 + 15 + 25: expired is not refunded, the video was made

    again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert again.returncode == 1 and len(emu.stats()["jobs"]) == 3  # nothing regenerated unasked

    emu.configure(faults={"expire_results": 0.0})
    retried = run_cli(*run_args(manifest, tmp_path, "--retry-failed"), env=env, cwd=tmp_path)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    rows = ledger(tmp_path)
    assert set(rows["status"]) == {"DOWNLOADED"} and len(emu.stats()["jobs"]) == 6
    assert rows["credits_charged"].sum() == 100 == emu.stats()["credits"]["charged"]


@pytest.mark.parametrize("fault", ["truncate_download"])
def test_cut_downloads_are_fetched_again_without_a_new_generation(emulator_thread, tmp_path, fault):
    emu = emulator_thread(faults=Faults(seed=2, **{fault: 0.5}))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(6))
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = emu.stats()
    assert stats["faults"][fault] > 0 and len(stats["jobs"]) == 6
    served = {job["id"]: job["video_sha256"] for job in stats["jobs"]}
    for row in ledger(tmp_path).iter_rows(named=True):
        assert row["sha256"] == served[row["job_id"]]
