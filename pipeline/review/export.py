"""`videobatch export --approved DEST`: the approved clips, ready to hand to an asset system.

Each approved clip (its current attempt approved in review, DOWNLOADED, file on disk) becomes
DEST/<job_key>.mp4: a hard link where the file system allows (no copy, no extra space), else a
copy. Files land under a temporary name and are renamed into place, so DEST never holds a half
clip. Beside them, approved.csv and approved.json list exactly the clips of this export with
job_key, file, prompt, model, its params (duration and aspect_ratio apart, as the manifest
writes them), metadata, cost, reviewer and note. Nothing in DEST is ever deleted.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.models import DEFAULT_MODEL
from pipeline.store.atomic import write_text_atomic
from pipeline.store.objects import fetch, head, sha256_of
from pipeline.store.archive import is_archived_col
from pipeline.store.verdicts import Verdict, read_verdicts, with_review
from pipeline.store.ledger import Ledger
from pipeline.store.runs import read_runs
from pipeline.store.schema import DOWNLOADED
from pipeline.store.scope import ALL, resolve_run, rows_in_scope, scope_filter

# A spreadsheet reads a cell that starts with one of these as a formula (CSV injection). OWASP's
# advice: prefix such a cell with a single quote, so it shows as text. approved.json keeps the exact values.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

SIDECAR_FIELDS = ("job_key", "file", "prompt", "duration", "aspect_ratio", "model", "params", "metadata", "credits_charged",
                  "credits_estimated", "sha256", "reviewer", "note", "approved_at", "manifest", "row", "run_id")


@dataclass
class Exported:
    dest: Path
    clips: int
    linked: int
    copied: int
    missing: list[str]  # approved, but the file is gone: run again to download it
    run_id: str | None = None  # the run whose rows were looked at (None: every run)
    outside: int = 0  # approved clips of other runs, left out by --run


def _approved(frame):
    return frame.filter((pl.col("review_decision") == Verdict.APPROVE) & (pl.col("status") == DOWNLOADED))


def approved_rows(ledger_path: Path, run: str, manifest: Path | None) -> pl.DataFrame:
    rows = rows_in_scope(Ledger.open(ledger_path, readonly=True),
                         scope_filter(read_runs(ledger_path), run, manifest)
                         & ~is_archived_col())
    reviewed = with_review(rows, read_verdicts(ledger_path))
    return _approved(reviewed).sort("manifest", "row", "variation", nulls_last=True)


def approved_outside(ledger_path: Path, run: str, manifest: Path | None) -> int:
    """Approved clips of this --manifest (or any) that `run` leaves out: a later run changed no
    approved row, and `--run all` would export them. Counted on a scan of a few columns."""
    if run == ALL:
        return 0
    runs = read_runs(ledger_path)
    in_scope = scope_filter(runs, run, manifest)
    everywhere = scope_filter(runs, ALL, manifest)
    with Ledger.open(ledger_path, readonly=True) as book:  # open until collected: the scan reads its parts
        outside = book.scan(["status", "run_id", "manifest", "idempotency_key", "request_hash"]).filter(
            everywhere & ~in_scope & ~is_archived_col())
        return _approved(with_review(outside, read_verdicts(ledger_path))).select(pl.len()).collect().item()


def spreadsheet_safe(value):
    """A CSV cell a spreadsheet shows as text, never runs: see FORMULA_STARTS. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _place(source: Path, target: Path) -> bool:
    """Put `source` at `target` atomically; True when hard-linked, False when copied."""
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
        linked = True
    except OSError:  # another file system, or links not allowed: copy instead
        shutil.copyfile(source, temporary)
        with open(temporary, "rb+") as out:
            os.fsync(out.fileno())
        linked = False
    os.replace(temporary, target)
    return linked


def _bring(output_path: str, target: Path, sha256: str | None) -> str | None:
    """The clip put at `target`: "linked" or "copied", or None when its file or object is gone."""
    if "://" in output_path:  # an object in a store (--out s3://...): fetched, unless already here
        if target.is_file() and sha256 is not None and sha256_of(target) == sha256:
            return "copied"
        if head(output_path) is None:
            return None
        fetch(output_path, target)
        return "copied"
    source = Path(output_path)
    if not source.is_file():
        return None
    if target.exists() and os.path.samefile(source, target):
        return "linked"
    return "linked" if _place(source, target) else "copied"


def export_approved(ledger_path: Path, dest: Path, *, run: str = "last", manifest: Path | None = None) -> Exported:
    rows = approved_rows(ledger_path, run, manifest)
    dest.mkdir(parents=True, exist_ok=True)
    records, missing = [], []
    linked = copied = 0
    for row in rows.iter_rows(named=True):
        target = dest / f"{row['job_key']}.mp4"
        how = _bring(row["output_path"], target, row["sha256"])
        if how is None:
            missing.append(row["job_key"])
            continue
        linked, copied = linked + (how == "linked"), copied + (how == "copied")
        records.append({
            "job_key": row["job_key"], "file": target.name, "prompt": row["prompt"], "duration": row["duration"],
            "aspect_ratio": row["aspect_ratio"], "model": row["model"] or DEFAULT_MODEL,
            "params": json.loads(row["params"]) if row["params"] else {},  # null: a row without params
            "metadata": json.loads(row["metadata"]) if row["metadata"] else {},
            "credits_charged": row["credits_charged"], "credits_estimated": row["credits_estimated"],
            "sha256": row["sha256"], "reviewer": row["review_reviewer"], "note": row["review_note"],
            "approved_at": row["review_at"].isoformat() if row["review_at"] else None,
            "manifest": row["manifest"], "row": row["row"], "run_id": row["run_id"],
        })
    write_text_atomic(dest / "approved.json", json.dumps(records, indent=2, ensure_ascii=False) + "\n", mode=0o666)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SIDECAR_FIELDS)
    writer.writeheader()
    for record in records:
        cells = {**record, **{name: json.dumps(record[name], ensure_ascii=False, sort_keys=True)
                              for name in ("params", "metadata")},
                 "note": record["note"] or "", "reviewer": record["reviewer"] or ""}
        writer.writerow({name: spreadsheet_safe(value) for name, value in cells.items()})
    write_text_atomic(dest / "approved.csv", buffer.getvalue(), mode=0o666)
    return Exported(dest=dest, clips=len(records), linked=linked, copied=copied, missing=missing,
                    run_id=resolve_run(read_runs(ledger_path), run),
                    outside=approved_outside(ledger_path, run, manifest))
