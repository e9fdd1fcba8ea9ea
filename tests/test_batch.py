"""pipeline/batch.py, the library's entry point: a run on the built-in emulator in-process, its plan,
and the options refused before anything is read (exit 2, as the CLI would exit)."""

from __future__ import annotations

import pytest

from pipeline.batch import plan_batch, run_batch
from pipeline.run.outcome import EXIT_BAD_INPUT, EXIT_OK
from pipeline.store.ledger import read_ledger
from tests.harness import prompts, write_manifest


def test_an_emulated_run_downloads_every_row_and_a_second_run_has_nothing_to_do(tmp_path):
    manifest = write_manifest(tmp_path / "batch.yaml", prompts(2))
    options = dict(emulate=True, out=tmp_path / "out", emulator_time_scale=0.0, poll_interval=0.05,
                   progress_interval=3600)
    planned = plan_batch(manifest, ledger=tmp_path / "out" / "ledger.parquet", emulate=True)
    assert planned.exit_code == EXIT_OK and planned.plan.rows.height == 2
    first = run_batch(manifest, **options)
    assert first.exit_code == EXIT_OK and first.error is None
    rows = read_ledger(tmp_path / "out" / "ledger.parquet")
    assert set(rows["status"]) == {"DOWNLOADED"} and rows.height == 2
    again = run_batch(manifest, **options)
    assert again.exit_code == EXIT_OK and read_ledger(tmp_path / "out" / "ledger.parquet").height == 2


REFUSED = [  # options -> part of the message
    (dict(emulate=True, webhook_listen=("127.0.0.1", 0)), "--webhook-listen and --webhook-url go together"),
    (dict(dialect=("v1",)), "--dialect shapes the built-in emulator"),
    (dict(emulate=True, deadline="not a time"), "deadline"),
]


@pytest.mark.parametrize("options, message", REFUSED, ids=[r[1][:20] for r in REFUSED])
def test_options_refused_before_the_manifest_is_read(tmp_path, options, message):
    summary = run_batch(tmp_path / "no-such-manifest.yaml", out=tmp_path / "out", **options)
    assert summary.exit_code == EXIT_BAD_INPUT and message in summary.error
    assert not (tmp_path / "out" / "ledger.parquet").exists()


def test_no_key_without_emulate_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    summary = run_batch(tmp_path / "batch.yaml", out=tmp_path / "out")
    assert summary.exit_code == EXIT_BAD_INPUT and summary.error.startswith("no API key")
