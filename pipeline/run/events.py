"""Observes the run: writes its log lines and counts its progress. A reporter: the runner and its
steps tell it what happened; it decides nothing and hands nothing back."""

from __future__ import annotations

import socket
import time
from typing import Any

from pipeline.redact import redact
from pipeline.run.progress import Counters
from pipeline.run.runlog import RunLog
from pipeline.run.work import Work
from pipeline.store.faults import disk_fault
from pipeline.store.schema import COMPLETED, FAILED


class RunEvents:
    def __init__(self, log: RunLog, counters: Counters):
        self.log = log
        self.counters = counters

    # -- the run as a whole --

    def run_start(self, run_id: str, plan: Any, account: Any) -> None:
        self.log.event("run_start", run_id=run_id, manifest=str(plan.manifest),
                       counts=plan.counts, credits_planned=plan.credits_to_spend,
                       account=str(account) if account else None)

    def run_end(self, *, requests: int, rate_limited: int, tracking_requests: int, missed_by_lists: int,
                verify_cpu_s: float, ledger_stats: dict[str, Any]) -> None:
        # What the run cost in requests and durable writes: for operators, and for `make bench`.
        self.log.event("run_end", host=socket.gethostname(), requests=requests,
                       rate_limited=rate_limited, tracking_requests=tracking_requests,
                       missed_by_lists=missed_by_lists,
                       verify_cpu_seconds=round(verify_cpu_s, 3), ledger=ledger_stats)

    def flush(self) -> None:
        try:
            self.log.flush()
        except OSError as exc:
            raise disk_fault(exc, self.log.path) from None

    def planned(self, rows: int, credits: int) -> None:
        """The rows this run must bring to DOWNLOADED (those already done are not its work) and
        what the plan expects them to cost."""
        self.counters.planned = rows
        self.counters.credits_planned = credits

    def webhooks(self, host: str, port: int) -> None:
        self.log.event("webhooks", listen=f"{host}:{port}")

    def new_version(self, job_key: str, archived: str) -> None:
        self.log.event("new_version", job_key=job_key, archived_as=archived)

    def storage_failed(self, where: str, error: str) -> None:
        self.log.event("storage_failed", where=where, error=error)

    def internal_error(self, job_key: str | None, where: str, error: str, traceback: str) -> None:
        self.log.event("internal_error", job_key=job_key, where=where, error=error, traceback=traceback)

    def left_out(self, work: Work, retry: bool) -> None:
        """--max-credits left this attempt out: a first one is no longer this run's work."""
        if not retry:
            self.counters.left_out += 1
        self.log.event("left_out", job_key=work.job_key, credits=int(work.row["credits_estimated"]), retry=retry)

    def stop_submitting(self, reason: str) -> None:
        self.log.event("stop_submitting", reason=reason)

    # -- submitting --

    def submit(self, work: Work, resume: bool) -> None:
        self.log.event("submit", job_key=work.job_key, attempt=work.recorded.attempts,
                       idempotency_key=work.recorded.idempotency_key, resume=resume)

    def reused_job(self, work: Work, job_id: str, payer: str) -> None:
        self.log.event("reused_job", job_key=work.job_key, job_id=job_id, paid_by=payer)

    def submitted(self, work: Work, job_id: str, note: str | None) -> None:
        self.counters.submitted += 1
        self.log.event("submitted", job_key=work.job_key, job_id=job_id, attempt=work.recorded.attempts,
                       note=note)

    def adopted_by_content(self, work: Work, job_id: str | None) -> None:
        self.log.event("adopted_by_content", job_key=work.job_key, job_id=job_id)

    def old_intent(self, work: Work, step: str, reason: str | None) -> None:
        self.log.event("old_intent", job_key=work.job_key, step=step, reason=reason)

    def retry_generate(self, work: Work, reason: str | None) -> None:
        self.log.event("retry", what="generate", job_key=work.job_key, reason=redact(reason or ""),
                       next_attempt=work.recorded.attempts + 1)

    # -- following --

    def retry_track(self, exc: BaseException) -> None:
        self.log.event("retry", what="track", reason=redact(str(exc)))

    def uncertain(self, work: Work, step: str, reason: str | None) -> None:
        self.log.event("uncertain", job_key=work.job_key, job_id=work.job_id, step=step,
                       reason=redact(reason or ""), count=work.uncertain)

    def status_failed(self, work: Work, reason: str | None) -> None:
        self.log.event("status", job_key=work.job_key, job_id=work.job_id, status=FAILED,
                       error=redact(reason or ""))

    def completed(self, work: Work, first: bool) -> None:
        """COMPLETED: counted once, at its first result URL (not at a fresh one after a CDN 404)."""
        if first:
            self.counters.finished += 1
        self.log.event("status", job_key=work.job_key, job_id=work.job_id, status=COMPLETED,
                       credits=work.recorded.credits_charged)

    def charged(self, before: int, after: int | None) -> None:
        self.counters.credits_charged += (after or 0) - before

    # -- downloading --

    def retry_download(self, work: Work, exc: BaseException, attempt: int) -> None:
        self.log.event("retry", what="download", job_key=work.job_key, reason=redact(str(exc)), attempt=attempt)

    def downloaded(self, work: Work, path: str, size: int, sha256: str) -> None:
        self.counters.downloaded += 1
        if self.counters.first_download_at is None:  # the downloads' pace is timed from here (the ETA)
            self.counters.first_download_at = time.monotonic()
        self.log.event("download", job_key=work.job_key, path=path, bytes=size, sha256=sha256)

    # -- endings --

    def failed(self, work: Work, reason: str) -> None:
        self.log.event("error", job_key=work.job_key, reason=reason)
        self.counters.finished += 1
        self.counters.failed += 1

    def left(self, work: Work, reason: str) -> None:
        self.log.event("error", job_key=work.job_key, job_id=work.job_id, reason=reason, unfinished=True)
