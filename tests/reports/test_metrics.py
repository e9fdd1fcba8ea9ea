"""`--metrics-file`: Prometheus text format read back with prometheus_client's parser, after real runs."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.reports.metrics import LAST_SUCCESS, previous_success
from tests.harness import cli_env, ledger, prompts, run_args, run_cli, write_manifest


def read_metrics(path: Path) -> dict[tuple[str, tuple], float]:
    """{(name, sorted labels without `ledger`): value}; every sample must carry the ledger label."""
    samples = {}
    families = list(text_string_to_metric_families(path.read_text()))
    assert families and all(family.type == "gauge" and family.documentation for family in families)
    for family in families:
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("ledger").endswith("ledger.parquet")
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return samples


def test_metrics_describe_each_run_and_remember_the_last_success(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(3))
    prom = tmp_path / "textfile" / "videobatch.prom"
    env = cli_env(emu.base_url)
    first = run_cli(*run_args(manifest, tmp_path, "--metrics-file", str(prom), "--summary-json", "-"), env=env,
                    cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    metrics = read_metrics(prom)
    ended = metrics[("videobatch_last_run_end_timestamp_seconds", ())]
    assert ended == pytest.approx(datetime.fromisoformat(summary["ended_at"]).timestamp(), abs=1e-3)
    assert metrics[("videobatch_last_run_exit_code", ())] == 0
    assert metrics[(LAST_SUCCESS, ())] == ended
    rows = ledger(tmp_path)
    assert metrics[("videobatch_last_run_credits_charged", ())] == summary["credits"]["charged"] == 50
    assert metrics[("videobatch_ledger_credits_charged", ())] == rows["credits_charged"].sum() == 50
    assert metrics[("videobatch_ledger_rows", (("status", "DOWNLOADED"),))] == 3
    assert metrics[("videobatch_ledger_rows", (("status", "FAILED"),))] == 0
    assert metrics[("videobatch_last_run_rows", (("outcome", "downloaded"),))] == 3
    assert metrics[("videobatch_last_run_requests", ())] == summary["requests"]["total"] > 0
    assert metrics[("videobatch_last_run_rate_limited_requests", ())] == 0
    assert stat.S_IMODE(prom.stat().st_mode) & 0o044 == 0o044  # node_exporter, another user, reads it
    assert sorted(p.name for p in prom.parent.iterdir()) == ["videobatch.prom"]  # no temporary left

    # A run that fails: its exit code and time replace the last run's; the last success stays.
    emu.configure(faults={"fail_generation": 1.0})
    write_manifest(manifest, prompts(3) + prompts(1, "squall"))
    second = run_cli(*run_args(manifest, tmp_path, "--retries", "0", "--metrics-file", str(prom)), env=env,
                     cwd=tmp_path)
    assert second.returncode == 1, second.stdout + second.stderr
    again = read_metrics(prom)
    assert again[("videobatch_last_run_exit_code", ())] == 1
    assert again[("videobatch_last_run_end_timestamp_seconds", ())] > ended
    assert again[(LAST_SUCCESS, ())] == ended
    assert again[("videobatch_ledger_rows", (("status", "FAILED"),))] == 1
    assert again[("videobatch_last_run_rows", (("outcome", "skipped"),))] == 3
    assert again[("videobatch_last_run_credits_charged", ())] == 0  # failed jobs are refunded


def test_the_last_success_survives_a_ledger_that_lost_its_runs_table(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", prompts(1))
    prom = tmp_path / "videobatch.prom"
    env = cli_env(emu.base_url)
    assert run_cli(*run_args(manifest, tmp_path, "--metrics-file", str(prom)), env=env, cwd=tmp_path).returncode == 0
    succeeded = previous_success(prom)
    assert succeeded > 0
    os.remove(tmp_path / "runs.parquet")  # e.g. a ledger folder restored without it
    refused = run_cli(*run_args(tmp_path / "missing.yaml", tmp_path, "--metrics-file", str(prom)), env=env,
                      cwd=tmp_path)
    assert refused.returncode == 2
    metrics = read_metrics(prom)
    assert metrics[("videobatch_last_run_exit_code", ())] == 2
    assert metrics[(LAST_SUCCESS, ())] == succeeded
