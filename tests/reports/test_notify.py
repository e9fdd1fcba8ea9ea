"""`--notify URL`: one POST at the end of every run, received by a local aiohttp server; retried
when the server fails, never changing the exit code, the URL never shown."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import polars as pl
from pipeline.emulator import Faults
from tests.harness import (
    Receiver, cli_env, free_port, jobs_per_key, ledger, prompts, run_args, run_cli, start_cli, wait_for,
    write_manifest,
)
from tests.reports.test_summary import assert_summary

FAST_RETRY = ("--notify-retry-delay", "0.01")


def everything_written(tmp_path: Path, *outputs: str) -> str:
    """Every output and every file the run left (ledger, journal, logs, summary), as text."""
    texts = list(outputs)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix == ".parquet":  # compressed: read its values, not its bytes
            texts.append(str(pl.read_parquet(path).rows()))
        elif path.is_file() and path.suffix in (".jsonl", ".json", ".prom", ".lock"):
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def summary_of(message: dict) -> dict:
    """The summary document inside a notification (without its `text` and list counts)."""
    return {k: v for k, v in message.items() if k != "text" and not k.endswith("_not_listed")}


def test_a_finished_run_is_announced_once_and_the_url_stays_secret(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    with Receiver() as receiver:
        url = receiver.url()
        done = run_cli(*run_args(manifest, tmp_path, "--notify", url, "--summary-json", str(tmp_path / "s.json")),
                       env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(receiver.received) == 1 and receiver.paths == ["/hooks/T000/B000/s3cr3t-token-value"]
    message = receiver.received[0]
    assert message["text"].startswith("videobatch run ") and "exit 0 (every row is downloaded)" in message["text"]
    assert "3 downloaded, 0 failed, 0 unfinished" in message["text"]
    assert_summary(summary_of(message))
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["notification"] == {"delivered": True, "attempts": 1, "error": None}
    assert summary_of(message) == {**written, "notification": None}  # sent before its own outcome was known
    assert "s3cr3t-token-value" not in everything_written(tmp_path, done.stdout, done.stderr)
    assert len(jobs_per_key(emu.stats())) == 3


def test_a_failing_receiver_is_retried_then_left_alone_with_the_exit_code(emulator_thread, tmp_path):
    emu = emulator_thread(faults=Faults(seed=3, fail_generation=1.0))
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    with Receiver(status=500) as receiver:
        done = run_cli(*run_args(manifest, tmp_path, "--retries", "0", "--notify", receiver.url(),
                                 "--summary-json", "-", *FAST_RETRY), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # the run's own outcome: a failed row
    assert len(receiver.received) == 4  # the first try and three more
    assert all(m["exit_code"] == 1 and m["failed"][0]["error"] for m in receiver.received)
    document = json.loads(done.stdout)
    assert document["notification"] == {"delivered": False, "attempts": 4, "error": "HTTP 500"}
    assert any("notification was not delivered after 4 attempts (HTTP 500)" in w for w in document["warnings"])
    assert "notification was not delivered" in done.stderr
    log = Path(document["paths"]["log"]).read_text().splitlines()
    assert [json.loads(line)["attempt"] for line in log if '"event": "notify"' in line] == [1, 2, 3, 4]
    assert "s3cr3t-token-value" not in everything_written(tmp_path, done.stdout, done.stderr)


def test_a_4xx_is_not_retried(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    with Receiver(status=404) as receiver:
        done = run_cli(*run_args(manifest, tmp_path, "--notify", receiver.url(), "--summary-json", "-", *FAST_RETRY),
                       env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(receiver.received) == 1
    assert json.loads(done.stdout)["notification"] == {"delivered": False, "attempts": 1, "error": "HTTP 404"}


def test_connection_refused_leaves_the_exit_code_alone(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    url = f"http://127.0.0.1:{free_port()}/hooks/another-s3cr3t-path"
    done = run_cli(*run_args(manifest, tmp_path, "--notify", url, "--summary-json", "-", *FAST_RETRY),
                   env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    notification = json.loads(done.stdout)["notification"]
    assert notification["delivered"] is False and notification["attempts"] == 4
    assert "ClientConnectorError" in notification["error"] or "Connect" in notification["error"]
    assert "another-s3cr3t-path" not in everything_written(tmp_path, done.stdout, done.stderr)
    assert set(ledger(tmp_path)["status"]) == {"DOWNLOADED"}


def test_an_interrupted_run_still_notifies(emulator_thread, tmp_path):
    emu = emulator_thread(time_scale=0.05)  # 1.5-7.5 s per job: the interrupt lands mid-batch
    manifest = write_manifest(tmp_path / "m.yaml", prompts(8))
    with Receiver() as receiver:
        proc = start_cli(*run_args(manifest, tmp_path, "--notify", receiver.url()), env=cli_env(emu.base_url),
                         cwd=tmp_path, stdout=subprocess.PIPE)
        assert wait_for(lambda: len(emu.stats()["jobs"]) >= 4, timeout=30)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 3, out
        assert len(receiver.received) == 1, out
    message = receiver.received[0]
    assert message["exit_code"] == 3 and message["stop_reason"] == "interrupted (SIGINT)"
    assert "interrupted (SIGINT)" in message["text"]
    assert message["rows"]["unfinished"] > 0
    assert_summary(summary_of(message))
    assert "s3cr3t-token-value" not in everything_written(tmp_path, out)


def test_a_bad_notify_url_is_refused_before_anything_runs(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    done = run_cli(*run_args(manifest, tmp_path, "--notify", "ftp://example.invalid/s3cr3t-token-value"),
                   env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    assert done.returncode == 2
    assert "--notify needs an http:// or https:// URL" in done.stderr
    assert "s3cr3t-token-value" not in done.stdout + done.stderr
    assert not (tmp_path / "ledger.parquet").exists()
