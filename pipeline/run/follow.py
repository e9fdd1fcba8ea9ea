"""Wires the follow step: jobs in flight polled through the Tracker (and hinted by webhooks), each
reading handed to the runner (transitions.after_read decides what it means); a job still
generating past --job-timeout gets one last read, then is left in flight."""

from __future__ import annotations

import asyncio

from pipeline.api.client import ApiError, AuthError
from pipeline.run import transitions as t
from pipeline.run.tracker import Observation, Tracker, read_job
from pipeline.run.work import Run, Work


class Follower:
    def __init__(self, runner: Run):
        self.runner = runner
        options = runner.options
        rate = (options.rpm / options.rate_period) if options.rpm else None
        self.tracker = Tracker(runner.client, rate_per_second=rate, min_interval=options.poll_min_interval,
                               max_interval=options.poll_max_interval)
        self._wake = asyncio.Event()

    def follow(self, work: Work, *, sent: float | None = None, resumed: bool = False) -> None:
        if work.job_id not in self.tracker.pending:
            self.tracker.add(work.job_id, work.job_key, work.duration, sent=sent, resumed=resumed)
            self._wake.set()

    def follow_resumed(self, work: Work) -> None:
        """A job made by an earlier run: read on its own first, since no list depth is known for it."""
        self.tracker.add(work.job_id, work.job_key, work.duration, resumed=True)

    def reread(self, work: Work) -> None:
        self.tracker.add(work.job_id, work.job_key, work.duration, reread=work.uncertain)
        self._wake.set()

    def hint(self, job_id: str) -> None:
        """A webhook said this job changed: poll it sooner."""
        if self.tracker.hint(job_id):
            self._wake.set()

    async def read_now(self, work: Work) -> None:
        runner = self.runner
        try:
            seen = await read_job(runner.client, work.job_id)
        except AuthError as exc:
            await runner.apply(work, t.after_read(runner.row(work), None, t.ReadError.AUTH, runner.limits, str(exc)),
                               stop_message=exc.stop_reason)
            return
        await runner.apply(work, t.after_read(runner.row(work), seen.job, seen.error, runner.limits, seen.detail))

    async def loop(self) -> None:
        runner = self.runner
        while True:
            await self._leave_timed_out()
            if not self.tracker.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = self.tracker.next_delay(runner.submitter.waiting, runner.options.job_timeout)
            if delay > 0:
                self._wake.clear()
                try:  # a new submit may make an earlier poll worth it
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                    continue
                except asyncio.TimeoutError:
                    pass
            try:
                observations = await self.tracker.poll()
            except AuthError as exc:
                runner.control.hard_stop(exc.stop_reason)
                return
            except (ApiError, OSError) as exc:
                runner.events.retry_track(exc)
                await asyncio.sleep(runner.options.poll_min_interval)
                continue
            for seen in observations:
                await self._observe(seen)

    async def _observe(self, seen: Observation) -> None:
        runner = self.runner
        work = runner.by_job_id.get(seen.job_id)
        if work is None or work.job_key not in runner.active or work.job_id != seen.job_id:
            return
        try:
            decision = t.after_read(runner.row(work), seen.job, seen.error, runner.limits, seen.detail)
            await runner.apply(work, decision)
        except Exception as exc:  # our own bug, for this row only
            runner.control.note_internal_error(work.job_key, exc, "track")
            if work.job_key in runner.active:
                runner.leave(work, runner.control.internal_error or "internal error")

    async def _leave_timed_out(self) -> None:
        runner = self.runner
        if runner.options.job_timeout is None:
            return
        for job_id in list(self.tracker.pending):
            work = runner.by_job_id.get(job_id)
            decision = t.job_timed_out(runner.row(work), self.tracker.waited(job_id), runner.options.job_timeout) \
                if work is not None else None
            if decision is not None:
                self.tracker.discard(job_id)
                runner.spawn(runner.guarded(work, self._last_read(work, decision)))

    async def _last_read(self, work: Work, timed_out: t.Decision) -> None:
        """One more read before a job is left at --job-timeout (transitions.after_last_read)."""
        runner = self.runner
        try:
            seen = await read_job(runner.client, work.job_id)
            job, error = seen.job, seen.error
        except AuthError:
            job, error = None, t.ReadError.AUTH
        await runner.apply(work, t.after_last_read(runner.row(work), job, error, runner.limits, timed_out))
