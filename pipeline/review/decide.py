"""Decides what a reviewer may decide about a clip, checked before it is logged (store/verdicts.py).

A verdict is refused (VerdictError, with the HTTP status the review server answers) for a row the
ledger does not have, an earlier version kept for the record, a row its run has not finished, an
approval of a clip that was never downloaded, a note or reviewer name over its limit or with
control characters, and an edited prompt that is not a regenerate or that the manifest's own row
check refuses. Nothing here writes: the review server appends what make_verdict returns.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.manifest.identity import request_hash
from pipeline.manifest.rules import ManifestError, check_job
from pipeline.store.archive import base_key, is_archived
from pipeline.store.schema import DOWNLOADED, FINAL
from pipeline.store.verdicts import Verdict, edits

MAX_NOTE_CHARS = 2000
MAX_REVIEWER_CHARS = 100


class VerdictError(ValueError):
    """A decision that is refused; the message says why and what to do. Nothing was written."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


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
    job = {"prompt": prompt, "model": row.get("model")}
    for name in ("duration", "aspect_ratio"):  # a model that takes none has none (midjourney-video)
        if row.get(name) is not None:
            job[name] = row[name]
    if row.get("reference_images"):
        job["reference_images"] = list(row["reference_images"])
    if row.get("params"):
        job["params"] = json.loads(row["params"])
    manifest = Path(row["manifest"]) if row.get("manifest") else Path(".")
    try:
        checked = check_job(job, file=f"edited prompt of {job_key}", folder=manifest.parent)
    except ManifestError as exc:
        raise VerdictError("; ".join(str(issue) for issue in exc.issues)) from None
    digest = request_hash(checked["model"], checked["prompt"], checked["duration"], checked["aspect_ratio"],
                          checked["ref_ids"], int(row.get("variation") or 1), checked["param_ids"])
    return checked["prompt"], digest
