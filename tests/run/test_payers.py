"""Who pays for a job: the first ledger row to record its job id, asked of a real ledger.

The runs that hand one job to two rows (tests/scenarios/test_pay_once.py, test_shared_ids.py)
drive this end to end; here are the rules alone, on rows kept in the session and in stored parts.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.run.payers import JobPayers
from pipeline.store.archive import archived_name
from pipeline.store.ledger import Ledger

EARLY = datetime(2026, 11, 24, 1, 0, 0, tzinfo=timezone.utc)
LATER = EARLY + timedelta(minutes=5)


@pytest.fixture
def ledger(tmp_path):
    with Ledger.open(tmp_path / "ledger.parquet", run_id="r1") as opened:
        yield opened


def _stored(ledger: Ledger) -> Ledger:
    """The same rows read back from the ledger's parts, not from this session's memory."""
    ledger.checkpoint()
    path = ledger.path
    ledger.close()
    return Ledger.open(path, run_id="r2")


@pytest.mark.parametrize("reopen", [False, True], ids=["session", "stored"])
def test_the_row_that_recorded_a_job_first_pays_for_it(ledger, reopen):
    ledger.record("late", status="SUBMITTED", job_id="job-1", submitted_at=LATER)
    ledger.record("early", status="SUBMITTED", job_id="job-1", submitted_at=EARLY)
    ledger.record("other", status="SUBMITTED", job_id="job-2", submitted_at=EARLY)
    books = _stored(ledger) if reopen else ledger
    try:
        payers = JobPayers(books)
        assert payers.first("job-1") == "early"
        assert payers.claim("job-1", "late") == "early"  # a later row never takes the payment over
        assert payers.taken_by_other("job-1", "late") and not payers.taken_by_other("job-1", "early")
        assert payers.first("job-2") == "other"
    finally:
        if reopen:
            books.close()


def test_an_archived_version_that_recorded_the_job_first_keeps_paying_for_it(ledger):
    # A prompt edited back to an earlier version within the API's 24 h: the API hands back the
    # job the archived version paid for, and the current row must not count it again.
    ledger.record("hero", status="DOWNLOADED", job_id="job-1", request_hash="aaaa1111", submitted_at=EARLY)
    old = archived_name("hero", "aaaa1111")
    ledger.rename("hero", old)
    ledger.record("hero", status="SUBMITTED", job_id="job-1", request_hash="aaaa1111", submitted_at=LATER)
    payers = JobPayers(ledger)
    assert payers.first("job-1") == old
    assert payers.claim("job-1", "hero") == old
    assert payers.taken_by_other("job-1", "hero")
    assert not payers.taken_by_other("job-1", old)


def test_a_job_no_row_recorded_is_paid_by_its_first_claimant_for_the_rest_of_the_run(ledger):
    payers = JobPayers(ledger)
    assert payers.first("job-new") is None
    assert not payers.taken_by_other("job-new", "a")  # nobody pays yet: nobody else took it
    assert payers.claim("job-new", "a") == "a"
    assert payers.claim("job-new", "b") == "a"  # kept for the run, before the ledger records it
    assert payers.taken_by_other("job-new", "b") and not payers.taken_by_other("job-new", "a")


def test_a_row_without_a_job_is_taken_by_nobody(ledger):
    ledger.record("a", status="SUBMITTED", job_id="job-1", submitted_at=EARLY)
    payers = JobPayers(ledger)
    assert not payers.taken_by_other(None, "b")
    assert not payers.taken_by_other("", "b")
