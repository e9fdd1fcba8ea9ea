"""Does I/O (reads only): what the review page shows, the clips of a scope with their earlier
takes, and a cheap version of the ledger's state that says when to read them again.

The scope is fixed when the server starts, except that `--run last` (the default) grows: it is
the last run at start and every run after it, so a server left open shows what a later run
regenerated or added (a regenerated row moves to the later run's id). `--run ID` stays that run.

An earlier take is an archived version of a row (`<key>@<hash>`, pipeline/store/archive.py): kept
with its video when a run regenerated the row. Each card lists its row's earlier takes, newest
first, with their dates and credits, so the old and new can be played side by side.

The clips of one prompt (across models, aspect ratios, params) come one after the other, where
the first of them stands (pipeline/reports/takes.py): the page shows them side by side. Each clip
carries what its card says of it: model, params, credits ("up to" a catalog bound), generation time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.reports.takes import duration_text, generation_seconds, grouped, take_facts
from pipeline.store.archive import base_key, base_key_col, is_archived, is_archived_col
from pipeline.store.ledger import Ledger
from pipeline.store.runs import read_runs, runs_path
from pipeline.store.schema import DOWNLOADED
from pipeline.store.scope import ALL, LAST, resolve_manifest, resolve_run
from pipeline.store.verdicts import read_verdicts, review_counts, verdicts_path, with_review

TAKE_COLUMNS = ["status", "prompt", "credits_charged", "output_path", "submitted_at", "completed_at", "downloaded_at",
                "updated_at", "attempts"]
ORDER = ["manifest", "row", "variation", "job_key"]


def _when(row: dict[str, Any]) -> str | None:
    """When a take was made: downloaded, else completed, else last changed."""
    at = row.get("downloaded_at") or row.get("completed_at") or row.get("updated_at")
    return at.isoformat() if at else None


def _state_of(path: Path) -> tuple[int, int]:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return (0, 0)
    return (found.st_size, found.st_mtime_ns)


class ClipBook:
    """The clips one review server shows; every read opens the ledger afresh (a run may be
    writing it), read-only and without its lock."""

    def __init__(self, ledger: Path, *, run: str, manifest: Path | None, video_root: Path):
        self.ledger_path = ledger
        runs = read_runs(ledger)
        self.run_id = resolve_run(runs, run)  # ScopeError for a bad --run or --manifest
        self.manifest = resolve_manifest(runs, manifest)
        self.video_root = video_root
        # `--run last` grows with later runs: every run but those before the last one is in scope.
        self.growing = run == LAST
        self._earlier_runs: list[str] = []
        if self.growing and self.run_id is not None:
            began = runs.filter(pl.col("run_id") == self.run_id)["started_at"].min()
            self._earlier_runs = runs.filter(pl.col("started_at") < began)["run_id"].to_list()
        self._cached: tuple[tuple, dict[str, Any]] | None = None

    # -- scope --

    def scope(self) -> pl.Expr:
        """The current (not archived) rows this server shows."""
        condition = ~is_archived_col()
        if self.growing and self.run_id is not None:
            condition = condition & pl.col("run_id").is_not_null() & ~pl.col("run_id").is_in(self._earlier_runs)
        elif self.run_id is not None:
            condition = condition & (pl.col("run_id") == self.run_id)
        if self.manifest is not None:
            condition = condition & (pl.col("manifest") == self.manifest)
        return condition

    def describe(self) -> str:
        if self.run_id is None:
            scope = "all runs"
        elif self.growing:
            scope = f"run {self.run_id} and later runs"
        else:
            scope = f"run {self.run_id}"
        return scope + (f" · {Path(self.manifest).name}" if self.manifest else "")

    def version(self) -> str:
        """Changes whenever a reader would see something new: a part written or merged (the
        parts folder and the high-water mark), a journal line, a run ended, a decision logged.
        Only stat() calls: the page asks every few seconds."""
        path = self.ledger_path
        watched = (path, path.with_name(f"{path.stem}.journal.jsonl"), path.with_name(f"{path.stem}.highwater.json"),
                   runs_path(path), verdicts_path(path))
        return "-".join(f"{size:x}.{mtime:x}" for size, mtime in map(_state_of, watched))

    # -- rows --

    def ledger(self) -> Ledger:
        return Ledger.open(self.ledger_path, readonly=True)

    def one(self, job_key: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(the ledger's row of job_key, 0 or 1 of it; the decisions log), read afresh."""
        return self.ledger().rows([job_key]), read_verdicts(self.ledger_path)

    def in_scope(self, row: pl.DataFrame) -> bool:
        return bool(row.filter(self.scope()).height)

    def row(self, job_key: str) -> dict[str, Any] | None:
        """A row the page may show media of: a current row in scope, or an earlier take of one."""
        ledger = self.ledger()
        found = ledger.rows([job_key])
        if is_archived(job_key):
            current = ledger.rows([base_key(job_key)], ["run_id", "manifest"])
            if not (found.height and self.in_scope(current)):
                return None
        elif not self.in_scope(found):
            return None
        return found.row(0, named=True)

    def video_file(self, row: dict[str, Any]) -> Path | None:
        """The row's video if it resolves inside the output folder, else None."""
        if row.get("status") != DOWNLOADED or not row.get("output_path"):
            return None
        try:
            path = Path(row["output_path"]).resolve(strict=True)
        except OSError:
            return None
        if not path.is_relative_to(self.video_root) or not path.is_file() or path.suffix != ".mp4":
            return None
        return path

    def video_object(self, row: dict[str, Any]) -> str | None:
        """The row's video when it is an object in a store (--out s3://...): served through the
        server's proxy. Not asked of the store here: a page of 500 cards makes no 500 requests."""
        path = row.get("output_path") or ""
        if row.get("status") != DOWNLOADED or "://" not in path or not path.endswith(".mp4"):
            return None
        return path

    def has_video(self, row: dict[str, Any]) -> bool:
        return self.video_object(row) is not None or self.video_file(row) is not None

    # -- the page's JSON --

    def clip(self, row: dict[str, Any], takes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        try:
            metadata = json.loads(row["metadata"]) if row.get("metadata") else {}
        except ValueError:
            metadata = {}
        references = []
        for i, ref in enumerate(row.get("reference_images") or []):
            if ref.startswith(("http://", "https://")):
                references.append({"url": ref, "local": False, "name": ref})
            else:
                references.append({"url": f"/reference/{row['job_key']}/{i}", "local": True,
                                   "name": Path(ref).name})
        key = row["job_key"]
        video = self.has_video(row)
        return {
            "job_key": key, "status": row.get("status"), "prompt": row.get("prompt"),
            "duration": row.get("duration"), "aspect_ratio": row.get("aspect_ratio"), "model": row.get("model"),
            "metadata": metadata, "credits_estimated": row.get("credits_estimated"),
            "credits_charged": row.get("credits_charged"), "attempts": row.get("attempts"),
            "error": row.get("error"), "expired": bool(row.get("expired")), "row": row.get("row"),
            "variation": row.get("variation"), "manifest": Path(row["manifest"]).name if row.get("manifest") else None,
            "run_id": row.get("run_id"), "made_at": _when(row),
            "video": f"/video/{key}" if video else None,
            "poster": f"/poster/{key}" if video else None,
            "references": references,
            "takes": takes or [],
            **take_facts(row),
            "review": {"decision": row.get("review_decision"), "note": row.get("review_note"),
                       "reviewer": row.get("review_reviewer"),
                       "at": row["review_at"].isoformat() if row.get("review_at") else None,
                       "prompt": row.get("review_prompt")},
            "edited": bool(row.get("review_edited")),
        }

    def _take(self, row: dict[str, Any]) -> dict[str, Any]:
        key = row["job_key"]
        video = self.has_video(row)
        return {"job_key": key, "status": row.get("status"), "prompt": row.get("prompt"),
                "credits_charged": row.get("credits_charged"), "made_at": _when(row),
                "generation": duration_text(generation_seconds(row.get("submitted_at"), row.get("completed_at"))),
                "video": f"/video/{key}" if video else None, "poster": f"/poster/{key}" if video else None}

    def takes(self, ledger: Ledger, keys: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The earlier takes of each of `keys`, newest first."""
        if not keys:
            return {}
        archived = ledger.scan(["job_key"]).filter(is_archived_col() & base_key_col().is_in(keys)).collect()
        found: dict[str, list[dict[str, Any]]] = {}
        for row in ledger.rows(archived["job_key"], ["job_key", *TAKE_COLUMNS]).iter_rows(named=True):
            found.setdefault(base_key(row["job_key"]), []).append(self._take(row))
        for takes in found.values():
            takes.sort(key=lambda take: take["made_at"] or "", reverse=True)
        return found

    def clips(self) -> dict[str, Any]:
        """Every clip in scope, the counts of decisions, the scope, and the version they were read
        at; read again only when the version moved."""
        version = self.version()
        if self._cached and self._cached[0] == version:
            return self._cached[1]
        ledger = self.ledger()
        keys = ledger.scan(["run_id", "manifest"]).filter(self.scope()).select("job_key").collect()["job_key"]
        rows = grouped(with_review(ledger.rows(keys), read_verdicts(self.ledger_path)), ORDER)
        takes = self.takes(ledger, keys.to_list())
        payload = {"clips": [self.clip(row, takes.get(row["job_key"])) for row in rows.iter_rows(named=True)],
                   "counts": review_counts(rows), "version": version,
                   "scope": {"run": self.run_id or ALL, "manifest": self.manifest, "growing": self.growing}}
        self._cached = (version, payload)
        return payload
