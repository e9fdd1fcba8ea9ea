"""Review decisions: an append-only, fsynced log beside the ledger, folded in by its readers.

`ledger.decisions.jsonl` (beside `ledger.parquet`) holds one JSON line per decision: job_key,
decision (approve, reject, regenerate), note, an edited prompt and its request hash, reviewer,
time, and the Idempotency-Key of the very attempt that was reviewed. The last line for a
job_key wins.

Why a log of its own, rather than ledger rows:
- the ledger belongs to the run that holds its lock, for hours at night; a reviewer in the
  morning must neither wait for that lock nor write under it. The review server never opens the
  ledger for writing and never takes the lock; it appends here, and the run never reads this
  file while it runs (only its plan does, at the start), so a review cannot change or corrupt a
  batch in flight;
- appending one line with O_APPEND and fsyncing it is durable before the page shows "saved", and
  a line cut by a crash (no newline yet) was never acknowledged and is skipped, as in the journal;
- every decision stays on record (who changed their mind, and when), not only the last.

A decision is tied to the attempt it judged (`reviewed`, that attempt's Idempotency-Key): once a
later run makes a new attempt of the row, approve/reject/regenerate of the old clip no longer
speak for the new one, and a regeneration is known to be done. An edited prompt is different: it
is the request the reviewer wants from now on, so it stands (`edits()`) until the manifest's own
request for that row changes (`source_hash`, the manifest's request hash the edit replaced).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.store.archive import base_key, is_archived, is_archived_col
from pipeline.store.atomic import fsync_dir
from pipeline.manifest.identity import request_hash
from pipeline.manifest.rules import ManifestError, check_job
from pipeline.store.schema import DOWNLOADED, FINAL


class Verdict(StrEnum):
    """A reviewer's word on a clip: what the `decision` field of the log holds (the log keeps its
    field names). A regenerate verdict becomes the plan's Action.REGENERATE (plan/reviewed.py)."""

    APPROVE = "approve"
    REJECT = "reject"
    REGENERATE = "regenerate"


MAX_NOTE_CHARS = 2000
MAX_REVIEWER_CHARS = 100

LOG_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64,  # line number: the order decisions were made in
    "job_key": pl.String,
    "decision": pl.String,
    "note": pl.String,
    "prompt": pl.String,  # the edited prompt of a regenerate, else null
    "request_hash": pl.String,  # request hash of the edited request, else null
    "source_hash": pl.String,  # the manifest's request hash that the row stands for
    "reviewer": pl.String,
    "at": pl.Datetime("us", "UTC"),
    "reviewed": pl.String,  # Idempotency-Key of the attempt that was reviewed
    "reviewed_job_id": pl.String,
}

# Columns with_review() adds to a ledger frame.
REVIEW_COLUMNS: dict[str, pl.DataType] = {
    "review_decision": pl.String,  # the decision on this very attempt, or null (not reviewed yet)
    "review_note": pl.String,
    "review_reviewer": pl.String,
    "review_at": pl.Datetime("us", "UTC"),
    "review_prompt": pl.String,  # edited prompt of a regenerate the next run will make
    "review_edited": pl.Boolean,  # this row's request is a prompt edited in review
}


class VerdictError(ValueError):
    """A decision that is refused; the message says why and what to do. Nothing was written."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class VerdictsCorrupt(Exception):
    pass


def verdicts_path(ledger_path: str | Path) -> Path:
    path = Path(ledger_path)
    return path.with_name(f"{path.stem}.decisions.jsonl")


# --- reading -----------------------------------------------------------------------------------


def read_verdicts(ledger_path: str | Path) -> pl.DataFrame:
    """Every decision ever logged beside this ledger, oldest first (LOG_SCHEMA)."""
    path = verdicts_path(ledger_path)
    if not path.exists():
        return pl.DataFrame(schema=LOG_SCHEMA)
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    # Only the part after the last newline is torn (a write cut short, never acknowledged); a
    # complete line that is not a decision is damage, named rather than skipped, as in the journal.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record["at"] = datetime.fromisoformat(record["at"]) if record.get("at") else None
        except (ValueError, TypeError, AttributeError):
            raise VerdictsCorrupt(
                f"{path}: line {number} is complete but is not a decision; nothing was changed. Move that "
                "line out of the file (every other line is a whole decision) and try again") from None
        record["seq"] = number
        records.append({name: record.get(name) for name in LOG_SCHEMA})
    return pl.DataFrame(records, schema=LOG_SCHEMA, orient="row")


def latest(decisions: pl.DataFrame) -> pl.DataFrame:
    """The last decision per job_key."""
    return decisions.sort("seq").group_by("job_key", maintain_order=True).last()


def edits(decisions: pl.DataFrame) -> pl.DataFrame:
    """The standing prompt edit per job_key: job_key, edit_prompt, edit_hash, edit_source."""
    edited = decisions.filter(pl.col("request_hash").is_not_null())
    return latest(edited).select(
        "job_key", edit_prompt="prompt", edit_hash="request_hash", edit_source="source_hash")


def with_review(ledger: pl.DataFrame | pl.LazyFrame, decisions: pl.DataFrame) -> pl.DataFrame | pl.LazyFrame:
    """The ledger frame (or lazy scan, which needs `idempotency_key` and `request_hash`) with
    REVIEW_COLUMNS: what reviewers decided about each row's current attempt."""
    last = latest(decisions).select(
        "job_key", "reviewed", review_decision="decision", review_note="note",
        review_reviewer="reviewer", review_at="at", pending_prompt="prompt")
    edited = edits(decisions).select("job_key", "edit_hash")
    if isinstance(ledger, pl.LazyFrame):
        last, edited = last.lazy(), edited.lazy()
    joined = ledger.join(last, on="job_key", how="left", maintain_order="left").join(
        edited, on="job_key", how="left", maintain_order="left")
    current = pl.col("reviewed").is_not_null() & (pl.col("reviewed") == pl.col("idempotency_key"))
    return joined.with_columns(
        *(pl.when(current).then(pl.col(name)).otherwise(None).alias(name)
          for name in ("review_decision", "review_note", "review_reviewer", "review_at")),
        review_prompt=pl.when(current & (pl.col("review_decision") == Verdict.REGENERATE))
        .then(pl.col("pending_prompt")).otherwise(None),
        review_edited=(pl.col("edit_hash") == pl.col("request_hash")).fill_null(False),
    ).drop("reviewed", "pending_prompt", "edit_hash").cast(REVIEW_COLUMNS)  # the columns it promises, typed


def review_counts(frame: pl.DataFrame | pl.LazyFrame) -> dict[str, int]:
    """How many current rows (earlier versions aside) are approved, rejected, to regenerate, undecided."""
    frame = frame.lazy()
    if "review_decision" not in frame.collect_schema().names():
        return {}
    rows = frame.filter(~is_archived_col())
    counts = {verdict.value: 0 for verdict in Verdict}
    total = 0
    for decision, n in rows.group_by("review_decision").len().collect().iter_rows():
        total += n
        if decision is not None:
            counts[decision] = n
    counts["undecided"] = total - sum(counts.values())
    return counts


# --- deciding ----------------------------------------------------------------------------------


def _text(value: Any, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise VerdictError(f"{name} must be text")
    value = value.strip()
    if len(value) > limit:
        raise VerdictError(f"{name} is {len(value)} characters, at most {limit}: shorten it")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise VerdictError(f"{name} contains control characters: remove them")
    return value or None


def make_verdict(row: dict[str, Any] | None, job_key: str, decision: Any, *, note: Any = None,
                  prompt: Any = None, reviewer: Any, decisions: pl.DataFrame,
                  now: datetime | None = None) -> dict[str, Any]:
    """A checked decision record for the log, or VerdictError saying why not.

    `row` is the ledger row of `job_key` (None when the ledger has none). An edited prompt goes
    through the manifest's own row check (model rules: length, duration, aspect ratio, images).
    """
    if row is None:
        raise VerdictError(f"unknown job_key {job_key!r}: no such row in this ledger", status=404)
    if is_archived(job_key):
        raise VerdictError(f"{job_key} is an earlier version kept for the record; "
                            f"decide on {base_key(job_key)} instead", status=409)
    if decision not in tuple(Verdict):
        raise VerdictError(f"decision must be one of {', '.join(Verdict)}, got {decision!r}")
    status = row.get("status")
    if status not in FINAL or not row.get("idempotency_key"):
        raise VerdictError(f"{job_key} is {status or 'not made yet'}: review it once its run has "
                            "finished it", status=409)
    if decision == Verdict.APPROVE and status != DOWNLOADED:
        raise VerdictError(f"{job_key} is {status}: there is no clip to approve; reject it or "
                            "regenerate it", status=409)
    note = _text(note, "note", MAX_NOTE_CHARS)
    reviewer = _text(reviewer, "reviewer", MAX_REVIEWER_CHARS)
    if not reviewer:
        raise VerdictError("a decision needs a reviewer name")
    if "\n" in reviewer:
        raise VerdictError("reviewer must be one line")
    standing = edits(decisions.filter(pl.col("job_key") == job_key))
    source = row.get("request_hash")
    if standing.height and standing["edit_hash"][0] == source:
        source = standing["edit_source"][0]  # the row is already an edit: it stands for the same manifest row
    edited = edited_hash = None
    if prompt is not None:
        if decision != Verdict.REGENERATE:
            raise VerdictError("an edited prompt goes with regenerate only")
        if not isinstance(prompt, str):
            raise VerdictError("prompt must be text")
        if prompt.strip() != (row.get("prompt") or ""):
            edited, edited_hash = _checked_edit(row, job_key, prompt)
    return {
        "job_key": job_key, "decision": decision, "note": note, "prompt": edited,
        "request_hash": edited_hash, "source_hash": source, "reviewer": reviewer,
        "at": (now or datetime.now(timezone.utc)).isoformat(),
        "reviewed": row["idempotency_key"], "reviewed_job_id": row.get("job_id"),
    }


def _checked_edit(row: dict[str, Any], job_key: str, prompt: str) -> tuple[str, str]:
    """(stripped prompt, request hash) of the row's request with `prompt`, checked as a manifest row is."""
    job = {"prompt": prompt, "duration": row.get("duration"), "aspect_ratio": row.get("aspect_ratio"),
           "model": row.get("model")}
    if row.get("reference_images"):
        job["reference_images"] = list(row["reference_images"])
    manifest = Path(row["manifest"]) if row.get("manifest") else Path(".")
    try:
        checked = check_job(job, file=f"edited prompt of {job_key}", folder=manifest.parent)
    except ManifestError as exc:
        raise VerdictError("; ".join(str(issue) for issue in exc.issues)) from None
    digest = request_hash(checked["model"], checked["prompt"], checked["duration"], checked["aspect_ratio"],
                          checked["ref_ids"], int(row.get("variation") or 1))
    return checked["prompt"], digest


# --- writing -----------------------------------------------------------------------------------


def _cut_torn_tail(fd: int) -> None:
    """Drop a last line a crash cut short (never acknowledged), so the next line does not join it
    into one complete line that is not a decision."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    data = os.pread(fd, size, 0)
    os.ftruncate(fd, data.rfind(b"\n") + 1)


class VerdictLog:
    """Appends decisions to the log beside a ledger; each is on disk when append() returns."""

    def __init__(self, ledger_path: str | Path):
        self.path = verdicts_path(ledger_path)
        self._lock = threading.Lock()  # one writer at a time in this process: whole lines only

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _cut_torn_tail(fd)
                written = os.write(fd, line)  # one write with O_APPEND: lines of two writers never interleave
                while written < len(line):
                    written += os.write(fd, line[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:  # the new file's name must survive a crash too
                fsync_dir(self.path.parent)

