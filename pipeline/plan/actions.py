"""Decides, from manifest rows + ledger, the Plan: what a run would do with each row and what it costs.

Pure: reads the ledger (only the manifest's rows, and a few columns of a lazy scan) and the file
system or the object store (is a finished video still there? one listing per folder or prefix),
changes nothing. The run and the `plan` command share it, so what `plan` prints is what `run` does.

Besides the manifest's rows, a plan holds the earlier versions of its edited rows (`<key>@<hash>`)
that may still hold a paid job not downloaded (`versions_to_follow`), and names the rows whose id
another manifest holds in this ledger with another request (`Plan.shared`): a ledger row belongs
to the manifest that wrote it, so two manifests never replace each other's videos in turn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import polars as pl

from pipeline.manifest.identity import job_key_for, legacy_slug, slug
from pipeline.plan.budget import Budget, fit
from pipeline.store.archive import base_key_col, is_archived_col
from pipeline.store.objects import sizes_under
from pipeline.store.schema import COMPLETED, DOWNLOADED, FAILED, IN_FLIGHT, PENDING, REJECTED


class Action(StrEnum):
    """What a run does with a row: the `action` column of a Plan (plain strings in polars)."""

    SKIP = "skip"  # DOWNLOADED and its file is still there
    DOWNLOAD = "download"  # COMPLETED, or DOWNLOADED with the file gone: fetch again, no new generation
    TRACK = "track"  # has a job_id and is still generating: follow it
    RESUME = "resume"  # intent journaled, no job_id: resubmit the same body with the same key
    SUBMIT = "submit"  # new row (or PENDING with no intent yet): first attempt
    RETRY = "retry"  # FAILED and --retry-failed: a new attempt
    NEW_VERSION = "new-version"  # same id, changed request: the old row is archived, a new job made
    LEAVE_FAILED = "failed"  # FAILED (without --retry-failed) or REJECTED: left as it is
    REGENERATE = "regenerate"  # a reviewer asked for it (pipeline/plan/reviewed.py): archived like NEW_VERSION


# The members under their short names, as the rest of the code imports them.
SKIP, DOWNLOAD, TRACK, RESUME, SUBMIT, RETRY, NEW_VERSION, LEAVE_FAILED, REGENERATE = Action
ACTIONS = tuple(Action)
# Actions that may create a job and so spend credits.
SPENDING = (RESUME, SUBMIT, RETRY, NEW_VERSION, REGENERATE)

_LEDGER_COLUMNS = [
    "job_key", "request_hash", "status", "job_id", "attempts", "idempotency_key", "request_body",
    "credits_charged", "credits_prior", "video_url", "expired", "output_path", "bytes", "error",
    "first_sent_at", "manifest",
]
# Manifest columns copied into the ledger with every new attempt; an archived version
# (`<key>@<hash>`), which the manifest no longer lists, takes them back from its own ledger row.
ROW_FIELDS = ("manifest", "row", "variation", "prompt", "duration", "aspect_ratio",
              "reference_images", "model", "metadata", "request_hash", "credits_estimated", "params")


@dataclass
class Plan:
    manifest: Path
    rows: pl.DataFrame  # manifest columns + `action` + the ledger's columns prefixed `ledger_`
    orphans: int = 0  # ledger rows of this manifest no longer in it (edited or removed rows)
    counts: dict[str, int] = field(default_factory=dict)
    # Rows whose id another manifest's ledger row holds with another request (job_key, row,
    # held_by): running would replace that manifest's video, and the two would pay in turn.
    shared: pl.DataFrame | None = None
    max_credits: int | None = None  # --max-credits: the first attempts that fit go in (plan/budget.py)

    def follow(self, versions: pl.DataFrame) -> None:
        """Add archived versions to follow (`versions_to_follow`), counted with the rest. In place:
        the runner adds the versions it archives as it starts, and the run's summary and runs-table
        row, which hold this plan, count them too."""
        if versions.height:
            self.rows = pl.concat([self.rows, versions], how="diagonal_relaxed")
            self.counts = count_actions(self.rows)

    def shared_ids_refusal(self, ledger_path: Path) -> str | None:
        """Why this manifest may not run against this ledger (its ids are another manifest's), or None."""
        if self.shared is None or not self.shared.height:
            return None
        first = self.shared["held_by"][0]
        theirs = self.shared.filter(pl.col("held_by") == first)
        keys = ", ".join(theirs["job_key"].head(5).to_list()) + (", ..." if theirs.height > 5 else "")
        others = self.shared.height - theirs.height
        return (f"{self.manifest}: {theirs.height} ids ({keys}) are rows of {first} in {ledger_path}, with "
                f"other requests" + (f" (and {others} more ids of other manifests)" if others else "") +
                "; running would replace that manifest's videos, and each run of either would pay again. "
                "Nothing was submitted. Give these rows other ids, or use another --ledger for this manifest, "
                f"or, if this file replaces {first} (moved or renamed), run again with --take-over")

    @property
    def credits_to_spend(self) -> int:
        """Upper bound of what a run would charge: one attempt for every spending row (under
        --max-credits, for every one that fits)."""
        budget = self.budget
        if budget is not None:
            return budget.started
        spending = self.rows.filter(pl.col("action").is_in(SPENDING))
        return int(spending["credits_estimated"].sum() or 0)

    @property
    def budget(self) -> Budget | None:
        """Under --max-credits: the first attempts that fit, in the order a run submits them, and
        the rows left out. None without a cap."""
        if self.max_credits is None:
            return None
        attempts = self.submit_order().select("job_key", "credits_estimated")
        return fit(self.max_credits, attempts.iter_rows())

    def submit_order(self) -> pl.DataFrame:
        """The spending rows in the order a run submits them (run/intake.py): resumed intents first
        (they may already have made their job), then the rest as `to_run` orders them."""
        wanted = self.to_run(longest_first=self.max_credits is None)
        spending = wanted.filter(pl.col("action").is_in(SPENDING))
        return spending.sort(pl.col("action") != RESUME, maintain_order=True)

    @property
    def credits_total(self) -> int:
        return int(self.rows["credits_estimated"].sum() or 0)

    def to_run(self, *, longest_first: bool) -> pl.DataFrame:
        """The rows a run works on, in the order it takes them up. Longest clips first when
        nothing caps the spend: they take longest to generate, so the batch ends sooner. Under a
        budget the manifest's order decides what gets made, so it is kept."""
        wanted = self.rows.filter(~pl.col("action").is_in([SKIP, LEAVE_FAILED]))
        return wanted.sort("duration", descending=True, maintain_order=True) if longest_first else wanted


def _same_size(path: str, size: int | None) -> bool:
    try:
        return os.stat(path).st_size == (size if size is not None else -1)
    except OSError:
        return False


def _regular_files(folder: str) -> set[str] | None:
    """Names of the regular files in `folder` (symlinks followed), or None if it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries if entry.is_file()}
    except OSError:
        return None


def _file_present(paths: list[str | None], sizes: list[int | None], check_size: list[bool]) -> list[bool]:
    """Whether each finished video is still on disk: one listing per folder, not a stat per file.

    A file listed under its recorded name counts as there without comparing its size with the
    ledger's `bytes`: a video reaches its final name only by an atomic rename, after its data
    was verified and fsynced (download.py, `_store`), so a file under that name is whole; only a
    hand outside videobatch could change it (and the old size check would not have caught a
    same-size change either). The exception is `check_size`: a job key that has an archived older
    version, whose old video once had this very name; if a crash undid the renames, that old video
    could be back under it, so there the size still decides, as it did for every file before.
    A name not in the listing (or a folder that cannot be listed) gets the old stat-and-size test,
    so a miss means exactly what it always did.
    """
    listings: dict[str, set[str] | None] = {}
    stored: dict[str, dict[str, int]] = {}  # a store prefix -> its objects' sizes: one listing each
    present = []
    for path, size, strict in zip(paths, sizes, check_size):
        if path is None:
            present.append(False)
            continue
        if "://" in path:  # an object (--out URL): no rename vouches for it, so its size decides
            prefix = path.rsplit("/", 1)[0]
            if prefix not in stored:
                stored[prefix] = sizes_under(prefix)
            present.append(size is not None and stored[prefix].get(path) == size)
            continue
        folder, name = os.path.split(path)
        if folder not in listings:
            listings[folder] = _regular_files(folder or ".")
        names = listings[folder]
        # Not listed, a key with an old version, or no recorded size (never "there" before either):
        # the old stat-and-size test decides.
        listed = not strict and size is not None and names is not None and name in names
        present.append(listed or _same_size(path, size))
    return present


_SCANNED = ["job_key", "manifest", "status", "idempotency_key"]  # of every row, lazily


def _ledger_reads(ledger, keys: pl.Series) -> tuple[pl.DataFrame, pl.LazyFrame]:
    """(the ledger rows of `keys`, a lazy scan of `_SCANNED`), from a Ledger or a frame."""
    if isinstance(ledger, pl.DataFrame):
        return (ledger.filter(pl.col("job_key").is_in(keys.implode())).select(_LEDGER_COLUMNS),
                ledger.lazy().select(_SCANNED))
    return ledger.rows(keys, _LEDGER_COLUMNS), ledger.scan(_SCANNED)


def count_actions(rows: pl.DataFrame) -> dict[str, int]:
    counts = {a: 0 for a in ACTIONS}
    for name, n in rows.group_by("action").len().iter_rows():
        counts[name] = n
    return counts


def _changed() -> pl.Expr:
    """The manifest asks for another request than the ledger's row under this key."""
    return pl.col("ledger_status").is_not_null() & (pl.col("ledger_request_hash") != pl.col("request_hash"))


def _action(retry_failed: bool) -> pl.Expr:
    """A row's action from its ledger state (columns `ledger_*`, `request_hash`, `file_present`)."""
    status = pl.col("ledger_status")
    downloaded = status == DOWNLOADED
    return (
        pl.when(status.is_null()).then(pl.lit(SUBMIT))
        .when(_changed()).then(pl.lit(NEW_VERSION))
        .when(downloaded & pl.col("file_present")).then(pl.lit(SKIP))
        .when(downloaded).then(pl.lit(DOWNLOAD))
        .when(status == COMPLETED).then(pl.lit(DOWNLOAD))
        .when(status.is_in(IN_FLIGHT) & pl.col("ledger_job_id").is_not_null()).then(pl.lit(TRACK))
        .when((status == PENDING) & pl.col("ledger_idempotency_key").is_not_null()).then(pl.lit(RESUME))
        .when(status == PENDING).then(pl.lit(SUBMIT))
        .when((status == FAILED) & pl.lit(retry_failed)).then(pl.lit(RETRY))
        .when(status.is_in([FAILED, REJECTED])).then(pl.lit(LEAVE_FAILED))
        .otherwise(pl.lit(SUBMIT))
        .alias("action")
    )


def _followed() -> pl.Expr:
    """A version that may hold a paid job not yet downloaded: a job in flight or finished, or a
    journaled intent that may have made one."""
    status = pl.col("status")
    return status.is_in(IN_FLIGHT) | ((status == PENDING) & pl.col("idempotency_key").is_not_null())


def versions_to_follow(versions: pl.DataFrame) -> pl.DataFrame:
    """Archived versions (ledger rows, every column) as plan rows: those `_followed` selects, with
    their own fields for the manifest's, and the action any row in that state gets (TRACK,
    DOWNLOAD or RESUME: never a new attempt, the manifest no longer asks for it).

    An intent without a job_id is resumed with its journaled bytes and key: it may have made a
    job, and within the API's 24 h the same key answers with that job or makes it once, never a
    second one (CONTRACT.md, Idempotency-Key). It may cost the one clip the user asked for before
    the edit; forgetting it could lose a paid one. Past 23 h the runner looks for its job in the
    job list first, as for any intent: found, it is followed; not there, the version is settled as
    FAILED, never sent under a new key (runner.Work.superseded, transitions.after_search)."""
    versions = versions.filter(_followed())
    rows = versions.select(
        "job_key", *ROW_FIELDS,
        *[pl.col(c).alias(f"ledger_{c}") for c in _LEDGER_COLUMNS if c != "job_key"])
    return rows.with_columns(file_present=pl.lit(False)).with_columns(_action(False)).drop("file_present")


_BASE_KEY = base_key_col()  # the id an archived version was


def _versions_of(ledger, archived: pl.DataFrame, keys: pl.Series, manifest_text: str) -> pl.DataFrame:
    """The archived versions (`archived`: their `_SCANNED` columns) of this manifest's rows, or of
    rows it once had, to follow."""
    found = archived.filter(
        _followed() & ((pl.col("manifest") == manifest_text) | _BASE_KEY.is_in(keys.implode())))["job_key"]
    if not found.len():
        return pl.DataFrame()
    rows = ledger.filter(pl.col("job_key").is_in(found.implode())) if isinstance(ledger, pl.DataFrame) \
        else ledger.rows(found)
    return versions_to_follow(rows)


def _keys_ending(ledger, suffixes: pl.Series) -> pl.Series:
    """The keys the ledger knows rows by that end in one of `suffixes`: of current rows, and of rows
    only an archived version (`<key>@<hash>`) holds now (a run archived the reviewed attempt of a
    regenerate verdict, then made nothing: the next run regenerates it under that key)."""
    scan = ledger.lazy().select("job_key") if isinstance(ledger, pl.DataFrame) else ledger.scan(["job_key"])
    return scan.select(job_key=base_key_col()).filter(pl.col("job_key").str.slice(-12).is_in(suffixes.implode())) \
        .unique(maintain_order=True).collect()["job_key"]


def keep_ledger_keys(manifest_rows: pl.DataFrame, ledger) -> pl.DataFrame:
    """The manifest's rows, each under the key the ledger already knows it by.

    A row without an id whose prompt has accents was keyed with `legacy_slug` before slugs
    transliterated (`un-caf-paris-<hash>`, now `un-cafe-a-paris-<hash>`). While the ledger holds
    the old key and not the new one, the row keeps the old key: under the new one it would be a new
    job, paid again. Only a key made from the row's own prompt is considered (not one a review edit
    stands in for). Vectorised up to the rows whose request hash ends a ledger key they do not
    have: only those slug their prompt again (none in a ledger made since, or of ASCII prompts).
    """
    text = pl.col("prompt")  # not ASCII: more UTF-8 bytes than characters (~1 ms for 100,000 rows)
    accented = manifest_rows.filter(
        (pl.col("key_source") == "hash") & (text.str.len_bytes() != text.str.len_chars())
    ).select("job_key", "prompt", "variation", "request_hash")
    if not accented.height:
        return manifest_rows
    held = _keys_ending(ledger, accented["request_hash"].str.slice(0, 12))
    others = held.filter(~held.is_in(accented["job_key"].implode()))  # keys no row has: legacy ones?
    if not others.len():
        return manifest_rows
    legacy = set(others.to_list())
    unknown = accented.filter(~pl.col("job_key").is_in(held.implode())  # the ledger lacks the new key
                              & pl.col("request_hash").str.slice(0, 12).is_in(others.str.slice(-12).implode()))
    kept = {}
    for key, prompt, variation, digest in unknown.iter_rows():
        old = job_key_for(None, variation, digest, legacy_slug(prompt))
        if old in legacy and key == job_key_for(None, variation, digest, slug(prompt)):
            kept[key] = old
    return manifest_rows.with_columns(pl.col("job_key").replace(kept)) if kept else manifest_rows


def make_plan(manifest_rows: pl.DataFrame, ledger, *, retry_failed: bool, manifest: Path,
              take_over: bool = False) -> Plan:
    """Decide every row's action from its ledger state (vectorised: 100,000 rows in well under a second).

    `ledger` is a Ledger (only the manifest's rows are read, and a few columns of the rest) or a frame.
    A row whose id another manifest holds with another request is `shared` (refused by the run and
    `plan`), unless `take_over` hands those rows to this manifest. A row keeps the key the ledger
    knows it by (`keep_ledger_keys`).
    """
    return plan_kept_keys(keep_ledger_keys(manifest_rows, ledger), ledger, retry_failed=retry_failed,
                          manifest=manifest, take_over=take_over)


def plan_kept_keys(manifest_rows: pl.DataFrame, ledger, *, retry_failed: bool, manifest: Path,
                   take_over: bool = False) -> Plan:
    """make_plan for rows already under the keys the ledger knows them by (make_reviewed_plan keeps
    them before it matches verdicts: a second pass would scan the ledger's keys again for nothing)."""
    mine, everything = _ledger_reads(ledger, manifest_rows["job_key"])
    # Earlier versions of edited rows (`<key>@<hash>`): one scan serves the disk check and the follow.
    archived = everything.filter(is_archived_col()).collect()
    recorded = mine.rename({c: f"ledger_{c}" for c in _LEDGER_COLUMNS if c != "job_key"})
    rows = manifest_rows.join(recorded, on="job_key", how="left", maintain_order="left")

    downloaded = pl.col("ledger_status") == DOWNLOADED
    # Only finished rows need a look at the disk; everything else is decided by the ledger alone.
    done = rows.filter(downloaded)
    present = pl.Series("file_present", [], dtype=pl.Boolean)
    if done.height:
        had_old_version = done["job_key"].is_in(archived.select(_BASE_KEY.unique())["job_key"].implode())
        present = pl.Series(
            "file_present",
            _file_present(done["ledger_output_path"].to_list(), done["ledger_bytes"].to_list(),
                          had_old_version.to_list()),
        )
    rows = rows.join(
        done.select("job_key").with_columns(present), on="job_key", how="left", maintain_order="left"
    )

    manifest_text = str(manifest)
    foreign = pl.col("ledger_manifest").is_not_null() & (pl.col("ledger_manifest") != manifest_text)
    shared = rows.filter(_changed() & foreign & pl.lit(not take_over)).select(
        "job_key", "row", pl.col("ledger_manifest").alias("held_by"))
    rows = rows.with_columns(_action(retry_failed)).drop("file_present")

    orphans = everything.filter(
        (pl.col("manifest") == manifest_text) & ~pl.col("job_key").is_in(manifest_rows["job_key"].implode())
    ).select(pl.len()).collect().item()
    plan = Plan(manifest=manifest, rows=rows, orphans=orphans, counts=count_actions(rows), shared=shared)
    plan.follow(_versions_of(ledger, archived, manifest_rows["job_key"], manifest_text))
    return plan
