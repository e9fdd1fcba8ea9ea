"""`videobatch status` and the run log, from the ledger and logs of real runs against the emulator."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import polars as pl
import pytest

from pipeline.store.runs import read_runs
from tests.harness import cli_env, failed_then_finished, ledger, run_cli

OFFLINE = cli_env("http://127.0.0.1:9")  # status and report read files only; nothing should be called


@pytest.fixture
def batch(emulator_thread, tmp_path):
    """Two real runs into one ledger: 2 rows FAILED after a retry, then 4 more DOWNLOADED."""
    runs = failed_then_finished(emulator_thread(), tmp_path)
    for done in runs:
        assert done.returncode == 1, done.stdout + done.stderr
    rows = ledger(tmp_path)
    assert sorted(rows["status"]) == ["DOWNLOADED"] * 4 + ["FAILED"] * 2
    return runs, rows


def status(tmp_path: Path, *more: str):
    return run_cli("status", "--ledger", str(tmp_path / "ledger.parquet"), *more, env=OFFLINE, cwd=tmp_path)


def test_status_json_and_text_agree_with_the_ledger_and_runs(batch, tmp_path):
    (first, second), rows = batch
    runs = read_runs(tmp_path / "ledger.parquet").sort("started_at")
    assert runs.height == 2
    last = runs.row(-1, named=True)
    assert f"run {last['run_id']} ended" in second.stdout
    failed = rows.filter(pl.col("status") == "FAILED").sort("row")

    done = status(tmp_path, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["jobs"] == rows.height == 6
    assert {s: n for s, n in summary["by_status"].items() if n} == dict(rows.group_by("status").len().iter_rows())
    assert summary["credits"]["estimated"] == rows["credits_estimated"].sum()
    assert summary["credits"]["charged"] == rows["credits_charged"].sum()
    for (state,), part in rows.group_by("status"):
        assert summary["credits"]["by_status"][state] == {
            "estimated": part["credits_estimated"].sum(), "charged": part["credits_charged"].sum()}
    for (duration,), part in rows.group_by("duration"):
        assert summary["credits"]["by_duration"][str(duration)] == {
            "jobs": part.height, "estimated": part["credits_estimated"].sum(),
            "charged": part["credits_charged"].sum()}
    assert summary["runs"] == 2
    assert summary["last_run"]["run_id"] == last["run_id"]
    assert summary["last_run"]["ended_at"] == last["ended_at"].isoformat()
    assert summary["last_run"]["exit_code"] == 1
    listed = [(f["job_key"], f["error"]) for f in summary["failed"]]
    assert listed == list(failed.select("job_key", "error").iter_rows())
    assert all(f["error"] and f["attempts"] == 2 for f in summary["failed"])

    text = status(tmp_path)
    assert text.returncode == 0, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "rows: 6"  # no row was edited: no earlier version to count apart
    assert lines[1] == "  DOWNLOADED 4, FAILED 2"
    assert (summary["rows"], summary["versions"]) == (6, 0) and not any("earlier versions" in line for line in lines)
    assert f"credits: {rows['credits_charged'].sum()} charged, {rows['credits_estimated'].sum()} estimated" in lines
    for (duration,), part in rows.group_by("duration"):
        assert (f"  {duration:>3} s clips: {part.height} jobs, {part['credits_charged'].sum()} charged, "
                f"{part['credits_estimated'].sum()} estimated") in lines
    assert any(line.startswith(f"last run: {last['run_id']} ") and f"ended {last['ended_at'].isoformat()} " in line
               and "exit code 1" in line for line in lines), text.stdout
    assert "failed rows: 2" in lines
    for row in failed.iter_rows(named=True):
        assert any(row["job_key"] in line and line.endswith(f": {row['error']}") for line in lines), text.stdout


def test_status_without_a_ledger_says_so_and_fails(tmp_path):
    for more in ((), ("--json",)):
        done = status(tmp_path, *more)
        assert done.returncode == 2
        assert done.stdout == ""
        assert f"no ledger at {tmp_path / 'ledger.parquet'}" in done.stderr and "--ledger PATH" in done.stderr
        assert "run a batch first (videobatch run MANIFEST" in done.stderr  # the one next command


def test_status_of_a_ledger_nothing_was_made_in_gives_the_next_command(tmp_path):
    # A first run that never reached the API (exit 4) leaves an empty ledger and its runs row.
    manifest = tmp_path / "m.yaml"
    manifest.write_text("jobs:\n  - prompt: a heron at dawn\n")
    first = run_cli("run", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), "--out", str(tmp_path / "out"),
                    env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    assert first.returncode == 4, first.stdout + first.stderr
    done = status(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [
        "rows: 0", "  (the ledger is empty: nothing was made in it yet; next: videobatch run MANIFEST)"]
    assert "with exit code 4" in done.stdout  # the last run, as the runs table has it


def read_log(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]  # every line must be one JSON object
    assert events and all(isinstance(e, dict) and e.get("event") and e.get("ts") for e in events)
    return events


def test_each_run_logs_its_events_beside_the_ledger(batch, tmp_path):
    (first, second), rows = batch
    runs = read_runs(tmp_path / "ledger.parquet").sort("started_at")
    logs = []
    for run, done in zip(runs.iter_rows(named=True), (first, second)):
        path = tmp_path / "logs" / f"{run['run_id']}.jsonl"
        assert run["log_path"] == str(path)
        assert f"log: {path}" in done.stdout  # the human summary says where the log is
        events = read_log(path)
        assert events[0]["event"] == "run_start" and events[0]["run_id"] == run["run_id"]
        assert events[-1]["event"] == "run_end"
        logs.append(events)

    failed = dict(rows.filter(pl.col("status") == "FAILED").select("job_key", "error").iter_rows())
    first_log, second_log = logs
    # First run: each failing row is submitted, fails, is retried with the API's reason, fails again.
    for key, error in failed.items():
        mine = [e for e in first_log if e.get("job_key") == key]
        assert [e["attempt"] for e in mine if e["event"] == "submit"] == [1, 2]
        assert [e["error"] for e in mine if e["event"] == "status" and e["status"] == "FAILED"] == [error, error]
        assert [(e["what"], e["reason"]) for e in mine if e["event"] == "retry"] == [("generate", error)]

    # Second run: the new rows are submitted, complete and are downloaded to the ledger's paths.
    downloaded = dict(rows.filter(pl.col("status") == "DOWNLOADED").select("job_key", "output_path").iter_rows())
    assert sorted(e["job_key"] for e in second_log if e["event"] == "submit") == sorted(downloaded)
    assert sorted(e["job_key"] for e in second_log
                  if e["event"] == "status" and e["status"] == "COMPLETED") == sorted(downloaded)
    assert {e["job_key"]: e["path"] for e in second_log if e["event"] == "download"} == downloaded


def test_run_summary_says_how_to_get_the_report(batch, tmp_path):
    (_, second), _ = batch
    hint = [line for line in second.stdout.splitlines() if line.strip().startswith("report: ")]
    assert len(hint) == 1, second.stdout
    assert f"(writes {tmp_path / 'report.html'})" in hint[0]
    # The hint is a working command: run it as printed.
    command = shlex.split(hint[0].split("report: ", 1)[1].split("  (", 1)[0])
    assert command[:2] == ["videobatch", "report"]
    made = run_cli(*command[1:], env=OFFLINE, cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    assert made.stdout.strip() == f"report: {tmp_path / 'report.html'}"
    assert (tmp_path / "report.html").stat().st_size > 0


def test_a_rerun_summary_gives_earlier_failures_their_reasons(batch):
    (first, second), rows = batch
    for row in rows.filter(pl.col("status") == "FAILED").iter_rows(named=True):
        assert f"FAILED {row['job_key']}: {row['error']}" in second.stdout  # left alone, still explained
