"""The asyncio pool that carries a Plan out: submit -> track -> download, every step journaled.

The runner holds queues and tasks; what each answer means for a row (and for money) is decided
in pipeline/run/transitions.py, and `_apply` carries the decision out. Invariants:
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
import dataclasses
import hashlib
import json
import os
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.run import transitions as t
from pipeline.run.account import Account, account_path, settle_account
from pipeline.api.client import ApiClient, ApiError, AuthError, DownloadError, NotFound, TransientError
from pipeline.api.retry import RetryPolicy
from pipeline.api.uploads import LocalImage, UploadCache
from pipeline.run.deadline import Deadline
from pipeline.store.archive import archived_name, base_key, is_archived
from pipeline.run.download import download_video, video_path
from pipeline.models import get_model
from pipeline.run.payers import JobPayers
from pipeline.plan.actions import (DOWNLOAD, LEAVE_FAILED, NEW_VERSION, REGENERATE, RESUME, RETRY, ROW_FIELDS, SKIP,
                           SUBMIT, TRACK, Plan, versions_to_follow)
from pipeline.run.progress import Counters, Progress
from pipeline.redact import redact
from pipeline.run.references import ReferenceChanged, named, read_references
from pipeline.run.runlog import RunLog
from pipeline.run.spending import Spending
from pipeline.store.faults import StorageFault, disk_fault
from pipeline.store.ledger import Ledger
from pipeline.store.schema import COMPLETED, FAILED, PENDING, RUNS_SCHEMA
from pipeline.run.outcome import ExitCode
from pipeline.run.tracker import Observation, Tracker, find_by_content, find_in_job_list, read_job

SUBMIT_PARALLEL = 32  # submit calls in the air at once; the rate limiter is the real pace
DOWNLOAD_RETRY = RetryPolicy(attempts=4, base=1.0, cap=8.0, jitter=False)  # 4 tries, 1, 2, 4 s apart
STOP_GRACE_S = 2.0  # after Ctrl-C, time for submits already sent to bring back their job_id
REPLAY_PAUSE = RetryPolicy(base=1.0, cap=30.0, jitter=False)  # before replaying a key after a 409: 1, 2, 4 ... 30 s


@dataclass
class RunOptions:
    out_dir: Path
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


@dataclass
class RunResult:
    run_id: str
    exit_code: ExitCode
    stop_reason: str | None
    counters: Counters
    credits_estimated: int  # attempts started in this run, at the model's price
    credits_charged: int  # creditCost reported for this run's jobs (net of refunds)
    rows_finished: int
    rows_failed: int
    rows_expired: int
    rows_unfinished: int
    requests: int
    rate_limited: int
    started_at: datetime
    ended_at: datetime
    failures: list[tuple[str, str]] = field(default_factory=list)  # (job_key, reason)
    unfinished: list[tuple[str, str]] = field(default_factory=list)  # (job_key, reason), left for the next run
    account: Account | None = None

    @property
    def rows_submitted(self) -> int:
        """Submits that got a job_id in this run."""
        return self.counters.submitted

    def to_runs_row(self, plan: Plan, *, emulated: bool, log_path: Path) -> dict[str, Any]:
        """This run as a row of the runs table: the only code that builds one."""
        account = self.account
        row = {
            "run_id": self.run_id, "manifest": str(plan.manifest), "emulated": emulated,
            "started_at": self.started_at, "ended_at": self.ended_at,
            "rows_planned": plan.rows.height, "rows_skipped": plan.counts.get(SKIP, 0),
            "rows_submitted": self.rows_submitted, "rows_finished": self.rows_finished,
            "rows_failed": self.rows_failed, "credits_estimated": self.credits_estimated,
            "credits_charged": self.credits_charged, "exit_code": int(self.exit_code),
            "log_path": str(log_path),
            "account_user_id": account.user_id if account else None,
            "account_team_id": account.team_id if account else None,
            "account_key_id": account.key_id if account else None,
            "rows_unfinished": self.rows_unfinished, "stop_reason": self.stop_reason,
        }
        return {name: row[name] for name in RUNS_SCHEMA}  # a column missing here fails loudly


@dataclass(frozen=True)
class Recorded:
    """The ledger columns a row's next step depends on, as last recorded.

    Never edited: `Runner._record` replaces it from the very fields it writes to the ledger, so
    it cannot drift from the ledger's row (names are the ledger's columns)."""

    attempts: int = 0
    job_id: str | None = None
    credits_prior: int = 0
    credits_charged: int = 0
    video_url: str | None = None
    idempotency_key: str | None = None
    request_body: str | None = None
    first_sent_at: datetime | None = None

    @classmethod
    def of(cls, row: dict[str, Any], prefix: str = "") -> Recorded:
        """From a ledger row, or from the plan's copy of it (columns prefixed `ledger_`)."""
        values = {name: row.get(prefix + name) for name in _RECORDED}
        for name in ("attempts", "credits_prior", "credits_charged"):
            values[name] = values[name] or 0
        return cls(**values)

    def after(self, fields: dict[str, Any]) -> Recorded:
        changed = {name: value for name, value in fields.items() if name in _RECORDED}
        return dataclasses.replace(self, **changed) if changed else self

    @property
    def first_sent(self) -> float | None:
        """Epoch seconds the current intent was first sent."""
        return self.first_sent_at.timestamp() if self.first_sent_at is not None else None


_RECORDED = tuple(f.name for f in dataclasses.fields(Recorded))


@dataclass
class Work:
    """A row this run is responsible for: its manifest fields, what the ledger has recorded of
    it, and what this run alone counts."""

    job_key: str
    row: dict[str, Any]  # manifest fields
    recorded: Recorded = Recorded()
    uncertain: int = 0  # uncertain answers about the current job or intent, this run
    after_cdn_404: bool = False  # the next read follows a CDN 404 for video_url

    @property
    def duration(self) -> int:
        return int(self.row["duration"])

    @property
    def job_id(self) -> str | None:
        return self.recorded.job_id

    @property
    def superseded(self) -> bool:
        """An archived version (`<key>@<hash>`): followed to its end, never paid for again."""
        return is_archived(self.job_key)


def body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def idempotency_key(job_key: str, attempt: int, request: bytes) -> str:
    """Derived from what the row asks for: `request` is the body with each local reference image
    named by its content's sha256 and no webhook (`key_request`), never a URL the API handed back.
    So a rerun that lost its journal and uploads again reaches the same key: within 24 h the API
    answers with the original job, or a 409 for the new body (CONTRACT.md, Idempotency-Key; the
    SDK's ConflictError), after which the job is found by content (`_adopt_by_content`) or the
    row stays in flight: never a second paid job."""
    return f"vb-{job_key}-a{attempt}-{hashlib.sha256(request).hexdigest()[:16]}"


def key_request(row: dict[str, Any], refs: list[str | LocalImage]) -> bytes:
    """The request a key is derived from. The webhook is left out: where events go is not what
    the row asks for, and a tunnel's URL that changed since must not make a new key."""
    body = get_model(row["model"]).request_body(row["prompt"], int(row["duration"]), row["aspect_ratio"],
                                              [named(ref) for ref in refs])
    return body_bytes(body)


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
        self.log = log
        self.run_id = ledger.run_id or "run"
        self.counters = Counters()
        self.progress_interval = progress_interval
        self.progress_bars = progress_bars
        self.uploads = UploadCache(client)
        rate = (options.rpm / options.rate_period) if options.rpm else None
        self.tracker = Tracker(client, rate_per_second=rate, min_interval=options.poll_min_interval,
                               max_interval=options.poll_max_interval)
        self.work: dict[str, Work] = {}  # job_key -> Work, every row this run touches
        self.by_job_id: dict[str, Work] = {}
        self.submit_queue: deque[tuple[Work, bool]] = deque()  # (work, resume?)
        self.downloads: asyncio.Queue[Work] = asyncio.Queue()
        self.active: set[str] = set()  # rows taken on (holding a concurrency slot), not yet let go
        self.feeding = True
        self.stop_reason: str | None = None
        self.submits_stopped = False
        self.hard_stopped = False
        self.internal_error: str | None = None  # the first exception a task raised, in one line
        self.account: Account | None = None
        self.spending = Spending(options.max_credits, options.deadline)
        self.rows_expired = 0
        self.unfinished: dict[str, str] = {}  # job_key -> why it is left for the next run
        self.failures: dict[str, str] = {}
        self._spawned: set[asyncio.Task] = set()
        self._finished = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._tracker_wake = asyncio.Event()
        self._submitting = 0
        self.verify_cpu_s = 0.0  # CPU spent checking videos with PyAV, for the run log
        self.payers = JobPayers(ledger)

    # -- lifecycle --

    async def run(self) -> RunResult:
        started = _now()
        progress = Progress(self.counters, interval=self.progress_interval, bars=self.progress_bars)
        refused = await self._check_account()
        if refused:
            self.hard_stop(refused)
            progress.close()
            return self._result(started)
        try:
            self._load_plan()
        except StorageFault as exc:  # an old version's video could not be moved aside: nothing was sent
            self._note_internal_error(None, exc, "archiving an edited row's old version")
            progress.close()
            return self._result(started)
        self.log.event("run_start", run_id=self.run_id, manifest=str(self.plan.manifest),
                       counts=self.plan.counts, credits_planned=self.plan.credits_to_spend,
                       account=str(self.account) if self.account else None)
        receiver = await self._start_webhooks()
        tasks = [
            asyncio.create_task(self._submit_loop(), name="submit"),
            asyncio.create_task(self._track_loop(), name="track"),
            asyncio.create_task(self._checkpoint_loop(progress), name="checkpoint"),
            *(asyncio.create_task(self._download_loop(), name=f"download-{i}")
              for i in range(self.options.download_concurrency)),
        ]
        self._check_finished()
        try:
            waiter = asyncio.create_task(self._finished.wait())
            running = {waiter, *tasks}
            while not waiter.done():
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not waiter and not task.cancelled() and task.exception():
                        # A bug in a loop: never hang on it. Its rows stay in flight in the ledger.
                        self._note_internal_error(None, task.exception(), task.get_name())
                        self.hard_stop(self.internal_error)
        finally:
            for task in [*tasks, *self._spawned]:
                task.cancel()
            await asyncio.gather(*tasks, *self._spawned, return_exceptions=True)
            if receiver is not None:
                await receiver.stop()
            try:
                self.ledger.checkpoint()
            except StorageFault as exc:  # the journal still holds every line: the rerun replays it
                self._note_internal_error(None, exc, "checkpoint")
            progress.close()
        return self._result(started)

    async def _check_account(self) -> str | None:
        """Which account this key belongs to, and whether it may follow this ledger's jobs."""
        in_flight = sum(self.plan.counts.get(action, 0) for action in (TRACK, DOWNLOAD, RESUME))
        try:
            self.account, refused = await settle_account(self.client, self.ledger, self.options.ledger_path,
                                                         in_flight, bool(self.plan.credits_to_spend), self.log)
        except OSError as exc:  # the account file could not be written (a full disk): nothing was sent
            fault = disk_fault(exc, account_path(self.options.ledger_path))
            self.log.event("storage_failed", where="account file", error=str(fault))
            return str(fault)
        return refused

    async def _start_webhooks(self):
        if not self.options.webhook_listen:
            return None
        from pipeline.api.webhooks import WebhookReceiver

        def on_hint(job_id: str) -> None:
            if self.tracker.hint(job_id):
                self._tracker_wake.set()

        host, port = self.options.webhook_listen
        receiver = WebhookReceiver(self.client.api_key_for_webhooks(), on_hint, host, port)
        await receiver.start()
        self.log.event("webhooks", listen=f"{host}:{port}")
        return receiver

    def _load_plan(self) -> None:
        replaced = self.plan.rows.filter(pl.col("action").is_in([NEW_VERSION, REGENERATE]))["job_key"]
        archived = [self._archive_old_version(key) for key in replaced if key in self.ledger]
        # An edited row's old version may hold a paid job not yet downloaded: followed like any row.
        self.plan.follow(versions_to_follow(self.ledger.rows(archived)))
        wanted = self.plan.to_run(longest_first=self.options.max_credits is None)
        self.counters.planned = wanted.height
        for record in wanted.iter_rows(named=True):
            work = Work(record["job_key"], {name: record[name] for name in ROW_FIELDS},
                        Recorded.of(record, prefix="ledger_"))
            self.work[work.job_key] = work
            action = record["action"]
            if action == NEW_VERSION:  # the key has no ledger row now: the next attempt starts afresh
                work.recorded = Recorded()
            elif action == REGENERATE:  # numbering goes on: a new Idempotency-Key, so a new video, not the old job
                work.recorded = Recorded(attempts=record["attempts_before"])
            if action in (SUBMIT, RETRY, NEW_VERSION, REGENERATE):
                self.submit_queue.append((work, False))
            elif action == RESUME:
                self.submit_queue.appendleft((work, True))  # they may already exist: settle them first
            elif action == TRACK:
                self._take_on(work)
                self.by_job_id[work.job_id] = work
                # Made by an earlier run: read on its own first, since no list depth is known for it.
                self.tracker.add(work.job_id, work.job_key, work.duration, resumed=True)
            elif action == DOWNLOAD and work.recorded.video_url is None:  # no URL to fetch: read the job
                self._take_on(work)
                self.by_job_id[work.job_id] = work
                self.tracker.add(work.job_id, work.job_key, work.duration, resumed=True)
            elif action == DOWNLOAD:
                self._take_on(work)
                self.by_job_id[work.job_id] = work
                self.downloads.put_nowait(work)

    def _archive_old_version(self, job_key: str) -> str:
        """Same id, edited request: keep the old row and its video under `<key>@<old hash>`."""
        old = self.ledger.get(job_key) or {}
        archived = archived_name(job_key, old.get("request_hash"), taken=self.ledger)
        old_path = old.get("output_path")
        new_path = video_path(self.options.out_dir, archived)
        if old_path and os.path.exists(old_path):
            # The video moves first: if it cannot, the ledger still says the row is where it was,
            # and the new version is never downloaded over the old one's paid clip.
            try:
                os.replace(old_path, new_path)
            except OSError as exc:
                raise disk_fault(exc, old_path) from None
        self.ledger.rename(job_key, archived)
        if old_path and os.path.exists(new_path):  # moved now, or by a run killed before its journal said so
            self.ledger.record(archived, output_path=str(new_path))
        self.log.event("new_version", job_key=job_key, archived_as=archived)
        return archived

    def _take_on(self, work: Work) -> None:
        self.active.add(work.job_key)

    def _release(self, work: Work) -> None:
        self.active.discard(work.job_key)
        self._slot_freed.set()
        self._check_finished()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def _check_finished(self) -> None:
        if not self.feeding and not self.active and self._submitting == 0:
            self._finished.set()

    async def _guarded(self, work: Work, coro: Any) -> None:
        """Run one row's step; an exception in our own code leaves the row in flight, never hangs."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._note_internal_error(work, exc, "task")
            if work.job_key in self.active:
                self._leave(work, self.internal_error or "internal error")

    def _note_internal_error(self, work: Work | None, exc: BaseException, where: str) -> None:
        if isinstance(exc, StorageFault):  # not a bug: our disk failed; one line says which file and what to do
            line = str(exc)
            self.log.event("storage_failed", where=where, error=line)
            if self.internal_error is None:
                self.internal_error = self.stop_reason = line
            self.hard_stop(line)
            return
        line = f"internal error in {where}: {type(exc).__name__}: {redact(str(exc))[:200]}; see the run log"
        self.internal_error = self.internal_error or line
        self.log.event("internal_error", job_key=work.job_key if work else None, where=where,
                       error=f"{type(exc).__name__}: {exc}",
                       traceback="".join(traceback.format_exception(exc)))

    # -- stopping --

    def stop_submitting(self, reason: str) -> None:
        if not self.submits_stopped:
            self.submits_stopped = True
            self.stop_reason = self.stop_reason or reason
            self.log.event("stop_submitting", reason=reason)
            self._slot_freed.set()

    def hard_stop(self, reason: str) -> None:
        self.stop_submitting(reason)
        self.hard_stopped = True
        self._finished.set()

    def interrupt(self, name: str) -> None:
        """A first Ctrl-C or SIGTERM: no new submits; submits already sent get a moment to bring
        back their job_id, then everything is saved and the run ends (exit 3)."""
        print(f"\n{name}: no new submits; saving and stopping (interrupt again to quit at once)", flush=True)
        self.stop_submitting(f"interrupted ({name})")
        if self._submitting == 0:
            self.hard_stop(f"interrupted ({name})")
        else:
            asyncio.get_running_loop().call_later(STOP_GRACE_S, self.hard_stop, f"interrupted ({name})")

    # -- carrying out decisions --

    def _record(self, work: Work, **fields: Any) -> None:
        """The only way a row of this run changes: in the ledger, and so in its Recorded view."""
        if "credits_charged" in fields:
            self.counters.credits_charged += (fields["credits_charged"] or 0) - work.recorded.credits_charged
        self.ledger.record(work.job_key, **fields)
        work.recorded = work.recorded.after(fields)

    def _row(self, work: Work) -> t.Row:
        held = work.recorded
        return t.Row(
            attempts=held.attempts, job_id=held.job_id, video_url=held.video_url,
            credits_prior=held.credits_prior, credits_charged=held.credits_charged,
            pays=work.job_id is None or self.payers.claim(work.job_id, work.job_key) == work.job_key,
            may_spend=not work.superseded and not self.submits_stopped
            and self.spending.affords(int(work.row["credits_estimated"])),
            superseded=work.superseded,
            uncertain=work.uncertain, after_cdn_404=work.after_cdn_404,
        )

    async def _apply(self, work: Work, decision: t.Decision, *, stop_message: str | None = None,
                     sent: float | None = None, resumed: bool = False) -> None:
        """Record what the decision says, then take its next step."""
        newly_completed = work.recorded.video_url is None  # its first result URL, not a fresh one
        if decision.fields:
            self._record(work, **decision.fields)
        if decision.stop is t.Stop.SUBMITS:
            self.stop_submitting(stop_message or decision.reason or "stopped")
        elif decision.stop is t.Stop.RUN:
            self.hard_stop(stop_message or decision.reason or "stopped")
        step = decision.step
        if step in (t.Step.REREAD, t.Step.REPLAY):
            work.uncertain += 1
            self.log.event("uncertain", job_key=work.job_key, job_id=work.job_id, step=step.value,
                           reason=redact(decision.reason or ""), count=work.uncertain)
        if decision.fields.get("status") == FAILED:
            self.log.event("status", job_key=work.job_key, job_id=work.job_id, status=FAILED,
                           error=redact(decision.reason or ""))
        if step is t.Step.FOLLOW:
            work.uncertain = 0
            if work.job_id not in self.tracker.pending:
                self.tracker.add(work.job_id, work.job_key, work.duration, sent=sent, resumed=resumed)
                self._tracker_wake.set()
        elif step is t.Step.READ_NOW:
            self._spawn(self._guarded(work, self._read_now(work)))
        elif step is t.Step.REREAD:
            self.tracker.add(work.job_id, work.job_key, work.duration, reread=work.uncertain)
            self._tracker_wake.set()
        elif step is t.Step.FETCH:
            if newly_completed:
                self.counters.finished += 1
            work.after_cdn_404 = False
            self.log.event("status", job_key=work.job_key, job_id=work.job_id, status=COMPLETED,
                           credits=work.recorded.credits_charged)
            await self.downloads.put(work)
        elif step is t.Step.REPLAY:
            self._submitting += 1
            self._spawn(self._replay_later(work))
        elif step is t.Step.RESUBMIT:
            if self._admit(work):
                self.log.event("retry", what="generate", job_key=work.job_key, reason=redact(decision.reason or ""),
                               next_attempt=work.recorded.attempts + 1)
                self._submitting += 1
                self._spawn(self._submit(work, resume=False))
            else:
                self._final(work, decision.reason or "failed")
        elif step is t.Step.LEAVE:
            self._leave(work, decision.reason or "left for the next run")
        elif step is t.Step.DONE:
            self._release(work)
        elif step is t.Step.FAIL:
            if decision.fields.get("expired"):
                self.rows_expired += 1
            self._final(work, decision.reason or "failed")

    # -- submitting --

    async def _submit_loop(self) -> None:
        gate = asyncio.Semaphore(SUBMIT_PARALLEL)
        try:
            while self.submit_queue and not self.submits_stopped:
                work, resume = self.submit_queue.popleft()
                while len(self.active) >= self.options.concurrency and not self.submits_stopped:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                if self.submits_stopped or not self._admit(work):
                    break
                await gate.acquire()
                if self.submits_stopped:
                    gate.release()
                    break
                self._take_on(work)
                self._submitting += 1
                self._spawn(self._submit(work, resume, gate))
        finally:
            self.feeding = False
            self._check_finished()

    def _admit(self, work: Work) -> bool:
        """A new paid attempt for `work` if the budget and the deadline allow it; else stop submitting."""
        refused = self.spending.admit(int(work.row["credits_estimated"]), work.duration, self.tracker.observed)
        if refused:
            self.stop_submitting(refused)
        return refused is None

    async def _prepare_attempt(self, work: Work) -> bytes | None:
        """New attempt: read and check local images once, upload those bytes, build the body,
        journal the intent (not yet durable). None: the row is left unsent, with the reason."""
        row = work.row
        model = get_model(row["model"])
        try:
            refs = await asyncio.to_thread(read_references, row)
            references = [ref if isinstance(ref, str) else await self.uploads.url_for(ref) for ref in refs]
        except (ApiError, OSError, ReferenceChanged) as exc:  # nothing was sent
            self._leave(work, f"not submitted: {redact(str(exc))}")
            return None
        body = body_bytes(model.request_body(row["prompt"], int(row["duration"]), row["aspect_ratio"],
                                             references, webhook_url=self.options.webhook_url))
        attempt = work.recorded.attempts + 1
        charged = work.recorded.credits_charged  # what earlier attempts cost stays on the row
        work.uncertain = 0
        self._record(
            work, **row, status=PENDING, attempts=attempt,
            idempotency_key=idempotency_key(work.job_key, attempt, key_request(row, refs)),
            request_body=body.decode(), credits_prior=charged, credits_charged=charged, job_id=None,
            video_url=None, expired=False, error=None, completed_at=None, first_sent_at=_now(),
        )
        return body

    async def _submit(self, work: Work, resume: bool, gate: asyncio.Semaphore | None = None) -> None:
        try:
            await self._guarded(work, self._submit_attempt(work, resume))
        finally:
            if gate is not None:
                gate.release()
            self._submitting -= 1
            self._check_finished()

    async def _submit_attempt(self, work: Work, resume: bool) -> None:
        intent = work.recorded
        if resume and intent.request_body and intent.idempotency_key:
            if not t.replay_allowed(intent.first_sent, time.time(), self.client.measured_offset):
                await self._settle_old_intent(work)
                return
            body = intent.request_body.encode()  # the journaled bytes, never rebuilt
        else:
            body = await self._prepare_attempt(work)
            if body is None:
                return
        await self.ledger.commit()  # the intent is on disk before the request leaves
        await self._send(work, body, resume)

    async def _send(self, work: Work, body: bytes, resume: bool) -> None:
        """POST the journaled bytes under the journaled key, and act on the answer."""
        key = work.recorded.idempotency_key
        self.log.event("submit", job_key=work.job_key, attempt=work.recorded.attempts,
                       idempotency_key=key, resume=resume)
        sent = time.time()  # the job cannot be older: bounds how far back tracking pages
        answer, error, detail, stop_message = None, None, "", None
        try:
            answer = await self.client.submit(body, key)
        except (ApiError, OSError) as exc:
            error, detail = t.submit_error(exc), redact(str(exc))
            stop_message = getattr(exc, "stop_reason", None)  # 401/403 and 402 say what to do
        decision = t.after_submit(self._row(work), answer, error, self.limits, detail)
        if error is t.SubmitError.CONFLICT and work.uncertain == 0 and await self._adopt_by_content(work):
            return
        if "job_id" in decision.fields:
            await self._accept(work, decision.fields["job_id"], decision)
            decision = t.Decision(decision.step, {}, decision.reason)  # recorded by _accept
        await self._apply(work, decision, stop_message=stop_message, sent=sent, resumed=resume)

    async def _accept(self, work: Work, job_id: str, decision: t.Decision) -> None:
        """The API named the job for this intent: journal it before anything else."""
        work.uncertain = 0
        payer = self.payers.claim(job_id, work.job_key)
        if payer != work.job_key:
            # The same request under the same key within the API's 24 h (a prompt edited back to
            # an earlier version): the API handed back that version's job and charged nothing.
            self.log.event("reused_job", job_key=work.job_key, job_id=job_id, paid_by=payer)
        self.by_job_id[job_id] = work
        self._record(work, **decision.fields, submitted_at=_now())
        await self.ledger.commit()
        self.counters.submitted += 1
        self.log.event("submitted", job_key=work.job_key, job_id=job_id, attempt=work.recorded.attempts,
                       note=decision.reason)

    async def _replay_later(self, work: Work) -> None:
        """After a 409 or an answer without a job id: the same bytes, the same key, after a pause."""
        try:
            await asyncio.sleep(REPLAY_PAUSE.delay(work.uncertain))
            body = work.recorded.request_body
            if not self.hard_stopped and body:
                await self._guarded(work, self._send(work, body.encode(), resume=True))
        finally:
            self._submitting -= 1
            self._check_finished()

    async def _adopt_by_content(self, work: Work) -> bool:
        """A first 409 for an intent with local reference images: the key (named by their content)
        may have made a job with an earlier upload's URL (a rerun that lost its journal). Adopt
        that job if the list shows it and its image URLs still serve our bytes; else False, and
        the 409 is replayed as any other (CONTRACT.md: a 409 is never a reason for a new key)."""
        try:
            refs = await asyncio.to_thread(read_references, work.row)
        except (OSError, ReferenceChanged):
            return False
        local = {i: ref.sha256 for i, ref in enumerate(refs) if isinstance(ref, LocalImage)}
        if not local:
            return False
        job = await find_by_content(
            self.client, body=json.loads(work.recorded.request_body or "{}"),
            params_field=get_model(work.row["model"]).params_field, local=local,
            taken=lambda job_id: self._held_by_another_id(job_id, work.job_key))
        if job is None:
            return False
        decision = t.after_search(self._row(work), t.Search(job, complete=True))
        self.log.event("adopted_by_content", job_key=work.job_key, job_id=decision.fields.get("job_id"))
        await self._accept(work, decision.fields["job_id"], decision)
        await self._apply(work, t.Decision(t.Step.READ_NOW))
        return True

    def _held_by_another_id(self, job_id: str, job_key: str) -> bool:
        """A job another row pays for, other than an earlier version of this id: a row edited back
        to an earlier request shares that version's job, counted once by its first row (invariant
        7), as a replay of its key would hand it back had the upload URL not changed."""
        payer = self.payers.first(job_id)
        return payer is not None and base_key(payer) != base_key(job_key)

    async def _settle_old_intent(self, work: Work) -> None:
        """An intent without a job_id first sent over 23 h ago: its key may no longer settle a
        replay. Find its job in the list; only a list read back past the first send with no match
        makes a new key safe."""
        offset = self.client.measured_offset  # every comparison with the API's clock goes through it
        search = await find_in_job_list(
            self.client, model=work.row["model"], body=json.loads(work.recorded.request_body or "{}"),
            bound=t.search_bound(work.recorded.first_sent, offset), why_unbounded=t.clock_disagreement(offset),
            taken=lambda job_id: self.payers.taken_by_other(job_id, work.job_key))
        decision = t.after_search(self._row(work), search)
        self.log.event("old_intent", job_key=work.job_key, step=decision.step.value, reason=decision.reason)
        if decision.step is t.Step.READ_NOW:
            await self._accept(work, decision.fields["job_id"], decision)
            await self._apply(work, t.Decision(t.Step.READ_NOW))
        elif decision.step is t.Step.RESUBMIT:  # its budget was reserved when it was queued
            body = await self._prepare_attempt(work)
            if body is not None:
                await self.ledger.commit()
                await self._send(work, body, resume=False)
        else:
            await self._apply(work, decision)


    # -- tracking --

    async def _read_now(self, work: Work) -> None:
        try:
            seen = await read_job(self.client, work.job_id)
        except AuthError as exc:
            await self._apply(work, t.after_read(self._row(work), None, t.ReadError.AUTH, self.limits, str(exc)),
                              stop_message=exc.stop_reason)
            return
        await self._apply(work, t.after_read(self._row(work), seen.job, seen.error, self.limits, seen.detail))

    async def _track_loop(self) -> None:
        while True:
            await self._leave_timed_out()
            if not self.tracker.pending:
                self._tracker_wake.clear()
                await self._tracker_wake.wait()
                continue
            delay = self.tracker.next_delay(bool(self.submit_queue) and not self.submits_stopped,
                                            self.options.job_timeout)
            if delay > 0:
                self._tracker_wake.clear()
                try:  # a new submit may make an earlier poll worth it
                    await asyncio.wait_for(self._tracker_wake.wait(), timeout=delay)
                    continue
                except asyncio.TimeoutError:
                    pass
            try:
                observations = await self.tracker.poll()
            except AuthError as exc:
                self.hard_stop(exc.stop_reason)
                return
            except (ApiError, OSError) as exc:
                self.log.event("retry", what="track", reason=redact(str(exc)))
                await asyncio.sleep(self.options.poll_min_interval)
                continue
            for seen in observations:
                await self._observe(seen)

    async def _observe(self, seen: Observation) -> None:
        work = self.by_job_id.get(seen.job_id)
        if work is None or work.job_key not in self.active or work.job_id != seen.job_id:
            return
        try:
            decision = t.after_read(self._row(work), seen.job, seen.error, self.limits, seen.detail)
            await self._apply(work, decision)
        except Exception as exc:  # our own bug, for this row only
            self._note_internal_error(work, exc, "track")
            if work.job_key in self.active:
                self._leave(work, self.internal_error or "internal error")

    async def _leave_timed_out(self) -> None:
        if self.options.job_timeout is None:
            return
        for job_id in list(self.tracker.pending):
            work = self.by_job_id.get(job_id)
            decision = t.job_timed_out(self._row(work), self.tracker.waited(job_id), self.options.job_timeout) \
                if work is not None else None
            if decision is not None:
                self.tracker.discard(job_id)
                self._spawn(self._guarded(work, self._last_read(work, decision)))

    async def _last_read(self, work: Work, timed_out: t.Decision) -> None:
        """One more read before a job is left at --job-timeout (transitions.after_last_read)."""
        try:
            seen = await read_job(self.client, work.job_id)
            job, error = seen.job, seen.error
        except AuthError:
            job, error = None, t.ReadError.AUTH
        await self._apply(work, t.after_last_read(self._row(work), job, error, self.limits, timed_out))

    # -- downloading --

    async def _download_loop(self) -> None:
        model_sizes: dict[tuple[str, str], tuple[int, int]] = {}
        while True:
            work = await self.downloads.get()
            row = work.row
            key = (row["model"], row["aspect_ratio"])
            if key not in model_sizes:
                model_sizes[key] = get_model(row["model"]).frame_size(row["aspect_ratio"])
            await self._guarded(work, self._download(work, model_sizes[key]))

    async def _download(self, work: Work, frame_size: tuple[int, int]) -> None:
        final = video_path(self.options.out_dir, work.job_key)
        if self.hard_stopped:
            return

        def log_retry(exc: BaseException, attempt: int, _delay: float) -> None:
            self.log.event("retry", what="download", job_key=work.job_key, reason=redact(str(exc)), attempt=attempt)

        try:
            saved = await DOWNLOAD_RETRY.run(
                lambda: download_video(self.client, work.recorded.video_url, final, duration=work.duration,
                                       frame_size=frame_size, max_bytes=self.options.max_download_bytes,
                                       verify=self.options.verify_videos),
                retry_on=(TransientError, DownloadError, OSError), on_retry=log_retry,
                should_stop=lambda: self.hard_stopped)
        except NotFound:
            work.uncertain += 1
            work.after_cdn_404 = True
            await self._apply(work, t.after_download(self._row(work), t.DownloadOutcome.CDN_NOT_FOUND,
                                                     limits=self.limits))
            return
        except (TransientError, DownloadError, OSError) as exc:
            if self.hard_stopped:
                return
            # The video exists at the API: a later run downloads it again without generating it again.
            await self._apply(work, t.after_download(self._row(work), t.DownloadOutcome.FAILED_TRIES,
                                                     f"{DOWNLOAD_RETRY.attempts} tries: {redact(str(exc))}",
                                                     limits=self.limits))
            return
        self.verify_cpu_s += saved.verify_cpu_s
        decision = t.after_download(self._row(work), t.DownloadOutcome.SAVED, limits=self.limits)
        self._record(work, **decision.fields, output_path=str(saved.path), bytes=saved.bytes,
                     sha256=saved.sha256, downloaded_at=_now())
        await self.ledger.commit()
        self.counters.downloaded += 1
        self.log.event("download", job_key=work.job_key, path=str(saved.path), bytes=saved.bytes,
                       sha256=saved.sha256)
        await self._apply(work, t.Decision(decision.step))

    # -- endings --

    def _final(self, work: Work, reason: str) -> None:
        reason = redact(reason)
        self.log.event("error", job_key=work.job_key, reason=reason)
        self.counters.finished += 1
        self.failures[work.job_key] = reason
        self.counters.failed += 1
        self._release(work)

    def _leave(self, work: Work, reason: str) -> None:
        reason = redact(reason)
        self.unfinished[work.job_key] = reason
        self.log.event("error", job_key=work.job_key, job_id=work.job_id, reason=reason, unfinished=True)
        self._release(work)

    async def _checkpoint_loop(self, progress: Progress) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            progress.update()
            try:
                self.log.flush()
            except OSError as exc:
                raise disk_fault(exc, self.log.path) from None
            if time.monotonic() - last >= self.options.checkpoint_every:
                await self.ledger.checkpoint_async()
                last = time.monotonic()

    def _result(self, started: datetime) -> RunResult:
        mine = self.ledger.rows(list(self.work), ["status"])
        statuses = dict.fromkeys(self.work) | dict(zip(mine["job_key"].to_list(), mine["status"].to_list()))
        left_failed = self.plan.rows.filter(self.plan.rows["action"] == LEAVE_FAILED)["job_key"].to_list()
        outcome = t.run_outcome(statuses, left_failed, stopped=self.hard_stopped or self.submits_stopped
                                or bool(self.internal_error))
        # Rows that failed in an earlier run keep the reason the ledger has for them.
        failed_rows = self.ledger.rows(sorted(outcome.failed), ["error"])
        errors = dict(zip(failed_rows["job_key"].to_list(), failed_rows["error"].to_list()))
        failures = [(k, self.failures.get(k) or errors.get(k) or "") for k in sorted(outcome.failed)]
        left = [(k, self.unfinished[k]) for k in sorted(outcome.unfinished) if k in self.unfinished]
        unfinished = len(outcome.unfinished)
        return RunResult(
            run_id=self.run_id, exit_code=outcome.exit_code,
            stop_reason=self.stop_reason or self.internal_error
            or (f"{unfinished} rows unfinished" if unfinished else None),
            counters=self.counters, credits_estimated=self.spending.started,
            credits_charged=self.counters.credits_charged, rows_finished=outcome.downloaded,
            rows_failed=len(outcome.failed), rows_expired=self.rows_expired, rows_unfinished=unfinished,
            requests=self.client.gate.requests, rate_limited=self.client.rate_limited,
            started_at=started, ended_at=_now(), failures=failures, unfinished=left, account=self.account,
        )
