"""The API key is never printed, logged or stored: search everything a run leaves behind.

Covers: pipeline/cli.py pipeline/batch.py pipeline/run/runlog.py pipeline/redact.py pipeline/config.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.api.client import ApiClient, ApiError
from pipeline.emulator import EmulatorConfig, EmulatorThread, Faults
from pipeline.redact import redact, register_secret
from tests.harness import cli_env, prompts, run_args, run_cli, write_manifest

SECRET = "afk_live_Zq8WmX2pLr7Ks9NvT4bY"


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_no_trace_of_the_key_after_good_and_failing_runs(tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(6))
    faults = Faults(seed=5, error_503=0.2, fail_generation=0.3, truncate_download=0.3, drop_after_create=0.2)
    outputs = []
    with EmulatorThread(EmulatorConfig(api_key=SECRET, credits=10_000, time_scale=0.0, rpm=0,
                                       faults=faults)) as emu:
        outputs.append(run_cli(*run_args(manifest, tmp_path, "--retries", "0"), env=cli_env(emu.base_url, key=SECRET),
                               cwd=tmp_path))
        outputs.append(run_cli(*run_args(manifest, tmp_path, "--retry-failed"), env=cli_env(emu.base_url, key=SECRET),
                               cwd=tmp_path))
        # A wrong key that looks like a real one must not be echoed either.
        outputs.append(run_cli(*run_args(manifest, tmp_path, "--retry-failed"),
                               env=cli_env(emu.base_url, key=SECRET[:-4] + "XXXX"), cwd=tmp_path))
        outputs.append(run_cli("status", "--ledger", str(tmp_path / "ledger.parquet"),
                               env=cli_env(emu.base_url, key=SECRET), cwd=tmp_path))
    assert {o.returncode for o in outputs[:3]} <= {0, 1, 3}
    assert (tmp_path / "ledger.parquet").exists() and list((tmp_path / "logs").glob("*.jsonl"))
    for secret in (SECRET, SECRET[:-4] + "XXXX", SECRET[4:]):
        assert files_containing(tmp_path, secret.encode()) == []
        for o in outputs:
            assert secret not in o.stdout and secret not in o.stderr


def test_error_text_that_echoes_a_body_is_redacted():
    register_secret(SECRET)
    error = ApiError(f'POST /v2/videos/generate -> 400 {{"error": "bad key {SECRET}", "hint": "afk_other_key_123"}}')
    assert SECRET not in str(error) and "afk_other_key_123" not in str(error)
    assert "afk_***" in redact("key afk_abcdef0123 leaked")


def test_client_repr_hides_the_key():
    client = ApiClient("http://127.0.0.1:9", SECRET)
    assert SECRET not in repr(client) and SECRET not in repr(vars(client).get("base_url"))
