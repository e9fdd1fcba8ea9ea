"""Column layouts of the ledger (one row per job_key) and of the runs table, and the job states.

The ledger is the user's record of money spent: its columns are a public format, so change them
only by adding.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl



class JobStatus(StrEnum):
    """Ledger states of a job (ARCHITECTURE.md, "Job state machine"). A StrEnum: each member is
    the very string the ledger stores, so the format on disk is unchanged."""

    PENDING = "PENDING"  # planned; an intent to submit may be journaled but no job_id yet
    SUBMITTED = "SUBMITTED"  # the API answered with a job_id
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"  # the video exists at video_url, not yet on disk
    DOWNLOADED = "DOWNLOADED"  # verified file at output_path: done
    FAILED = "FAILED"  # generation failed (or its result expired) and retries are spent
    REJECTED = "REJECTED"  # the API refused the body (400): final, never retried


# The members under their short names, as the rest of the code imports them.
PENDING, SUBMITTED, PROCESSING, COMPLETED, DOWNLOADED, FAILED, REJECTED = JobStatus
STATUSES = tuple(JobStatus)
IN_FLIGHT = (SUBMITTED, PROCESSING, COMPLETED)
FINAL = (DOWNLOADED, FAILED, REJECTED)

TIMESTAMP = pl.Datetime("us", "UTC")

LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "job_key": pl.String,  # stable identity of the wanted video; safe as a file name
    "manifest": pl.String,  # manifest file the row came from
    "row": pl.Int64,  # 1-based row of that manifest
    "variation": pl.Int64,  # 1..count
    "prompt": pl.String,
    "duration": pl.Int64,
    "aspect_ratio": pl.String,
    "reference_images": pl.List(pl.String),  # as resolved for the request (URLs or local paths)
    "model": pl.String,
    "metadata": pl.String,  # JSON object of the manifest's extra fields
    "request_hash": pl.String,  # sha256 of the normalized request: a change means a new version
    "status": pl.String,  # one of STATUSES
    "job_id": pl.String,  # Apiframe job id of the current attempt
    "attempts": pl.Int64,  # submits started (attempt numbers are 1-based)
    "idempotency_key": pl.String,  # key of the current attempt
    "request_body": pl.String,  # exact JSON body of the current attempt, replayed on resume
    "credits_estimated": pl.Int64,  # price of one attempt from the model's table
    "credits_prior": pl.Int64,  # creditCost of attempts before the current one
    "credits_charged": pl.Int64,  # credits_prior + the current attempt's creditCost
    "video_url": pl.String,
    "expired": pl.Boolean,  # the API reported the result purged before we downloaded it
    "output_path": pl.String,
    "bytes": pl.Int64,
    "sha256": pl.String,
    "error": pl.String,  # last failure reason, redacted
    "submitted_at": TIMESTAMP,
    "completed_at": TIMESTAMP,
    "downloaded_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "run_id": pl.String,  # run that last changed the row
    "first_sent_at": TIMESTAMP,  # when the current attempt's intent was journaled, just before its
    # first send: past the API's 24 h replay window its key settles nothing (see transitions.py)
    # The model's other parameters, as the manifest wrote them (JSON, keys sorted; local files by
    # path): null for none, as every row written before models had params.
    "params": pl.String,
    # What the downloaded file is, as PyAV read it: checked against the request where the model's
    # sizes are known (grok), recorded either way.
    "video_width": pl.Int64,
    "video_height": pl.Int64,
    "video_seconds": pl.Float64,
}

RUNS_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "manifest": pl.String,
    "emulated": pl.Boolean,
    "started_at": TIMESTAMP,
    "ended_at": TIMESTAMP,
    "rows_planned": pl.Int64,
    "rows_skipped": pl.Int64,  # already DOWNLOADED before this run
    "rows_submitted": pl.Int64,  # submits that got a job_id in this run
    "rows_finished": pl.Int64,  # reached DOWNLOADED in this run
    "rows_failed": pl.Int64,  # FAILED or REJECTED at the end of this run
    "credits_estimated": pl.Int64,  # planned spend of this run
    "credits_charged": pl.Int64,  # creditCost reported for jobs tracked in this run
    "exit_code": pl.Int64,
    "log_path": pl.String,
    # The account the run's key belongs to (GET /v2/me): a job is visible only to its owner.
    "account_user_id": pl.String,
    "account_team_id": pl.String,
    "account_key_id": pl.String,
    "rows_unfinished": pl.Int64,  # left in flight or pending for the next run
    "stop_reason": pl.String,
}


def conform(frame, schema: dict[str, pl.DataType]):
    """`frame` (eager or lazy) with exactly the columns of `schema`, in its order and types; a
    column an older version did not write is null. Columns are only ever added (see above), so
    this is how every reader takes a file written by an earlier version."""
    names = frame.collect_schema().names()
    return frame.select((pl.col(c) if c in names else pl.lit(None)).cast(dtype).alias(c) for c, dtype in schema.items())
