"""Wires the submit step: a row's intent journaled, then its request sent once under its key, and
the answer handed to the runner (transitions.after_submit decides what it means).

Invariants (the runner's docstring lists them all): the intent to submit (attempt number, exact
body, Idempotency-Key) is durable before the request leaves; the job_id is journaled as soon as
it arrives; a resumed submit replays the journaled bytes with the journaled key.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from pipeline.api.client import ApiError
from pipeline.api.retry import RetryPolicy
from pipeline.api.uploads import LocalImage, UploadCache
from pipeline.models import get_model
from pipeline.redact import redact
from pipeline.run import transitions as t
from pipeline.run.attempts import intent_fields, request_body
from pipeline.run.references import ReferenceChanged, read_inputs, read_references
from pipeline.run.tracker import find_by_content
from pipeline.run.work import Run, Work
from pipeline.store.archive import base_key

SUBMIT_PARALLEL = 32  # submit calls in the air at once; the rate limiter is the real pace
REPLAY_PAUSE = RetryPolicy(base=1.0, cap=30.0, jitter=False)  # before replaying a key after a 409: 1, 2, 4 ... 30 s


class Submitter:
    """The submit queue, and the submits in the air (counted, so the run waits for their job_id)."""

    def __init__(self, runner: Run):
        self.runner = runner
        self.client = runner.client
        self.uploads = UploadCache(runner.client)
        self.queue: deque[tuple[Work, bool]] = deque()  # (work, resume?)
        self.feeding = True  # the queue may still hand out rows
        self.in_air = 0  # submits started and not yet answered (or replays waiting)

    @property
    def waiting(self) -> bool:
        """Rows still queued that may yet be sent."""
        return bool(self.queue) and not self.runner.control.submits_stopped

    async def loop(self) -> None:
        runner, control = self.runner, self.runner.control
        gate = asyncio.Semaphore(SUBMIT_PARALLEL)
        try:
            while self.queue and not control.submits_stopped:
                work, resume = self.queue.popleft()
                await runner.slot_free()
                refused = None if control.submits_stopped else self.admit(work)
                if control.submits_stopped:
                    break
                if refused is not None:  # left out by --max-credits: a cheaper row after it may still fit
                    runner.leave(work, f"not sent again (its earlier send may have made a job; the next run "
                                       f"settles it): {refused}" if resume else f"not submitted: {refused}")
                    continue
                await gate.acquire()
                if control.submits_stopped:
                    gate.release()
                    break
                runner.take_on(work)
                self.in_air += 1
                runner.spawn(self._submit(work, resume, gate))
        finally:
            self.feeding = False
            runner.check_finished()

    def admit(self, work: Work, *, retry: bool = False) -> str | None:
        """None: a new paid attempt for `work` may start (its credits are reserved). Else why not:
        the deadline stops submitting; the budget leaves only this attempt out (named at the end),
        and the next row may still fit."""
        runner = self.runner
        refused = runner.spending.admit(work.job_key, int(work.row["credits_estimated"]), work.duration,
                                        runner.follower.tracker.observed, retry=retry)
        if refused is None:
            return None
        if refused.stops:
            runner.control.stop_submitting(refused.reason)
        else:
            runner.events.left_out(work, retry)
        return refused.reason

    def retry(self, work: Work, reason: str | None) -> bool:
        """A new attempt after a definite FAILED, if admitted; False: the row's failure is final."""
        if self.admit(work, retry=True) is not None:
            return False
        self.runner.events.retry_generate(work, reason)
        self.in_air += 1
        self.runner.spawn(self._submit(work, resume=False))
        return True

    def replay(self, work: Work) -> None:
        self.in_air += 1
        self.runner.spawn(self._replay_later(work))

    async def prepare_attempt(self, work: Work) -> bytes | None:
        """New attempt: read and check local images once, upload those bytes, build the body,
        journal the intent (not yet durable). None: the row is left unsent, with the reason."""
        row = work.row
        try:
            refs, params = await asyncio.to_thread(read_inputs, row)
            references = [ref if isinstance(ref, str) else await self.uploads.url_for(ref) for ref in refs]
            sent_params = {name: await self._uploaded(value) for name, value in params.items()}
        except (ApiError, OSError, ReferenceChanged) as exc:  # nothing was sent
            self.runner.leave(work, f"not submitted: {redact(str(exc))}")
            return None
        body = request_body(row, references, self.runner.options.webhook_url, sent_params)
        fields = intent_fields(work.job_key, row, refs, body, attempts_before=work.recorded.attempts,
                               charged=work.recorded.credits_charged, now=datetime.now(timezone.utc), params=params)
        work.uncertain = 0
        self.runner.record(work, **fields)
        return body

    async def _uploaded(self, value: Any) -> Any:
        """A param with each local image (LocalImage) replaced by its upload's URL."""
        if isinstance(value, LocalImage):
            return await self.uploads.url_for(value)
        if isinstance(value, list):
            return [await self._uploaded(item) for item in value]
        return value

    async def _submit(self, work: Work, resume: bool, gate: asyncio.Semaphore | None = None) -> None:
        try:
            await self.runner.guarded(work, self._submit_attempt(work, resume))
        finally:
            if gate is not None:
                gate.release()
            self.in_air -= 1
            self.runner.check_finished()

    async def _submit_attempt(self, work: Work, resume: bool) -> None:
        intent = work.recorded
        if resume and intent.request_body and intent.idempotency_key:
            if not t.replay_allowed(intent.first_sent, time.time(), self.client.measured_offset):
                await self.runner.old_intents.settle(work)
                return
            body = intent.request_body.encode()  # the journaled bytes, never rebuilt
        else:
            body = await self.prepare_attempt(work)
            if body is None:
                return
        await self.runner.ledger.commit()  # the intent is on disk before the request leaves
        await self.send(work, body, resume)

    async def send(self, work: Work, body: bytes, resume: bool) -> None:
        """POST the journaled bytes under the journaled key, and act on the answer."""
        key = work.recorded.idempotency_key
        self.runner.events.submit(work, resume)
        sent = time.time()  # the job cannot be older: bounds how far back tracking pages
        answer, error, detail, stop_message = None, None, "", None
        try:
            answer = await self.client.submit(body, key)
        except (ApiError, OSError) as exc:
            error, detail = t.submit_error(exc), redact(str(exc))
            stop_message = getattr(exc, "stop_reason", None)  # 401/403 and 402 say what to do
        decision = t.after_submit(self.runner.row(work), answer, error, self.runner.limits, detail)
        if error is t.SubmitError.CONFLICT and work.uncertain == 0 and await self._adopt_by_content(work):
            return
        if "job_id" in decision.fields:
            await self.accept(work, decision.fields["job_id"], decision)
            decision = t.Decision(decision.step, {}, decision.reason)  # recorded by accept
        await self.runner.apply(work, decision, stop_message=stop_message, sent=sent, resumed=resume)

    async def accept(self, work: Work, job_id: str, decision: t.Decision) -> None:
        """The API named the job for this intent: journal it before anything else."""
        runner = self.runner
        work.uncertain = 0
        payer = runner.payers.claim(job_id, work.job_key)
        if payer != work.job_key:
            # The same request under the same key within the API's 24 h (a prompt edited back to
            # an earlier version): the API handed back that version's job and charged nothing.
            runner.events.reused_job(work, job_id, payer)
        runner.by_job_id[job_id] = work
        runner.record(work, **decision.fields, submitted_at=datetime.now(timezone.utc))
        await runner.ledger.commit()
        runner.events.submitted(work, job_id, decision.reason)

    async def _replay_later(self, work: Work) -> None:
        """After a 409 or an answer without a job id: the same bytes, the same key, after a pause."""
        try:
            await asyncio.sleep(REPLAY_PAUSE.delay(work.uncertain))
            body = work.recorded.request_body
            if not self.runner.control.hard_stopped and body:
                await self.runner.guarded(work, self.send(work, body.encode(), resume=True))
        finally:
            self.in_air -= 1
            self.runner.check_finished()

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
        decision = t.after_search(self.runner.row(work), t.Search(job, complete=True))
        self.runner.events.adopted_by_content(work, decision.fields.get("job_id"))
        await self.accept(work, decision.fields["job_id"], decision)
        await self.runner.apply(work, t.Decision(t.Step.READ_NOW))
        return True

    def _held_by_another_id(self, job_id: str, job_key: str) -> bool:
        """A job another row pays for, other than an earlier version of this id: a row edited back
        to an earlier request shares that version's job, counted once by its first row (invariant
        7), as a replay of its key would hand it back had the upload URL not changed."""
        payer = self.runner.payers.first(job_id)
        return payer is not None and base_key(payer) != base_key(job_key)
