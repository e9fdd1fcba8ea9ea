"""The run summary: `--summary-json` checked against the schema shipped in the package, the
same words in `status --json`, and `run_batch` / `plan_batch` called in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from pipeline.emulator import Faults
from pipeline.reports.summary import SCHEMA_PATH, load_schema
from tests.harness import TEST_KEY, cli_env, ledger, prompts, run_args, run_cli, write_manifest


def assert_summary(document: dict) -> None:
    validator = Draft202012Validator(load_schema(), format_checker=FormatChecker())
    problems = [f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in validator.iter_errors(document)]
    assert not problems, "; ".join(problems)


def test_the_schema_is_a_valid_schema_and_ships_in_the_package():
    Draft202012Validator.check_schema(load_schema())
    assert SCHEMA_PATH.parent.name == "reports"
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"pipeline.reports" = ["summary.schema.json"]' in pyproject


def test_schema_rejects_a_document_that_breaks_it(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    done = run_cli(*run_args(manifest, tmp_path, "--summary-json", "-"), env=cli_env(emu.base_url), cwd=tmp_path)
    document = json.loads(done.stdout)
    assert_summary(document)
    for broken in ({**document, "exit_code": 7}, {**document, "rows": {**document["rows"], "downloaded": -1}},
                   {k: v for k, v in document.items() if k != "version"}, {**document, "surprise": 1}):
        with pytest.raises(AssertionError):
            assert_summary(broken)


def test_summary_json_of_a_run_with_failed_and_unfinished_rows(emulator_thread, tmp_path):
    # Two rows always fail; the budget leaves others unsubmitted: every list in the document is filled.
    emu = emulator_thread(faults=Faults(seed=3, fail_generation=1.0))
    manifest = write_manifest(tmp_path / "m.yaml", [{"prompt": f"gale {i}", "duration": 6} for i in range(2)])
    env = cli_env(emu.base_url)
    first = run_cli(*run_args(manifest, tmp_path, "--retries", "0"), env=env, cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    requests_before = sum(emu.stats()["requests"].values())
    emu.configure(faults={"fail_generation": 0.0})
    write_manifest(manifest, [{"prompt": f"gale {i}", "duration": 6} for i in range(2)]
                   + [{"prompt": f"calm {i}", "duration": 6} for i in range(4)])
    out = tmp_path / "reports" / "summary.json"
    done = run_cli(*run_args(manifest, tmp_path, "--max-credits", "20", "--summary-json", str(out)),
                   env=env, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    document = json.loads(out.read_text())
    assert_summary(document)

    rows = ledger(tmp_path)
    assert document["version"] == 1 and document["command"] == "run"
    assert document["exit_code"] == 3 and document["exit_meaning"].startswith("stopped early")
    assert "--max-credits 20" in document["stop_reason"]
    assert document["manifest"] == str(manifest.resolve())
    assert document["rows"] == {"planned": 6, "skipped": 0, "submitted": 2, "downloaded": 2, "failed": 2,
                                "unfinished": 2, "expired": 0}
    assert document["credits"] == {"estimated": 20, "charged": 20}
    assert document["ledger"]["credits"] == {"estimated": int(rows["credits_estimated"].sum()),
                                             "charged": int(rows["credits_charged"].sum())}
    assert document["ledger"]["jobs"] == rows.height == 4
    assert document["by_status"] == {"PENDING": 2, "SUBMITTED": 0, "PROCESSING": 0, "COMPLETED": 0,
                                     "DOWNLOADED": 2, "FAILED": 2, "REJECTED": 0}
    failed = rows.filter(rows["status"] == "FAILED").sort("job_key")
    assert [(f["job_key"], f["error"]) for f in document["failed"]] == list(failed.select("job_key", "error").iter_rows())
    assert len(document["unfinished"]) == 2
    assert all(u["status"] == "PENDING" and u["reason"].startswith("not submitted: budget") for u in document["unfinished"])
    assert document["requests"] == {"total": sum(emu.stats()["requests"].values()) - requests_before,
                                    "rate_limited": 0}
    log = Path(document["paths"]["log"])
    assert log.is_file() and document["run_id"] in log.name
    assert document["paths"]["ledger"] == str(tmp_path / "ledger.parquet")
    assert document["paths"]["report"] == str(tmp_path / "report.html")
    # The human text is still there, on standard output, when the JSON goes to a file.
    assert f"run {document['run_id']} ended with exit code 3" in done.stdout


def test_summary_json_of_a_refused_run_says_why(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("jobs:\n  - prompt: ''\n")
    done = run_cli(*run_args(manifest, tmp_path, "--summary-json", "-"),
                   env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    assert done.returncode == 2
    document = json.loads(done.stdout)
    assert_summary(document)
    assert document["exit_code"] == 2 and "manifest has problems" in document["error"]
    assert document["run_id"] is None and document["rows"] == {}
    assert "manifest has problems" in done.stderr
    assert not (tmp_path / "ledger.parquet").exists()


def test_status_json_speaks_the_summary_words(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    done = run_cli(*run_args(manifest, tmp_path, "--summary-json", "-"), env=cli_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    status = run_cli("status", "--ledger", str(tmp_path / "ledger.parquet"), "--json",
                     env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    ledger_view = json.loads(status.stdout)
    assert ledger_view["version"] == run["version"]
    # The ledger to date: a summary's `ledger` is status's top level.
    assert {k: ledger_view[k] for k in ("jobs", "by_status")} == {k: run["ledger"][k] for k in ("jobs", "by_status")}
    assert {k: ledger_view["credits"][k] for k in ("estimated", "charged")} == run["ledger"]["credits"]
    # The run: status's last_run has the summary's words beside the runs table's columns.
    last = ledger_view["last_run"]
    for key in ("run_id", "manifest", "exit_code", "exit_meaning", "credits"):
        assert last[key] == run[key], key
    assert last["rows"] == {k: v for k, v in run["rows"].items() if k != "expired"}
    assert last["rows_finished"] == run["rows"]["downloaded"] == 3  # the old keys still work


def test_python_entry_point_runs_in_process(emulator_thread, tmp_path, monkeypatch):
    emu = emulator_thread(credits=1000)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APIFRAME_API_KEY", TEST_KEY)
    monkeypatch.setenv("APIFRAME_BASE_URL", emu.base_url)
    import pipeline

    manifest = write_manifest(tmp_path / "m.yaml", prompts(4))
    planned = pipeline.plan_batch(manifest, ledger=tmp_path / "ledger.parquet")
    assert planned.command == "plan" and planned.exit_code == 0
    assert planned.actions["submit"] == 4 and planned.balance == 1000
    assert planned.credits["estimated"] == planned.plan.credits_to_spend > 0
    assert_summary(planned.to_dict())

    summary = pipeline.run_batch(manifest, ledger=tmp_path / "ledger.parquet", out=tmp_path / "out", rpm=0,
                                 poll_interval=0.05, progress_interval=60)
    assert isinstance(summary, pipeline.BatchSummary)
    assert summary.ok and summary.exit_code == 0 and summary.rows["downloaded"] == 4
    assert summary.credits["charged"] == emu.stats()["credits"]["charged"] == planned.credits["estimated"]
    assert set(ledger(tmp_path)["status"]) == {"DOWNLOADED"}
    assert_summary(summary.to_dict())

    again = pipeline.run_batch(manifest, ledger=tmp_path / "ledger.parquet", out=tmp_path / "out", rpm=0)
    assert again.exit_code == 0 and again.rows["skipped"] == 4 and again.rows["submitted"] == 0
    with pytest.raises(TypeError):
        pipeline.run_batch(manifest, max_credit=5)  # a misspelt option is an error, not ignored
    bad = pipeline.run_batch(manifest, ledger=tmp_path / "ledger.parquet", deadline="soon")
    assert bad.exit_code == 2 and "--deadline 'soon'" in bad.error


def test_importing_pipeline_stays_cheap():
    code = "import sys, pipeline; print(sorted(m for m in ('polars', 'aiohttp', 'pipeline.batch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
