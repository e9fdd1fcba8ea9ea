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

What a reviewer may decide is checked before it is appended here, by pipeline/review/decide.py.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.store.archive import is_archived_col
from pipeline.store.jsonlines import DamagedLine, JsonLinesLog, read_lines


class Verdict(StrEnum):
    """A reviewer's word on a clip: what the `decision` field of the log holds (the log keeps its
    field names). A regenerate verdict becomes the plan's Action.REGENERATE (plan/reviewed.py)."""

    APPROVE = "approve"
    REJECT = "reject"
    REGENERATE = "regenerate"


LOG_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64,  # the order decisions were made in (1 for the first line)
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


class VerdictsCorrupt(Exception):
    pass


def verdicts_path(ledger_path: str | Path) -> Path:
    path = Path(ledger_path)
    return path.with_name(f"{path.stem}.decisions.jsonl")


# --- reading -----------------------------------------------------------------------------------


def read_verdicts(ledger_path: str | Path) -> pl.DataFrame:
    """Every decision ever logged beside this ledger, oldest first (LOG_SCHEMA)."""
    path = verdicts_path(ledger_path)

    def parse(line: bytes) -> dict[str, Any]:
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("not a decision")
        record["at"] = datetime.fromisoformat(record["at"]) if record.get("at") else None
        return {name: record.get(name) for name in LOG_SCHEMA}

    # The journal's rule (store/jsonlines.py): only the part after the last newline is torn (a
    # write cut short, never acknowledged); a complete line that is not a decision is damage, named.
    try:
        records, _ = read_lines(path, parse)
    except DamagedLine as exc:
        raise VerdictsCorrupt(
            f"{path}: line {exc.number} is complete but is not a decision; nothing was changed. Move that "
            "line out of the file (every other line is a whole decision) and try again") from None
    for seq, record in enumerate(records, start=1):  # the order decisions were made in
        record["seq"] = seq
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


# --- writing -----------------------------------------------------------------------------------


class VerdictLog:
    """Appends decisions to the log beside a ledger; each is on disk when append() returns."""

    def __init__(self, ledger_path: str | Path):
        self.path = verdicts_path(ledger_path)
        self._lock = threading.Lock()  # one writer at a time in this process: whole lines only

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            log = JsonLinesLog(self.path)
            log.open()  # cuts a torn tail; a new file's name is made durable
            try:
                log.append(line)  # one write with O_APPEND: lines of two writers never interleave
            finally:
                log.close()
