"""The asyncio pool that carries a Plan out: submit -> track -> download, every step journaled.

Wires the run: the runner holds the rows, the tasks and the steps, and carries each decision out.
Each step owns one concern and calls one lower step: Submitter (run/submit.py; an old intent is
settled by run/old_intents.py) -> Follower (run/follow.py) -> Fetcher (run/fetch.py), each handing
what the API said to `Runner.apply`. What each answer means for a row (and for money) is decided
in pipeline/run/transitions.py; the stop flags in run/control.py; log lines and counters are
observed by run/events.py; the tally and exit code in run/outcome.py. Invariants:
- the intent to submit (attempt number, exact body, Idempotency-Key) is durable before the
  request leaves; the job_id is journaled as soon as it arrives;
- a row with a job_id is never submitted again; a resumed submit replays the journaled bytes
  with the journaled key, so the API answers with the original job; past the 24 h replay
  window the job list is searched for it first;
- only a definite FAILED or CANCELLED read for the row's own job starts a new paid attempt;
- 402, the budget, or a first Ctrl-C stop new submits; 401/403 or a second Ctrl-C stop at once;
- no task can hang the run: an exception in one leaves its row in flight, goes to the run log
  with its traceback, and ends the run with exit 3; a job still generating past --job-timeout
  is left in flight too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.api.client import ApiClient
from pipeline.plan.actions import DOWNLOAD, LEAVE_FAILED, RESUME, TRACK, Plan
from pipeline.redact import redact
from pipeline.run import transitions as t
from pipeline.run.account import Account, NoContact, account_path, settle_account
from pipeline.run.control import Control
from pipeline.run.deadline import Deadline
from pipeline.run.events import RunEvents
from pipeline.run.fetch import Fetcher
from pipeline.run.follow import Follower
from pipeline.run.intake import load_plan
from pipeline.run.old_intents import OldIntents
from pipeline.run.outcome import RunResult, Tally, stop_reason
from pipeline.run.payers import JobPayers
from pipeline.run.progress import Counters, Progress, gauge
from pipeline.run.runlog import RunLog
from pipeline.run.spending import Spending
from pipeline.run.submit import Submitter
from pipeline.run.work import Work
from pipeline.store.faults import StorageFault, disk_fault
from pipeline.store.ledger import Ledger
from pipeline.store.schema import FAILED


@dataclass
class RunOptions:
    out_dir: Path  # where videos are downloaded and verified (with out_url: staged before upload)
    out_url: str | None = None  # a store prefix (--out s3://...): each verified video is put in its videos/
    rpm: int | None = 500
    rate_period: float = 60.0
    concurrency: int = 1000  # jobs in flight (submitted, not yet downloaded or failed)
    max_credits: int | None = None
    retries: int = 2  # new attempts after a FAILED generation
    download_concurrency: int = 8
    max_download_bytes: int = 512 * 1024 * 1024
    verify_videos: bool = True
    poll_min_interval: float = 1.0
    poll_max_interval: float = 30.0
    checkpoint_every: float = 30.0
    webhook_url: str | None = None  # public URL Apiframe posts events to
    webhook_listen: tuple[str, int] | None = None  # where our receiver listens
    job_timeout: float | None = 1800.0  # a job still generating this long after its submit is left
    ledger_path: Path | None = None  # where the account owning the in-flight jobs is kept
    deadline: Deadline | None = None  # no submit that could not finish by then

    @property
    def limits(self) -> t.Limits:
        return t.Limits(retries=self.retries)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Runner:
    def __init__(self, ledger: Ledger, client: ApiClient, plan: Plan, options: RunOptions,
                 log: RunLog, *, progress_interval: float = 10.0, progress_bars: bool | None = None):
        self.ledger = ledger
        self.client = client
        self.plan = plan
        self.options = options
        self.limits = options.limits
        self.run_id = ledger.run_id or "run"
        self.counters = Counters()
        self.events = RunEvents(log, self.counters)
        self.progress_interval = progress_interval
        self.progress_bars = progress_bars
        self.work: dict[str, Work] = {}  # job_key -> Work, every row this run touches
        self.by_job_id: dict[str, Work] = {}
        self.active: set[str] = set()  # rows taken on (holding a concurrency slot), not yet let go
        self.account: Account | None = None
        self.no_contact: NoContact | None = None  # the first request found no API or refused the key
        self.spending = Spending(options.max_credits, options.deadline)
        self.tally = Tally()
        self.payers = JobPayers(ledger)
        self._spawned: set[asyncio.Task] = set()
        self._finished = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self.submitter = Submitter(self)
        self.old_intents = OldIntents(self)
        self.follower = Follower(self)
        self.fetcher = Fetcher(self)
        self.control = Control(self.events, on_submits_stopped=self._slot_freed.set,
                               on_hard_stop=self._finished.set, submits_in_air=lambda: self.submitter.in_air)

    # -- lifecycle --

    async def run(self) -> RunResult:
        started = _now()
        progress = Progress(self.counters, interval=self.progress_interval, bars=self.progress_bars,
                            gauge=lambda: gauge(self))
        refused = await self._check_account()
        if refused:
            self.control.hard_stop(refused)
            progress.close()
            return self._result(started)
        try:
            load_plan(self)
        except StorageFault as exc:  # an old version's video could not be moved aside: nothing was sent
            self.control.note_internal_error(None, exc, "archiving an edited row's old version")
            progress.close()
            return self._result(started)
        self.events.run_start(self.run_id, self.plan, self.account)
        receiver = await self._start_webhooks()
        tasks = [
            asyncio.create_task(self.submitter.loop(), name="submit"),
            asyncio.create_task(self.follower.loop(), name="track"),
            asyncio.create_task(self._checkpoint_loop(progress), name="checkpoint"),
            *(asyncio.create_task(self.fetcher.loop(), name=f"download-{i}")
              for i in range(self.options.download_concurrency)),
        ]
        self.check_finished()
        try:
            await self._wait(tasks)
        finally:
            for task in [*tasks, *self._spawned]:
                task.cancel()
            await asyncio.gather(*tasks, *self._spawned, return_exceptions=True)
            if receiver is not None:
                await receiver.stop()
            try:
                self.ledger.checkpoint()
            except StorageFault as exc:  # the journal still holds every line: the rerun replays it
                self.control.note_internal_error(None, exc, "checkpoint")
            progress.close()
        return self._result(started)

    async def _wait(self, tasks: list[asyncio.Task]) -> None:
        waiter = asyncio.create_task(self._finished.wait())
        running = {waiter, *tasks}
        while not waiter.done():
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and not task.cancelled() and task.exception():
                    # A bug in a loop: never hang on it. Its rows stay in flight in the ledger.
                    self.control.note_internal_error(None, task.exception(), task.get_name())
                    self.control.hard_stop(self.control.internal_error)

    async def _check_account(self) -> str | None:
        """Which account this key belongs to, and whether it may follow this ledger's jobs."""
        in_flight = sum(self.plan.counts.get(action, 0) for action in (TRACK, DOWNLOAD, RESUME))
        try:
            self.account, refused = await settle_account(self.client, self.ledger, self.options.ledger_path,
                                                         in_flight, bool(self.plan.credits_to_spend),
                                                         self.events.log)
        except OSError as exc:  # the account file could not be written (a full disk): nothing was sent
            fault = disk_fault(exc, account_path(self.options.ledger_path))
            self.events.storage_failed("account file", str(fault))
            return str(fault)
        except NoContact as exc:  # nothing was sent that costs: the run ends with the exit code it says
            self.no_contact = exc
            return str(exc)
        return refused

    async def _start_webhooks(self):
        if not self.options.webhook_listen:
            return None
        # Lazy: the receiver's HTTP server (aiohttp) is needed only with --webhook-listen.
        from pipeline.api.webhooks import WebhookReceiver

        host, port = self.options.webhook_listen
        receiver = WebhookReceiver(self.client.api_key_for_webhooks(), self.follower.hint, host, port)
        await receiver.start()
        self.events.webhooks(host, port)
        return receiver

    def log_run_end(self) -> None:
        """The run's cost in requests and durable writes, as the run log's last line."""
        self.events.run_end(requests=self.client.gate.requests, rate_limited=self.client.rate_limited,
                            tracking_requests=self.follower.tracker.requests,
                            missed_by_lists=self.follower.tracker.missed_by_lists,
                            verify_cpu_s=self.fetcher.verify_cpu_s,
                            # the table's commits and commit conflicts (retried) beside the journal's
                            ledger_stats=dict(self.ledger.stats, **self.ledger.table.stats))

    # -- rows and tasks --

    def take_on(self, work: Work) -> None:
        self.active.add(work.job_key)

    def _release(self, work: Work) -> None:
        self.active.discard(work.job_key)
        self._slot_freed.set()
        self.check_finished()

    async def slot_free(self) -> None:
        """Until fewer than --concurrency rows are in flight, or submits stop."""
        while len(self.active) >= self.options.concurrency and not self.control.submits_stopped:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def check_finished(self) -> None:
        if not self.submitter.feeding and not self.active and self.submitter.in_air == 0:
            self._finished.set()

    async def guarded(self, work: Work, coro: Any) -> None:
        """Run one row's step; an exception in our own code leaves the row in flight, never hangs."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.control.note_internal_error(work.job_key, exc, "task")
            if work.job_key in self.active:
                self.leave(work, self.control.internal_error or "internal error")

    # -- carrying out decisions --

    def record(self, work: Work, **fields: Any) -> None:
        """The only way a row of this run changes: in the ledger, and so in its Recorded view."""
        if "credits_charged" in fields:
            self.events.charged(work.recorded.credits_charged, fields["credits_charged"])
        self.ledger.record(work.job_key, **fields)
        work.recorded = work.recorded.after(fields)

    def row(self, work: Work) -> t.Row:
        held = work.recorded
        return t.Row(
            attempts=held.attempts, job_id=held.job_id, video_url=held.video_url,
            credits_prior=held.credits_prior, credits_charged=held.credits_charged,
            pays=work.job_id is None or self.payers.claim(work.job_id, work.job_key) == work.job_key,
            # The budget is asked at the attempt itself (Submitter.admit), so a retry it leaves out is named.
            may_spend=not work.superseded and not self.control.submits_stopped,
            superseded=work.superseded,
            uncertain=work.uncertain, after_cdn_404=work.after_cdn_404,
        )

    async def apply(self, work: Work, decision: t.Decision, *, stop_message: str | None = None,
                    sent: float | None = None, resumed: bool = False) -> None:
        """Record what the decision says, then take its next step."""
        newly_completed = work.recorded.video_url is None  # its first result URL, not a fresh one
        if decision.fields:
            self.record(work, **decision.fields)
        if decision.stop is t.Stop.SUBMITS:
            self.control.stop_submitting(stop_message or decision.reason or "stopped")
        elif decision.stop is t.Stop.RUN:
            self.control.hard_stop(stop_message or decision.reason or "stopped")
        step = decision.step
        if step in (t.Step.REREAD, t.Step.REPLAY):
            work.uncertain += 1
            self.events.uncertain(work, step.value, decision.reason)
        if decision.fields.get("status") == FAILED:
            self.events.status_failed(work, decision.reason)
        if step is t.Step.FOLLOW:
            work.uncertain = 0
            self.follower.follow(work, sent=sent, resumed=resumed)
        elif step is t.Step.READ_NOW:
            self.spawn(self.guarded(work, self.follower.read_now(work)))
        elif step is t.Step.REREAD:
            self.follower.reread(work)
        elif step is t.Step.FETCH:
            work.after_cdn_404 = False
            self.events.completed(work, first=newly_completed)
            await self.fetcher.queue.put(work)
        elif step is t.Step.REPLAY:
            self.submitter.replay(work)
        elif step is t.Step.RESUBMIT:
            if not self.submitter.retry(work, decision.reason):
                self._final(work, decision.reason or "failed")
        elif step is t.Step.LEAVE:
            self.leave(work, decision.reason or "left for the next run")
        elif step is t.Step.DONE:
            self._release(work)
        elif step is t.Step.FAIL:
            if decision.fields.get("expired"):
                self.tally.rows_expired += 1
            self._final(work, decision.reason or "failed")

    # -- endings --

    def _final(self, work: Work, reason: str) -> None:
        reason = redact(reason)
        self.events.failed(work, reason)
        self.tally.failures[work.job_key] = reason
        self._release(work)

    def leave(self, work: Work, reason: str) -> None:
        reason = redact(reason)
        self.tally.unfinished[work.job_key] = reason
        self.events.left(work, reason)
        self._release(work)

    async def _checkpoint_loop(self, progress: Progress) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            progress.update()
            self.events.flush()
            if time.monotonic() - last >= self.options.checkpoint_every:
                await self.ledger.checkpoint_async()
                last = time.monotonic()

    def _result(self, started: datetime) -> RunResult:
        mine = self.ledger.rows(list(self.work), ["status"])
        statuses = dict.fromkeys(self.work) | dict(zip(mine["job_key"].to_list(), mine["status"].to_list()))
        left_failed = self.plan.rows.filter(self.plan.rows["action"] == LEAVE_FAILED)["job_key"].to_list()
        outcome = t.run_outcome(statuses, left_failed, stopped=self.control.ended_short)
        failed_rows = self.ledger.rows(sorted(outcome.failed), ["error"])
        errors = dict(zip(failed_rows["job_key"].to_list(), failed_rows["error"].to_list()))
        unfinished = len(outcome.unfinished)
        return RunResult(
            run_id=self.run_id, exit_code=self.no_contact.exit_code if self.no_contact else outcome.exit_code,
            stop_reason=stop_reason(self.control.stop_reason or self.spending.left_out_line(),
                                    self.control.internal_error, unfinished),
            counters=self.counters, credits_estimated=self.spending.started,
            credits_charged=self.counters.credits_charged, rows_finished=outcome.downloaded,
            rows_failed=len(outcome.failed), rows_expired=self.tally.rows_expired, rows_unfinished=unfinished,
            requests=self.client.gate.requests, rate_limited=self.client.rate_limited,
            started_at=started, ended_at=_now(), failures=self.tally.failure_reasons(outcome.failed, errors),
            unfinished=self.tally.unfinished_reasons(outcome.unfinished), account=self.account,
            budget_left=None if self.control.stop_reason else self.spending.left_out(),
        )
