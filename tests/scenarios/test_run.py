"""`videobatch run` end to end: the real command in a child process, the emulator over loopback.

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/runner.py pipeline/run/progress.py pipeline/run/runlog.py pipeline/run/spending.py pipeline/run/references.py pipeline/run/video_check.py pipeline/run/outcome.py pipeline/plan/actions.py pipeline/store/archive.py pipeline/store/lock.py pipeline/store/runs.py
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.emulator import Faults
from pipeline.store.archive import archived_name
from pipeline.store.runs import read_runs
from pipeline.run.video_check import probe_video
from tests.harness import (
    cli_env, jobs_per_key, ledger, prompts, run_args, run_cli, start_cli, wait_for,
    write_manifest,
)


def sha256_file(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_batch_downloads_every_row_and_charges_what_the_api_charged(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(9) + [{"id": "twins", "prompt": "two owls", "count": 2}])
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    rows = ledger(tmp_path)
    assert rows.height == 11
    assert set(rows["status"]) == {"DOWNLOADED"}
    assert set(rows["job_key"]) >= {"twins", "twins-v2"}
    stats = emu.stats()
    served = {job["id"]: job for job in stats["jobs"]}
    assert len(served) == 11
    for row in rows.iter_rows(named=True):
        info = probe_video(Path(row["output_path"]))
        assert info.duration == pytest.approx(row["duration"], abs=0.5)
        assert sha256_file(row["output_path"]) == row["sha256"] == served[row["job_id"]]["video_sha256"]
        assert Path(row["output_path"]).name == f"{row['job_key']}.mp4"
    assert rows["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"]
    assert rows["credits_charged"].sum() == rows["credits_estimated"].sum()
    assert "credits:" in done.stdout and "charged this run" in done.stdout
    # Not a terminal: plain lines (cron's log), the last one forced when the run ends.
    progress = [line for line in done.stdout.splitlines() if line.startswith("progress: ")]
    charged = rows["credits_charged"].sum()
    assert progress[-1] == f"progress: 11/11 done (100%), 0 failed, 0 in flight, credits {charged}/{charged}"

    runs = read_runs(tmp_path / "ledger.parquet")
    assert runs.height == 1 and runs["exit_code"][0] == 0 and runs["rows_finished"][0] == 11
    log = Path(runs["log_path"][0])
    assert log.exists() and '"event": "download"' in log.read_text()


def test_rerun_submits_nothing_and_redownloads_only_missing_files(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(4))
    env = cli_env(emu.base_url)
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    jobs_before = len(emu.stats()["jobs"])

    again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "4 already done" in again.stdout
    assert len(emu.stats()["jobs"]) == jobs_before
    assert emu.stats()["requests"].get("POST /v2/videos/generate", 0) == jobs_before

    gone = ledger(tmp_path)["output_path"][0]
    Path(gone).unlink()
    third = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert Path(gone).exists()
    assert len(emu.stats()["jobs"]) == jobs_before  # downloaded again, not generated again


def test_killed_run_resumes_without_a_second_job(emulator_thread, tmp_path):
    emu = emulator_thread(time_scale=0.05)  # 1.5-7.5 s per job: the kill lands mid-batch
    manifest = write_manifest(tmp_path / "m.yaml", prompts(12))
    env = cli_env(emu.base_url)
    proc = start_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert wait_for(lambda: len(emu.stats()["jobs"]) >= 6, timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    finish = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert finish.returncode == 0, finish.stdout + finish.stderr
    rows = ledger(tmp_path)
    assert set(rows["status"]) == {"DOWNLOADED"} and rows.height == 12
    per_key = jobs_per_key(emu.stats())
    assert set(per_key) == set(rows["job_key"])
    assert all(len(jobs) == 1 for jobs in per_key.values()), per_key


def test_dropped_answers_are_saved_by_the_idempotency_key(emulator_thread, tmp_path):
    emu = emulator_thread(faults=Faults(seed=7, drop_after_create=0.5, error_503=0.2))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(10))
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = emu.stats()
    assert stats["faults"]["drop_after_create"] > 0
    assert all(len(jobs) == 1 for jobs in jobs_per_key(stats).values())
    assert ledger(tmp_path)["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"]


def test_failed_generations_are_retried_then_left_failed(emulator_thread, tmp_path):
    emu = emulator_thread(faults=Faults(seed=3, fail_generation=1.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    done = run_cli(*run_args(manifest, tmp_path, "--retries", "1"), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = ledger(tmp_path)
    assert set(rows["status"]) == {"FAILED"} and set(rows["attempts"]) == {2}
    assert rows["credits_charged"].sum() == 0  # the API refunds failed jobs
    assert len(emu.stats()["jobs"]) == 4
    assert "FAILED" in done.stdout

    # Without --retry-failed a rerun leaves them alone; with it they get one more attempt each.
    emu.configure(faults={"fail_generation": 0.0})
    again = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert again.returncode == 1 and len(emu.stats()["jobs"]) == 4
    retried = run_cli(*run_args(manifest, tmp_path, "--retry-failed"), env=cli_env(emu.base_url), cwd=tmp_path)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert set(ledger(tmp_path)["attempts"]) == {3} and len(emu.stats()["jobs"]) == 6


def test_out_of_credits_stops_submitting_and_a_later_run_continues(emulator_thread, tmp_path):
    emu = emulator_thread(credits=45, time_scale=0.02)
    manifest = write_manifest(tmp_path / "m.yaml", [{"prompt": f"tide pool {i}", "duration": 6} for i in range(8)])
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "insufficient credits" in done.stdout
    rows = ledger(tmp_path)
    assert (rows["status"] == "DOWNLOADED").sum() == 4  # what was in flight was still finished
    emu.configure(credits=1000)
    rest = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url), cwd=tmp_path)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert len(emu.stats()["jobs"]) == 8


def test_wrong_key_stops_at_once_and_is_never_printed(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    wrong = "afk_wrong_secret_abcdef123456"
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env(emu.base_url, key=wrong), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr  # configuration, not a stop to resume
    assert "the API refused the key (401)" in done.stdout
    assert wrong not in done.stdout + done.stderr
    assert len(emu.stats()["jobs"]) == 0


def test_no_key_refuses_and_points_to_emulate(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    done = run_cli(*run_args(manifest, tmp_path), env=cli_env("http://127.0.0.1:9", key=None), cwd=tmp_path)
    assert done.returncode == 2
    assert "--emulate" in done.stderr
    assert not (tmp_path / "ledger.parquet").exists()


def test_plan_without_a_key_says_to_set_it_before_the_run_it_prices(tmp_path):
    # The run `plan` priced refuses to start without a key: its next step puts the key first.
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    done = run_cli("plan", str(manifest), env=cli_env("http://127.0.0.1:9", key=None), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "balance: unknown (no APIFRAME_API_KEY set" in done.stdout
    assert done.stdout.splitlines()[-1] == ("next: put your key in .env (echo 'APIFRAME_API_KEY=...' >> .env), "
                                            f"then: videobatch run {manifest}")
    assert not (tmp_path / "outputs").exists()


def test_emulate_keeps_its_own_ledger(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    env = cli_env("http://127.0.0.1:9", key=None)
    done = run_cli("run", str(manifest), "--emulate", "--emulator-time-scale", "0", "--poll-interval", "0.05",
                   env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = pl.read_delta(str(tmp_path / "outputs/emulator/ledger.parquet"))  # the one-call read docs/ledger.md shows
    assert rows.height == 3 and set(rows["status"]) == {"DOWNLOADED"}
    assert not (tmp_path / "outputs/ledger.parquet").exists()
    assert len(list((tmp_path / "outputs/emulator/videos").glob("*.mp4"))) == 3


def test_plan_prices_rows_and_checks_the_balance(emulator_thread, tmp_path):
    emu = emulator_thread(credits=30)
    manifest = write_manifest(tmp_path / "m.yaml", [{"prompt": "a", "duration": 6},
                                                    {"prompt": "b", "duration": 15, "count": 2}])
    done = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"),
                   env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "at most 60 credits" in done.stdout
    assert "balance: 30 credits" in done.stdout and "SHORT by 30" in done.stdout
    assert emu.stats()["requests"].get("POST /v2/videos/generate", 0) == 0


def test_sigterm_saves_and_exits_3_quickly(emulator_thread, tmp_path):
    emu = emulator_thread(time_scale=0.05)  # generations of 1.5-7.5 s: the run is mid-way when stopped
    manifest = write_manifest(tmp_path / "m.yaml", prompts(8))
    env = cli_env(emu.base_url)
    proc = start_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert wait_for(lambda: len(emu.stats()["jobs"]) >= 8, timeout=30)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 3, out
    assert time.monotonic() - sent < 5
    rows = ledger(tmp_path)
    assert rows["job_id"].null_count() == 0  # every job the API made is in the ledger
    # The rerun follows those jobs instead of submitting again.
    emu.configure(time_scale=0.0)
    rest = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert all(len(j) == 1 for j in jobs_per_key(emu.stats()).values())


def test_second_run_on_one_ledger_is_refused(emulator_thread, tmp_path):
    emu = emulator_thread(time_scale=0.1)
    manifest = write_manifest(tmp_path / "m.yaml", prompts(4))
    env = cli_env(emu.base_url)
    first = start_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    try:
        assert wait_for(lambda: len(emu.stats()["jobs"]) >= 1, timeout=30)
        second = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        assert second.returncode == 3
        assert f"pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=15)


def test_second_interrupt_exits_at_once_and_the_ledger_stays_consistent(emulator_thread, tmp_path):
    emu = emulator_thread(time_scale=0.05)  # generations of 1.5-7.5 s: still in flight when stopped
    manifest = write_manifest(tmp_path / "m.yaml", prompts(10))
    env = cli_env(emu.base_url)
    proc = start_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert wait_for(lambda: len(emu.stats()["jobs"]) >= 5, timeout=30)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    assert time.monotonic() - sent < 2
    # Exit 3 from our handler; or, when the first interrupt already ended the run and the second
    # lands while Python shuts down (its handlers restored by then), death by the signal itself.
    assert proc.returncode in (3, -signal.SIGINT)
    emu.configure(time_scale=0.0)
    rest = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert all(len(j) == 1 for j in jobs_per_key(emu.stats()).values())
    assert set(ledger(tmp_path)["status"]) == {"DOWNLOADED"}


CTRL_C_DURING_A_QUERY = """
import asyncio, os, signal, threading, time
from pipeline.cli import Interrupts

class Runner:
    def interrupt(self, name):
        print("runner asked to stop by", name)

interrupts = Interrupts()
interrupts.install()
interrupts.runner, interrupts.loop = Runner(), asyncio.new_event_loop()
import polars as pl  # the run imports it later, as the CLI does

frame = pl.DataFrame({"a": range(2_000_000)})
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
until = time.monotonic() + 1.5
while time.monotonic() < until:  # the signal lands during one of these queries
    frame.lazy().with_columns(b=pl.col("a") * 3).sort("b", descending=True).collect()
interrupts.loop.run_until_complete(asyncio.sleep(0.05))
print("queries went on")
"""


def test_a_first_ctrl_c_during_a_polars_query_asks_the_runner_to_stop_and_raises_nothing(tmp_path):
    # Polars hooks SIGINT and would raise KeyboardInterrupt out of whichever query is running
    # (a checkpoint, a job's owner lookup): the run would crash instead of stopping cleanly.
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_DURING_A_QUERY)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["runner asked to stop by SIGINT", "queries went on"]


def test_local_reference_images_are_uploaded_once_and_sent_as_urls(emulator_thread, tmp_path):
    emu = emulator_thread()
    refs = Path(__file__).resolve().parents[2] / "manifests" / "refs"
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"prompt": "koi one", "reference_images": [str(refs / "koi.png"), str(refs / "paper-texture.png")]},
        {"prompt": "koi two", "reference_images": [str(refs / "koi.png")], "count": 2},
    ])
    # The images lie outside the manifest's folder: --refs-root names where they may.
    done = run_cli(*run_args(manifest, tmp_path, "--refs-root", str(refs)), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert emu.stats()["uploads"] == 2  # one per distinct image content within a run
    for row in ledger(tmp_path).iter_rows(named=True):
        sent = json.loads(row["request_body"])["grokImagineVideoParams"]["reference_images"]
        assert sent and all(url.startswith(emu.base_url + "/cdn/uploads/") for url in sent)


def test_editing_a_prompt_under_the_same_id_makes_a_new_version(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "hero", "prompt": "a red kite"}])
    env = cli_env(emu.base_url)
    assert run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path).returncode == 0
    first = ledger(tmp_path).row(0, named=True)
    write_manifest(manifest, [{"id": "hero", "prompt": "a blue kite"}])
    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), env=env, cwd=tmp_path)
    assert "1 new versions" in plan.stdout
    done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["job_key"]: r for r in ledger(tmp_path).iter_rows(named=True)}
    archived = archived_name("hero", first["request_hash"])
    assert set(rows) == {"hero", archived}
    assert rows["hero"]["prompt"] == "a blue kite" and rows[archived]["prompt"] == "a red kite"
    assert Path(rows["hero"]["output_path"]).exists() and Path(rows[archived]["output_path"]).exists()
    assert rows["hero"]["sha256"] != rows[archived]["sha256"] or rows["hero"]["job_id"] != rows[archived]["job_id"]
    assert len(emu.stats()["jobs"]) == 2


def test_editing_back_and_forth_keeps_every_version(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = tmp_path / "m.yaml"
    env = cli_env(emu.base_url)
    for prompt in ("a red kite", "a blue kite", "a red kite", "a blue kite"):
        write_manifest(manifest, [{"id": "hero", "prompt": prompt}])
        done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    rows = ledger(tmp_path)
    stats = emu.stats()
    assert rows.height == 4  # hero, and its three earlier versions under hero@<hash>[-n]
    assert sorted(rows.filter(pl.col("job_key") == "hero")["prompt"]) == ["a blue kite"]
    assert sorted(rows["prompt"]) == ["a blue kite", "a blue kite", "a red kite", "a red kite"]
    assert all(Path(p).exists() for p in rows["output_path"])
    # Back to an earlier request within the API's 24 h: the same Idempotency-Key hands back that
    # version's job, free; the ledger counts each job's credits once, as the API charged them.
    assert len(stats["jobs"]) == 2
    assert rows["credits_charged"].sum() == stats["credits"]["charged"] - stats["credits"]["refunded"] == 20
