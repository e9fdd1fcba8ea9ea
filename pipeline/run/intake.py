"""Does the run's first I/O: an edited row's old version moved aside (`<key>@<hash>`, video and
ledger row), then each row of the plan handed to the step that carries its action out."""

from __future__ import annotations

import os

import polars as pl

from pipeline.plan.actions import (DOWNLOAD, NEW_VERSION, REGENERATE, RESUME, RETRY, ROW_FIELDS, SUBMIT, TRACK,
                                   versions_to_follow)
from pipeline.run.download import video_path
from pipeline.run.work import Recorded, Run, Work
from pipeline.store.archive import archived_name
from pipeline.store.faults import disk_fault
from pipeline.store.objects import head, move_object


def load_plan(runner: Run) -> None:
    plan, ledger = runner.plan, runner.ledger
    replaced = plan.rows.filter(pl.col("action").is_in([NEW_VERSION, REGENERATE]))["job_key"]
    archived = [archive_old_version(runner, key) for key in replaced if key in ledger]
    # An edited row's old version may hold a paid job not yet downloaded: followed like any row.
    plan.follow(versions_to_follow(ledger.rows(archived)))
    wanted = plan.to_run(longest_first=runner.options.max_credits is None)
    # The job list is read for one model when every row is of it (`model=`), else for all of them:
    # a job of another model is never left out of a filtered list (CONTRACT.md, "Job list").
    models = set(wanted["model"].drop_nulls())
    runner.follower.tracker.model = models.pop() if len(models) == 1 else None
    runner.events.planned(wanted.height, plan.credits_to_spend + _charge_to_come(wanted))
    resumed: list[Work] = []
    for record in wanted.iter_rows(named=True):
        work = Work(record["job_key"], {name: record[name] for name in ROW_FIELDS},
                    Recorded.of(record, prefix="ledger_"))
        runner.work[work.job_key] = work
        if record["action"] == RESUME:
            resumed.append(work)
        else:
            _hand_out(runner, work, record)
    # They may already exist: settled first, in plan order, as Plan.submit_order has them (the
    # order --max-credits fills the budget in).
    runner.submitter.queue.extendleft((work, True) for work in reversed(resumed))


def _charge_to_come(wanted: pl.DataFrame) -> int:
    """The charge the jobs this run follows may still bring: an earlier run paid for them, yet an
    API that reports creditCost only once a job completes charges them in this run's figures (the
    progress showed "credits 160/50" under --max-credits 50). A job whose cost is recorded brings none."""
    following = wanted.filter(pl.col("action") == TRACK)
    recorded = (pl.col("ledger_credits_charged").fill_null(0) - pl.col("ledger_credits_prior").fill_null(0))
    return int(following.select(pl.when(recorded > 0).then(0).otherwise(pl.col("credits_estimated")).sum()).item() or 0)


def _hand_out(runner: Run, work: Work, record: dict) -> None:
    action = record["action"]
    if action == NEW_VERSION:  # the key has no ledger row now: the next attempt starts afresh
        work.recorded = Recorded()
    elif action == REGENERATE:  # numbering goes on: a new Idempotency-Key, so a new video, not the old job
        work.recorded = Recorded(attempts=record["attempts_before"])
    if action in (SUBMIT, RETRY, NEW_VERSION, REGENERATE):
        runner.submitter.queue.append((work, False))
    elif action == TRACK:
        runner.take_on(work)
        runner.by_job_id[work.job_id] = work
        # Made by an earlier run: read on its own first, since no list depth is known for it.
        runner.follower.follow_resumed(work)
    elif action == DOWNLOAD and work.recorded.video_url is None:  # no URL to fetch: read the job
        runner.take_on(work)
        runner.by_job_id[work.job_id] = work
        runner.follower.follow_resumed(work)
    elif action == DOWNLOAD:
        runner.take_on(work)
        runner.by_job_id[work.job_id] = work
        runner.fetcher.queue.put_nowait(work)


def archive_old_version(runner: Run, job_key: str) -> str:
    """Same id, edited request: keep the old row and its video under `<key>@<old hash>`."""
    ledger = runner.ledger
    old = ledger.get(job_key) or {}
    archived = archived_name(job_key, old.get("request_hash"), taken=ledger)
    old_path = old.get("output_path")
    if old_path and "://" in old_path:  # an object in a store (--out URL): moved within its prefix
        new_path, there, move = f"{old_path.rsplit('/', 1)[0]}/{archived}.mp4", _stored, move_object
    else:
        new_path, there, move = video_path(runner.options.out_dir, archived), os.path.exists, _replace
    if old_path and there(old_path):
        # The video moves first: if it cannot, the ledger still says the row is where it was,
        # and the new version is never downloaded over the old one's paid clip.
        move(old_path, new_path)
    ledger.rename(job_key, archived)
    if old_path and there(new_path):  # moved now, or by a run killed before its journal said so
        ledger.record(archived, output_path=str(new_path))
    runner.events.new_version(job_key, archived)
    return archived


def _replace(old_path: str, new_path) -> None:
    try:
        os.replace(old_path, new_path)
    except OSError as exc:
        raise disk_fault(exc, old_path) from None


def _stored(url: str) -> bool:
    return head(url) is not None
