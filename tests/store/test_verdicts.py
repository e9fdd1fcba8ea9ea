"""The review decisions log beside the ledger reads like the journal: only an unterminated last
line is torn; a complete line that is not a decision is named, never skipped in silence."""

from __future__ import annotations

import pytest

from pipeline.store.verdicts import VerdictsCorrupt, VerdictLog, verdicts_path, read_verdicts
from tests.harness import cli_env, run_cli, write_manifest

DECISION = {"job_key": "boat", "decision": "approve", "at": "2026-12-02T06:00:00+00:00"}


@pytest.mark.parametrize("damage", [b"[]\n", b'"approve"\n', b'{"job_key": "boat", "at": "yesterday"}\n',
                                    b'{"job_key": "bo\n'])
def test_a_complete_line_that_is_not_a_decision_is_named(tmp_path, damage):
    ledger = tmp_path / "ledger.parquet"
    VerdictLog(ledger).append(DECISION)
    with open(verdicts_path(ledger), "ab") as log:
        log.write(damage)  # the last line, and complete: not a torn write
    with pytest.raises(VerdictsCorrupt, match=r"line 2 is complete but is not a decision"):
        read_verdicts(ledger)
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "boat", "prompt": "a paper boat"}])
    done = run_cli("plan", str(manifest), "--ledger", str(ledger), env=cli_env("http://127.0.0.1:9"), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "line 2 is complete but is not a decision" in done.stderr


def test_a_torn_last_line_is_skipped_and_the_next_decision_does_not_join_it(tmp_path):
    ledger = tmp_path / "ledger.parquet"
    VerdictLog(ledger).append(DECISION)
    with open(verdicts_path(ledger), "ab") as log:
        log.write(b'{"job_key": "koi", "decis')  # a crash mid-append: never acknowledged
    assert read_verdicts(ledger)["job_key"].to_list() == ["boat"]
    VerdictLog(ledger).append({**DECISION, "job_key": "koi", "decision": "reject"})
    decisions = read_verdicts(ledger)
    assert decisions.select("job_key", "decision").rows() == [("boat", "approve"), ("koi", "reject")]
