"""The asyncio pool that carries a Plan out: submit -> track -> download, every step journaled.

Invariants that keep credits safe (DESIGN.md, "Job state machine"):
- the intent to submit (attempt number, exact body, Idempotency-Key) is durable before the
  request leaves; the job_id is journaled as soon as it arrives;
- a row with a job_id is never submitted again; a resumed submit replays the journaled bytes
  with the journaled key, so the API answers with the original job;
- 402, the budget, or a first Ctrl-C stop new submits; 401/403 or a second Ctrl-C stop at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from pipeline.client import (
    ApiClient,
    ApiError,
    AuthError,
    DownloadError,
    IdempotencyConflict,
    InsufficientCredits,
    NotFound,
    RejectedRequest,
    TransientError,
)
from pipeline.download import download_video, video_path
from pipeline.ledger import Ledger
from pipeline.models import get_model
from pipeline.plan import DOWNLOAD, NEW_VERSION, RESUME, RETRY, SUBMIT, TRACK, Plan
from pipeline.progress import Counters, Progress
from pipeline.redact import redact
from pipeline.runlog import RunLog
from pipeline.schema import COMPLETED, DOWNLOADED, FAILED, PENDING, PROCESSING, REJECTED, SUBMITTED
from pipeline.tracker import Tracker, parse_api_time
from pipeline.uploads import UploadCache

# Manifest columns copied into the ledger with every new attempt.
ROW_FIELDS = ("manifest", "row", "variation", "prompt", "duration", "aspect_ratio",
              "reference_images", "model", "metadata", "request_hash", "credits_estimated")
SUBMIT_PARALLEL = 32  # submit calls in the air at once; the rate limiter is the real pace
DOWNLOAD_TRIES = 4
STOP_GRACE_S = 2.0  # after Ctrl-C, time for submits already sent to bring back their job_id


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


@dataclass
class RunResult:
    run_id: str
    exit_code: int
    stop_reason: str | None
    counters: Counters
    credits_estimated: int  # attempts started in this run, at the model's price
    credits_charged: int  # creditCost reported for this run's jobs (net of refunds)
    rows_submitted: int
    rows_finished: int
    rows_failed: int
    rows_expired: int
    rows_unfinished: int
    requests: int
    rate_limited: int
    started_at: datetime
    ended_at: datetime
    failures: list[tuple[str, str]] = field(default_factory=list)  # (job_key, reason)


@dataclass
class Work:
    """A row this run is responsible for."""

    job_key: str
    row: dict[str, Any]  # manifest fields
    attempts: int = 0
    job_id: str | None = None
    credits_prior: int = 0
    credits_charged: int = 0  # as in the ledger at the last update
    video_url: str | None = None
    idempotency_key: str | None = None
    request_body: str | None = None

    @property
    def duration(self) -> int:
        return int(self.row["duration"])


def body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def idempotency_key(job_key: str, attempt: int, body: bytes) -> str:
    """Derived from the body it guards: a different body can never reuse a key (the API says 409)."""
    return f"vb-{job_key}-a{attempt}-{hashlib.sha256(body).hexdigest()[:16]}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def result_url(job: dict[str, Any]) -> str | None:
    result = job.get("result")
    if isinstance(result, dict):
        if isinstance(result.get("videoUrl"), str):
            return result["videoUrl"]
        videos = result.get("videos")
        if isinstance(videos, list) and videos and isinstance(videos[0], str):
            return videos[0]
    return None


class Runner:
    def __init__(self, ledger: Ledger, client: ApiClient, plan: Plan, options: RunOptions,
                 log: RunLog, *, progress_interval: float = 10.0, progress_bars: bool | None = None):
        self.ledger = ledger
        self.client = client
        self.plan = plan
        self.options = options
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
        self.active = 0  # rows taken on and not yet final
        self.in_flight = 0  # rows holding a concurrency slot
        self.feeding = True
        self.stop_reason: str | None = None
        self.submits_stopped = False
        self.hard_stopped = False
        self.spend_started = 0  # credits_estimated of attempts started this run
        self.rows_submitted = 0
        self.rows_expired = 0
        self.unfinished: set[str] = set()
        self.failures: dict[str, str] = {}
        self._resume_tracking: list[Work] = []  # rows a previous run left in flight
        self._spawned: set[asyncio.Task] = set()
        self._finished = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._tracker_wake = asyncio.Event()
        self._submitting = 0
        self.verify_cpu_s = 0.0  # CPU spent checking videos with PyAV, for the run log
        self._job_owners: dict[str, str] | None = None  # job_id -> the row that pays for it

    # -- lifecycle --

    async def run(self) -> RunResult:
        started = _now()
        self._load_plan()
        progress = Progress(self.counters, interval=self.progress_interval, bars=self.progress_bars)
        self.log.event("run_start", run_id=self.run_id, manifest=str(self.plan.manifest),
                       counts=self.plan.counts, credits_planned=self.plan.credits_to_spend)
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
                        raise task.exception()  # a bug in a loop: surface it rather than hang
        finally:
            for task in [*tasks, *self._spawned]:
                task.cancel()
            await asyncio.gather(*tasks, *self._spawned, return_exceptions=True)
            if receiver is not None:
                await receiver.stop()
            self.ledger.checkpoint()
            progress.close()
        return self._result(started)

    async def _start_webhooks(self):
        if not self.options.webhook_listen:
            return None
        from pipeline.webhooks import WebhookReceiver

        def on_hint(job_id: str) -> None:
            if self.tracker.hint(job_id):
                self._tracker_wake.set()

        host, port = self.options.webhook_listen
        receiver = WebhookReceiver(self.client.api_key_for_webhooks(), on_hint, host, port)
        await receiver.start()
        self.log.event("webhooks", listen=f"{host}:{port}", url=self.options.webhook_url)
        return receiver

    def _load_plan(self) -> None:
        rows = self.plan.rows
        self.counters.planned = rows.height - self.plan.counts.get("skip", 0) - self.plan.counts.get("failed", 0)
        wanted = rows.filter(~rows["action"].is_in(["skip", "failed"]))
        if self.options.max_credits is None:
            # Longest clips first: they take longest to generate, so the batch ends sooner. Under
            # a budget the manifest's order decides what gets made, so it is kept.
            wanted = wanted.sort("duration", descending=True, maintain_order=True)
        for record in wanted.iter_rows(named=True):
            work = Work(
                job_key=record["job_key"],
                row={name: record[name] for name in ROW_FIELDS},
                attempts=record["ledger_attempts"] or 0,
                job_id=record["ledger_job_id"],
                credits_prior=record["ledger_credits_prior"] or 0,
                credits_charged=record["ledger_credits_charged"] or 0,
                video_url=record["ledger_video_url"],
                idempotency_key=record["ledger_idempotency_key"],
                request_body=record["ledger_request_body"],
            )
            self.work[work.job_key] = work
            action = record["action"]
            if action == NEW_VERSION:
                self._archive_old_version(work, record["ledger_request_hash"])
            if action in (SUBMIT, RETRY, NEW_VERSION):
                self.submit_queue.append((work, False))
            elif action == RESUME:
                self.submit_queue.appendleft((work, True))  # they may already exist: settle them first
            elif action == TRACK:
                self._take_on(work)
                self.by_job_id[work.job_id] = work
                self._resume_tracking.append(work)
            elif action == DOWNLOAD:
                self._take_on(work)
                self.downloads.put_nowait(work)

    def _archive_old_version(self, work: Work, old_hash: str | None) -> None:
        """Same id, edited request: keep the old row and its video under `<key>@<old hash>`."""
        archived = f"{work.job_key}@{(old_hash or 'old')[:8]}"
        n = 1
        while archived in self.ledger:  # edited back and forth (A, B, A, B): keep every version
            n += 1
            archived = f"{work.job_key}@{(old_hash or 'old')[:8]}-{n}"
        old = self.ledger.get(work.job_key) or {}
        self.ledger.rename(work.job_key, archived)
        old_path = old.get("output_path")
        if old_path and os.path.exists(old_path):
            new_path = video_path(self.options.out_dir, archived)
            os.replace(old_path, new_path)
            self.ledger.record(archived, output_path=str(new_path))
        work.attempts, work.job_id, work.credits_prior, work.credits_charged = 0, None, 0, 0
        work.video_url = work.idempotency_key = work.request_body = None
        self.log.event("new_version", job_key=work.job_key, archived_as=archived)

    def _take_on(self, work: Work) -> None:
        self.active += 1
        self.in_flight += 1

    def _release(self, work: Work) -> None:
        self.active -= 1
        self.in_flight -= 1
        self._slot_freed.set()
        self._check_finished()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def _check_finished(self) -> None:
        if not self.feeding and self.active <= 0 and self._submitting == 0:
            self._finished.set()

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

    # -- submitting --

    async def _submit_loop(self) -> None:
        gate = asyncio.Semaphore(SUBMIT_PARALLEL)
        try:
            while self.submit_queue and not self.submits_stopped:
                work, resume = self.submit_queue.popleft()
                while self.in_flight >= self.options.concurrency and not self.submits_stopped:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                if self.submits_stopped or not self._within_budget(work):
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

    def _within_budget(self, work: Work) -> bool:
        cost = int(work.row["credits_estimated"])
        limit = self.options.max_credits
        if limit is not None and self.spend_started + cost > limit:
            self.stop_submitting(f"budget: --max-credits {limit} reached "
                                 f"({self.spend_started} credits of attempts started)")
            return False
        self.spend_started += cost  # reserved now: submits run concurrently
        return True

    async def _prepare_attempt(self, work: Work) -> bytes:
        """New attempt: upload local images, build the body, journal the intent (not yet durable)."""
        row = work.row
        model = get_model(row["model"])
        references = []
        for ref in row["reference_images"] or []:
            references.append(await self.uploads.url_for(Path(ref)) if not ref.startswith(("http://", "https://")) else ref)
        body = body_bytes(model.request_body(row["prompt"], int(row["duration"]), row["aspect_ratio"],
                                             references, webhook_url=self.options.webhook_url))
        work.attempts += 1
        work.credits_prior = work.credits_charged
        work.idempotency_key = idempotency_key(work.job_key, work.attempts, body)
        work.request_body = body.decode()
        work.job_id = None
        work.video_url = None
        self.ledger.record(
            work.job_key, **row, status=PENDING, attempts=work.attempts,
            idempotency_key=work.idempotency_key, request_body=work.request_body,
            credits_prior=work.credits_prior, credits_charged=work.credits_charged, job_id=None,
            video_url=None, expired=False, error=None, completed_at=None,
        )
        return body

    async def _submit(self, work: Work, resume: bool, gate: asyncio.Semaphore | None = None) -> None:
        try:
            await self._submit_attempt(work, resume)
        finally:
            if gate is not None:
                gate.release()
            self._submitting -= 1
            self._check_finished()

    async def _submit_attempt(self, work: Work, resume: bool) -> None:
        try:
            if resume and work.request_body and work.idempotency_key:
                body = work.request_body.encode()  # the journaled bytes, never rebuilt
            else:
                body = await self._prepare_attempt(work)
            await self.ledger.commit()  # the intent is on disk before the request leaves
            self.log.event("submit", job_key=work.job_key, attempt=work.attempts,
                           idempotency_key=work.idempotency_key, resume=resume)
            sent = time.time()  # the job cannot be older: bounds how far back tracking pages
            accepted = await self.client.submit(body, work.idempotency_key)
        except RejectedRequest as exc:
            self._final(work, REJECTED, f"the API refused the request: {exc}")
            return
        except InsufficientCredits as exc:
            self.stop_submitting(
                f"insufficient credits: a job needs {exc.required}, the account has {exc.available}; "
                "top up and run again to continue")
            self._leave_unfinished(work, "not submitted: insufficient credits")
            return
        except AuthError as exc:
            self._leave_unfinished(work, "not submitted: authentication failed")
            self.hard_stop(f"authentication failed ({exc.status}): check APIFRAME_API_KEY")
            return
        except IdempotencyConflict as exc:
            self._final(work, FAILED, f"BUG, please report: the API says this Idempotency-Key was used with another body ({exc})")
            return
        except (TransientError, ApiError, OSError) as exc:
            # The intent stays journaled: the next run resubmits with the same key.
            self._leave_unfinished(work, f"submit did not get through: {redact(str(exc))}")
            return
        job_id = accepted["jobId"]
        work.job_id = job_id
        owner = self._owner_of(job_id, work.job_key)
        if owner != work.job_key:
            # The same request under the same key within the API's 24 h (a prompt edited back to
            # an earlier version): the API handed back that version's job and charged nothing.
            self.log.event("reused_job", job_key=work.job_key, job_id=job_id, paid_by=owner)
        self.by_job_id[job_id] = work
        self.ledger.record(work.job_key, status=SUBMITTED, job_id=job_id, submitted_at=_now(), error=None)
        await self.ledger.commit()
        self.rows_submitted += 1
        self.counters.submitted += 1
        self.log.event("submitted", job_key=work.job_key, job_id=job_id, attempt=work.attempts)
        status = accepted.get("status")
        if status in ("COMPLETED", "FAILED", "CANCELLED"):
            # An idempotent replay of a job that already ended: read it whole.
            try:
                await self._handle_job(await self.client.get_job(job_id))
                return
            except ApiError:
                pass
        self.tracker.add(job_id, work.job_key, work.duration, sent=sent, resumed=resume)
        self._tracker_wake.set()

    def _owner_of(self, job_id: str, job_key: str) -> str:
        """The row that pays for `job_id`: the first to record it (`job_key` if none has)."""
        if self._job_owners is None:
            self._job_owners = {}
        if job_id not in self._job_owners:
            self._job_owners[job_id] = self.ledger.first_owner(job_id) or job_key
        return self._job_owners[job_id]

    # -- tracking --

    async def _track_loop(self) -> None:
        for work in self._resume_tracking:  # rows a previous run left in flight: ask once each
            if self.hard_stopped:
                return
            try:
                job = await self.client.get_job(work.job_id)
            except NotFound as exc:
                job = {"id": work.job_id, "status": "FAILED", "creditCost": None,
                       "error": f"the API does not know this job ({exc.status})"}
            except AuthError as exc:
                self.hard_stop(f"authentication failed ({exc.status}): check APIFRAME_API_KEY")
                return
            except TransientError:
                self.tracker.add(work.job_id, work.job_key, work.duration, resumed=True)
                continue
            if not await self._handle_job(job):
                created = parse_api_time(job.get("createdAt"))
                self.tracker.add(work.job_id, work.job_key, work.duration, created=created, resumed=True,
                                 waited=max(0.0, time.time() + self.client.clock_offset - created) if created else 0.0)
        while True:
            if not self.tracker.pending:
                self._tracker_wake.clear()
                await self._tracker_wake.wait()
                continue
            delay = self.tracker.next_delay(submits_waiting=bool(self.submit_queue) and not self.submits_stopped)
            if delay > 0:
                self._tracker_wake.clear()
                try:  # a new submit may make an earlier poll worth it
                    await asyncio.wait_for(self._tracker_wake.wait(), timeout=delay)
                    continue
                except asyncio.TimeoutError:
                    pass
            try:
                finished = await self.tracker.poll()
            except AuthError as exc:
                self.hard_stop(f"authentication failed ({exc.status}): check APIFRAME_API_KEY")
                return
            except (TransientError, ApiError) as exc:
                self.log.event("retry", what="track", reason=redact(str(exc)))
                await asyncio.sleep(self.options.poll_min_interval)
                continue
            for job in finished:
                await self._handle_job(job)

    async def _handle_job(self, job: dict[str, Any]) -> bool:
        """Apply an API job object to its row. True when the job's generation has ended."""
        work = self.by_job_id.get(job.get("id"))
        if work is None:
            return True
        status = job.get("status")
        cost = job.get("creditCost")
        if self._owner_of(work.job_id, work.job_key) != work.job_key:
            cost = 0  # the row that first recorded this job carries its cost: never count it twice
        charged = work.credits_prior + (cost if isinstance(cost, int) else 0)
        delta = charged - work.credits_charged
        work.credits_charged = charged
        self.counters.credits_charged += delta
        if status == "COMPLETED":
            self.counters.finished += 1
            url = result_url(job)
            completed_at = parse_api_time(job.get("completedAt"))
            fields = dict(credits_charged=charged, video_url=url, expired=bool(job.get("expired")),
                          completed_at=datetime.fromtimestamp(completed_at, timezone.utc) if completed_at else _now())
            if job.get("expired") or not url:
                self.rows_expired += bool(job.get("expired"))
                self.ledger.record(work.job_key, status=FAILED, **fields, error=(
                    "result expired before it was downloaded; run again with --retry-failed to generate it again"
                    if job.get("expired") else "the API reported COMPLETED without a video URL"))
                self._note_failure(work, "result expired" if job.get("expired") else "no video URL")
                self._release(work)
                return True
            work.video_url = url
            self.ledger.record(work.job_key, status=COMPLETED, **fields)
            self.log.event("status", job_key=work.job_key, job_id=work.job_id, status=COMPLETED,
                           credits=cost)
            await self.downloads.put(work)
            return True
        if status in ("FAILED", "CANCELLED"):
            reason = redact(str(job.get("error") or status.lower()))
            self.ledger.record(work.job_key, status=FAILED, credits_charged=charged, error=reason,
                               completed_at=_now())
            self.log.event("status", job_key=work.job_key, job_id=work.job_id, status=status, error=reason)
            if work.attempts < 1 + self.options.retries and not self.submits_stopped and self._within_budget(work):
                self.log.event("retry", what="generate", job_key=work.job_key, reason=reason,
                               next_attempt=work.attempts + 1)
                self._submitting += 1
                self._spawn(self._submit(work, resume=False))
            else:
                self.counters.finished += 1
                self._note_failure(work, reason)
                self._release(work)
            return True
        if status == "PROCESSING":
            self.ledger.record(work.job_key, status=PROCESSING)
        return False

    # -- downloading --

    async def _download_loop(self) -> None:
        model_sizes: dict[tuple[str, str], tuple[int, int]] = {}
        while True:
            work = await self.downloads.get()
            row = work.row
            key = (row["model"], row["aspect_ratio"])
            if key not in model_sizes:
                model_sizes[key] = get_model(row["model"]).frame_size(row["aspect_ratio"])
            await self._download(work, model_sizes[key])

    async def _download(self, work: Work, frame_size: tuple[int, int]) -> None:
        final = video_path(self.options.out_dir, work.job_key)
        reason = "no video URL"
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            if self.hard_stopped:
                return
            try:
                saved = await download_video(
                    self.client, work.video_url, final, duration=work.duration, frame_size=frame_size,
                    max_bytes=self.options.max_download_bytes, verify=self.options.verify_videos)
            except NotFound:
                self.rows_expired += 1
                self.ledger.record(work.job_key, status=FAILED, expired=True, error=(
                    "result expired before it was downloaded (the CDN answered 404); "
                    "run again with --retry-failed to generate it again"))
                self._note_failure(work, "result expired")
                self._release(work)
                return
            except (TransientError, DownloadError, OSError) as exc:
                reason = redact(str(exc))
                self.log.event("retry", what="download", job_key=work.job_key, reason=reason, attempt=attempt)
                await asyncio.sleep(min(8.0, 0.5 * 2 ** attempt))
                continue
            self.verify_cpu_s += saved.verify_cpu_s
            self.ledger.record(work.job_key, status=DOWNLOADED, output_path=str(saved.path),
                               bytes=saved.bytes, sha256=saved.sha256, downloaded_at=_now(), error=None)
            await self.ledger.commit()
            self.counters.downloaded += 1
            self.log.event("download", job_key=work.job_key, path=str(saved.path), bytes=saved.bytes,
                           sha256=saved.sha256)
            self._release(work)
            return
        # The video exists at the API: a later run downloads it again without generating it again.
        self.ledger.record(work.job_key, error=f"download failed {DOWNLOAD_TRIES} times: {reason}")
        self._leave_unfinished(work, f"download failed: {reason}")

    # -- endings --

    def _final(self, work: Work, status: str, reason: str) -> None:
        reason = redact(reason)
        self.ledger.record(work.job_key, status=status, error=reason)
        self.log.event("error", job_key=work.job_key, status=status, reason=reason)
        self.counters.finished += 1
        self._note_failure(work, reason)
        self._release(work)

    def _note_failure(self, work: Work, reason: str) -> None:
        self.failures[work.job_key] = reason
        self.counters.failed += 1

    def _leave_unfinished(self, work: Work, reason: str) -> None:
        self.unfinished.add(work.job_key)
        self.log.event("error", job_key=work.job_key, reason=redact(reason), unfinished=True)
        self._release(work)

    async def _checkpoint_loop(self, progress: Progress) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            progress.update()
            self.log.flush()
            if time.monotonic() - last >= self.options.checkpoint_every:
                await self.ledger.checkpoint_async()
                last = time.monotonic()

    def _result(self, started: datetime) -> RunResult:
        keys = list(self.work)
        mine = self.ledger.rows(keys, ["status"])
        statuses = dict(zip(mine["job_key"].to_list(), mine["status"].to_list()))
        planned_failed = self.plan.rows.filter(self.plan.rows["action"] == "failed")
        failed_keys = {k for k, s in statuses.items() if s in (FAILED, REJECTED)}
        failed_keys |= set(planned_failed["job_key"].to_list())
        unfinished = {k for k, s in statuses.items() if s not in (DOWNLOADED, FAILED, REJECTED)}
        finished_now = sum(1 for s in statuses.values() if s == DOWNLOADED)
        if self.hard_stopped or self.submits_stopped or unfinished:
            code = 3
        elif failed_keys:
            code = 1
        else:
            code = 0
        # Rows that failed in an earlier run keep the reason the ledger has for them.
        failed_rows = self.ledger.rows(list(failed_keys), ["error"])
        errors = dict(zip(failed_rows["job_key"].to_list(), failed_rows["error"].to_list()))
        failures = [(k, self.failures.get(k) or errors.get(k) or "") for k in sorted(failed_keys)]
        return RunResult(
            run_id=self.run_id, exit_code=code,
            stop_reason=self.stop_reason or (f"{len(unfinished)} rows unfinished" if unfinished else None),
            counters=self.counters, credits_estimated=self.spend_started,
            credits_charged=self.counters.credits_charged, rows_submitted=self.rows_submitted,
            rows_finished=finished_now, rows_failed=len(failed_keys), rows_expired=self.rows_expired,
            rows_unfinished=len(unfinished), requests=self.client.gate.requests,
            rate_limited=self.client.rate_limited, started_at=started, ended_at=_now(),
            failures=failures,
        )
