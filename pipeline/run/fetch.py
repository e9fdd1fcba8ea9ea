"""Wires the fetch step: a COMPLETED job's video downloaded (run/download.py, with its retries),
checked, journaled as DOWNLOADED; what a failure means is transitions.after_download's call."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone

from pipeline.api.client import NotFound
from pipeline.redact import redact
from pipeline.run import transitions as t
from pipeline.run.download import (DOWNLOAD_RETRY, RETRIED, VIDEO_DIR, SavedVideo, download_with_retries, frame_size,
                                   video_path)
from pipeline.run.work import Run, Work
from pipeline.store.objects import ObjectFault, put_file


class Fetcher:
    def __init__(self, runner: Run):
        self.runner = runner
        self.queue: asyncio.Queue[Work] = asyncio.Queue()
        self.verify_cpu_s = 0.0  # CPU spent checking videos with PyAV, for the run log

    async def loop(self) -> None:
        while True:
            work = await self.queue.get()
            size = frame_size(work.row["model"], work.row["aspect_ratio"])
            await self.runner.guarded(work, self._download(work, size))

    async def _download(self, work: Work, frame: tuple[int, int] | None) -> None:
        runner = self.runner
        options, control = runner.options, runner.control
        final = video_path(options.out_dir, work.job_key)
        if control.hard_stopped:
            return
        try:
            saved = await download_with_retries(
                runner.client, work.recorded.video_url, final, duration=work.row["duration"], frame_size=frame,
                max_bytes=options.max_download_bytes, verify=options.verify_videos,
                on_retry=lambda exc, attempt, _delay: runner.events.retry_download(work, exc, attempt),
                should_stop=control.stopped)
        except NotFound:
            work.uncertain += 1
            work.after_cdn_404 = True
            await runner.apply(work, t.after_download(runner.row(work), t.DownloadOutcome.CDN_NOT_FOUND,
                                                      limits=runner.limits))
            return
        except RETRIED as exc:
            if control.hard_stopped:
                return
            # The video exists at the API: a later run downloads it again without generating it again.
            await runner.apply(work, t.after_download(runner.row(work), t.DownloadOutcome.FAILED_TRIES,
                                                      f"{DOWNLOAD_RETRY.attempts} tries: {redact(str(exc))}",
                                                      limits=runner.limits))
            return
        self.verify_cpu_s += saved.verify_cpu_s
        if options.out_url is not None:  # verified here, then put create-only in the store
            saved = await self._upload(work, saved)
            if saved is None:
                return
        decision = t.after_download(runner.row(work), t.DownloadOutcome.SAVED, limits=runner.limits)
        info = saved.info  # recorded for every model: for most, the size nobody documents
        runner.record(work, **decision.fields, output_path=saved.where, bytes=saved.bytes,
                      sha256=saved.sha256, downloaded_at=datetime.now(timezone.utc),
                      video_width=info and info.width, video_height=info and info.height,
                      video_seconds=info and round(info.duration, 3))
        await runner.ledger.commit()
        runner.events.downloaded(work, saved.where, saved.bytes, saved.sha256)
        await runner.apply(work, t.Decision(decision.step))

    async def _upload(self, work: Work, saved: SavedVideo) -> SavedVideo | None:
        """The staged video put create-only at `<out>/videos/<key>.mp4`; the row is DOWNLOADED only once the
        object is stored. A failed upload is a failed download: the row stays to fetch again, and
        no new video is paid for (the job is done at the API). None: the failure is applied."""
        runner = self.runner
        try:
            # `<out>/videos/<key>.mp4`: the layout of a local --out, so a folder synced to a bucket matches.
            stored = await asyncio.to_thread(put_file, f"{runner.options.out_url}/{VIDEO_DIR}", saved.path.name,
                                             saved.path, saved.sha256)
        except ObjectFault as exc:
            if runner.control.hard_stopped:
                return None
            await runner.apply(work, t.after_download(runner.row(work), t.DownloadOutcome.FAILED_TRIES,
                                                      f"upload: {exc}", limits=runner.limits))
            return None
        saved.path.unlink(missing_ok=True)  # the store holds it now: staging keeps no copy
        return dataclasses.replace(saved, url=stored.url)
