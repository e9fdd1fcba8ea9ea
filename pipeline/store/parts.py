"""Where checkpoints land: a folder of immutable Parquet parts, the newest version of a row winning.

Layout (the folder is the ledger path itself, e.g. `outputs/ledger.parquet/`, as Spark writes a
table): `part-<first seq>-<last seq>-<rows>.parquet`, each holding the ledger's columns plus
- `_seq`: the journal sequence number of the checkpoint that wrote this version of the row;
- `_removed`: this version says the row is gone (an edited row's key moved to `<key>@<hash>`);
- `_supersedes`: an older version of this job_key exists in an earlier part. Only a fast path for
  our own reads; the meaning of the table does not depend on it.

The current state of a row is its version with the highest `_seq`, unless that version is
`_removed`. A checkpoint writes one new part with just the rows changed since the last one, so its
cost follows the rows changed. Compaction merges the newest parts of one size tier at a time
(never more than MERGE_AT parts under SETTLED_ROWS rows each), which keeps the number of files
logarithmic in the small sizes and each merge bounded.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.store.atomic import fsync_dir as _fsync_dir, replace_atomic
from pipeline.store.schema import LEDGER_SCHEMA, conform
from pipeline.store.table import overlaid

SEQ, REMOVED, SUPERSEDES = "_seq", "_removed", "_supersedes"
BOOKKEEPING: dict[str, pl.DataType] = {SEQ: pl.Int64, REMOVED: pl.Boolean, SUPERSEDES: pl.Boolean}
PART_SCHEMA: dict[str, pl.DataType] = {**LEDGER_SCHEMA, **BOOKKEEPING}
MERGE_AT = 8  # parts of one tier were merged together (the format's own compaction, before the table)
_PART = re.compile(r"^part-(\d{12})-(\d{12})-(\d+)\.parquet$")


@dataclass(frozen=True)
class Part:
    path: Path
    first: int  # lowest journal seq it folds in
    last: int  # highest journal seq it folds in
    rows: int
    legacy: bool = False  # today's single ledger file, read as it is until a writable open migrates it
    size: int = 0  # bytes, as listed
    pinned: Path | None = None  # a reader's open descriptor of it (/proc/self/fd/N): read even once a merge deletes it

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def source(self) -> Path:
        """Where its rows are read from."""
        return self.pinned or self.path

    @property
    def tier(self) -> int:
        return 0 if self.rows < 64 else 1 + int(math.log(self.rows / 64, MERGE_AT))


def part_name(first: int, last: int, rows: int) -> str:
    return f"part-{first:012d}-{last:012d}-{rows}.parquet"


def parse_part_name(name: str) -> tuple[int, int]:
    """The (first, last) seqs a part's file name says it holds."""
    m = _PART.match(name)
    return (int(m[1]), int(m[2])) if m else (0, -1)


def list_parts(folder: Path) -> list[Part]:
    """The live parts, oldest first. A part whose seq range another part covers is the input of a
    merge that crashed before deleting it: it holds nothing the covering part lacks, so it is skipped.

    A reader racing a merge may find a listed name gone when it is sized (FileNotFoundError): it lists again.
    """
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    parts = [Part(folder / n, int(m[1]), int(m[2]), int(m[3]), size=os.stat(folder / n).st_size)
             for n in names if (m := _PART.match(n))]
    live = [p for p in parts
            if not any(q is not p and q.first <= p.first and p.last <= q.last
                       and (q.first, q.last) != (p.first, p.last) for q in parts)]
    return sorted(live, key=lambda p: (p.last, p.first))


def covered_parts(folder: Path) -> list[Path]:
    live = {p.path for p in list_parts(folder)}
    return [folder / n for n in os.listdir(folder) if _PART.match(n) and folder / n not in live]


def empty(schema: dict = PART_SCHEMA) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _scan(parts: list[Part], columns: list[str]) -> pl.LazyFrame:
    if not parts:
        return empty({c: PART_SCHEMA[c] for c in columns}).lazy()
    if parts[0].legacy:
        return legacy_scan(parts[0].path, parts[0].last).select(columns)
    return scan_parts(parts).select(columns)


def scan_parts(parts: list[Part]) -> pl.LazyFrame:
    """The parts' rows in PART_SCHEMA: a column a part written by an earlier version lacks (the
    schema only grows) is read as null, whichever part comes first."""
    return pl.scan_parquet([p.source for p in parts], schema=PART_SCHEMA, missing_columns="insert")


def legacy_scan(path: Path, seq: int) -> pl.LazyFrame:
    """Today's single-file ledger as a part: missing columns (older versions) filled with nulls."""
    return conform(pl.scan_parquet(path), LEDGER_SCHEMA).with_columns(pl.lit(seq, pl.Int64).alias(SEQ), pl.lit(False).alias(REMOVED), pl.lit(False).alias(SUPERSEDES))


def newest(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Each job_key's version with the highest _seq (removed or not)."""
    return frame.filter(pl.col(SEQ) == pl.col(SEQ).max().over("job_key")).unique("job_key", keep="last")


def current(parts: list[Part], columns: list[str], overlay: pl.DataFrame | None = None,
            hidden: list[str] | None = None) -> pl.LazyFrame:
    """The current state of `columns` (job_key always included), lazily.

    `overlay`: rows changed in memory since the last part (they win over every part); `hidden`:
    keys removed in memory. Rows without `_supersedes` have no older version, so only the few keys
    that do are resolved by `_seq`; the rest stream through untouched.
    """
    columns = ["job_key", *[c for c in columns if c != "job_key"]]
    wanted = [*columns, SEQ, REMOVED]
    table = _scan(parts, wanted)
    if len(parts) > 1:
        revised = _scan(parts, ["job_key", SUPERSEDES]).filter(pl.col(SUPERSEDES)).select("job_key").unique()
        revised_keys = revised.collect()["job_key"]
        if revised_keys.len():
            resolved = newest(table.filter(pl.col("job_key").is_in(revised_keys.implode())))
            table = pl.concat([table.filter(~pl.col("job_key").is_in(revised_keys.implode())), resolved])
    return overlaid(table.filter(~pl.col(REMOVED)), columns, overlay, hidden)


def lookup(parts: list[Part], keys: list[str], columns: list[str] | None = None) -> pl.DataFrame:
    """The newest stored version of each of `keys` (with the bookkeeping columns), one scan for all.

    Versions are resolved only if a found row says an older version exists (`_supersedes`).
    """
    columns = list(PART_SCHEMA) if columns is None else [
        "job_key", *[c for c in columns if c not in ("job_key", *BOOKKEEPING)], *BOOKKEEPING]
    if not parts or not keys:
        return empty({c: PART_SCHEMA[c] for c in columns})
    wanted = pl.Series(keys, dtype=pl.String).implode()
    found = _scan(parts, columns).filter(pl.col("job_key").is_in(wanted)).collect()
    if len(parts) > 1 and found[SUPERSEDES].any():
        found = newest(found.lazy()).collect()
    return found


def write_part(folder: Path, frame: pl.DataFrame, first: int, last: int) -> Part:
    """Write `frame` (PART_SCHEMA) as a new part: temp file, fsync, rename, fsync the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / part_name(first, last, frame.height)
    stored = frame.select(list(PART_SCHEMA)).cast(PART_SCHEMA)
    replace_atomic(final, lambda out: write_parquet(stored, out),
                   temporary=folder / f".tmp-{os.getpid()}-{final.stem}.partial")  # no reader globbing *.parquet sees it
    return Part(final, first, last, frame.height, size=final.stat().st_size)


def write_parquet(frame: pl.DataFrame, out) -> None:
    """frame.write_parquet(out), encoded in memory first and then written by Python, so the disk's
    own error (ENOSPC, EROFS) reaches the caller as an OSError: Polars writing to a file object
    turns it into a ComputeError that may not name it ("Invalid thrift: transport error").
    The encoded part is compressed: a fraction of the frame already in memory."""
    encoded = io.BytesIO()
    frame.write_parquet(encoded, row_group_size=65_536)
    out.write(encoded.getbuffer())


def migrate_file(path: Path, seq: int) -> None:
    """Turn today's single-file ledger at `path` into a folder at the same path with one part.

    Crash-safe in three steps, each finished on the next open: the part is written (streaming,
    so a million rows need little memory) into `.<name>.migrating/`; the old file is moved to
    `.<name>.v1` beside it; the folder is renamed into place. The old file is then deleted.
    """
    staging = path.with_name(f".{path.name}.migrating")
    old = path.with_name(f".{path.name}.v1")
    if path.is_file():
        if staging.exists():
            for leftover in staging.iterdir():  # a migration that died while writing: start over
                leftover.unlink()
        staging.mkdir(exist_ok=True)
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        table = legacy_scan(path, seq)
        target = staging / part_name(0, seq, rows)
        temporary = staging / f".tmp-{target.stem}.partial"
        table.sink_parquet(temporary, row_group_size=65_536)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
        _fsync_dir(staging)
        os.replace(path, old)
        _fsync_dir(path.parent)
    if staging.exists() and not path.exists():
        os.replace(staging, path)
        _fsync_dir(path.parent)
    old.unlink(missing_ok=True)


def pending_migration(path: Path) -> bool:
    return path.is_file() or (not path.exists() and path.with_name(f".{path.name}.migrating").is_dir())


class PartsSource:
    """A ledger still in the parts format (or the single file before it), read as it is: what a
    read-only open (status, report, plan) sees until the first writable open migrates it to a Delta
    table (store/migrate.py). The same reads as table.LedgerTable, without the partition columns."""

    def __init__(self, parts: list[Part]):
        self.parts = parts
        self.version = -1

    def current(self, columns: list[str], overlay: pl.DataFrame | None = None,
                hidden: list[str] | None = None) -> pl.LazyFrame:
        return current(self.parts, columns, overlay, hidden)

    def lookup(self, keys: list[str], columns: list[str] | None = None) -> pl.DataFrame:
        columns = list(LEDGER_SCHEMA) if columns is None else ["job_key", *[c for c in columns if c != "job_key"]]
        found = lookup(self.parts, keys, columns)
        return found.filter(~pl.col(REMOVED)).select(columns) if found.height else found.select(columns)
