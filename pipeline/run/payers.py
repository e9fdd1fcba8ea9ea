"""Decides who pays for a job: the first ledger row to record its job id (ARCHITECTURE.md, invariant 7).

A job handed back to a second row (a prompt edited back to an earlier version within the API's
24 h) is counted once, by its first row. The answer comes from the ledger once per job id and is
kept for the run.
"""

from __future__ import annotations


class JobPayers:
    """The payer of each job id a run meets: asked of the ledger once, then kept (and claimed)."""

    def __init__(self, ledger):
        self.ledger = ledger
        self._payers: dict[str, str | None] = {}  # job_id -> the row that pays for it

    def first(self, job_id: str) -> str | None:
        """The row that first recorded `job_id`, or None if no row has."""
        if job_id not in self._payers:
            self._payers[job_id] = self.ledger.first_payer(job_id)
        return self._payers[job_id]

    def claim(self, job_id: str, job_key: str) -> str:
        """The row that pays for `job_id`: its first recorder, else `job_key` from now on."""
        payer = self.first(job_id)
        if payer is None:
            payer = self._payers[job_id] = job_key
        return payer

    def taken_by_other(self, job_id: str | None, job_key: str) -> bool:
        """Another row already pays for `job_id`: `job_key` must not count or adopt it."""
        payer = self.first(job_id) if job_id else None
        return payer is not None and payer != job_key
