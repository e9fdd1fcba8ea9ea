"""Does I/O: a local ledger in an earlier format becomes a Delta table on its first writable open,
crash-safely, without losing a row or a credit.

The formats, oldest first: one `ledger.parquet` file; a folder of that name holding Parquet parts
(store/parts.py); the Delta table in that same folder. The steps, each finished by the next open
whenever a crash stops one:
1. a single file becomes a folder of one part (parts.migrate_file: staged, then renamed in place);
2. the parts' current rows are written as the table's first commit, in the same folder, beside the
   parts (a Delta table is only what its `_delta_log` names, so a commit that never lands leaves
   the parts as the ledger; the commit's metadata holds the last journal seq the parts held);
3. the ledger writes its high-water mark for the table (ledger.py), and only then are the parts
   deleted (`remove_parts`), so a crash before it leaves parts the next open deletes.
The journal is untouched: its lines after the parts' last seq are replayed on the table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from pipeline.store import parts
from pipeline.store.location import Location
from pipeline.store.schema import LEDGER_SCHEMA
from pipeline.store.table import TABLE_SCHEMA, LedgerTable, batch_of, write_new

COMMITS_SEARCHED = 1000  # a mark lost: this many commits back are searched for the journal's last


# a version of the table: a commit, or a checkpoint of the log (single or multi-part)
_VERSION = re.compile(r"\d{20}\.(json|checkpoint(\.\d+\.\d+)?\.parquet)")


def is_delta(path: Path) -> bool:
    """A table: a `_delta_log` naming a version. A migration's write that died before its first
    commit leaves the folder (and data files) but no version: the parts are still the ledger."""
    log = path / "_delta_log"
    return log.is_dir() and any(_VERSION.fullmatch(entry.name) for entry in log.iterdir())


def has_old_format(path: Path) -> bool:
    """A single-file ledger, one being turned into parts, or a folder of parts with no table yet."""
    return parts.pending_migration(path) or (not is_delta(path) and bool(parts.list_parts(path)))


def _with_partitions(frame: pl.LazyFrame) -> pl.LazyFrame:
    """An old row's partition: the night its job was first sent (else submitted, else last changed)."""
    first = pl.coalesce("first_sent_at", "submitted_at", "updated_at")
    return frame.with_columns(
        first.dt.strftime("%Y-%m-%d").fill_null("1970-01-01").alias("night"),
        pl.col("manifest").map_elements(batch_of, return_dtype=pl.String).fill_null(batch_of(None)).alias("batch"))


def migrate(path: Path, file_seq: int) -> int | None:
    """Steps 1 and 2 for the ledger at `path`: the journal seq the new table holds, or None when
    there was nothing to migrate (a new ledger, or a table already)."""
    if parts.pending_migration(path):
        parts.migrate_file(path, file_seq)
    if is_delta(path):
        return None
    found = parts.list_parts(path)
    if not found:
        return None
    seq = max(p.last for p in found)
    rows = parts.current(found, list(LEDGER_SCHEMA))
    frame = _with_partitions(rows).select(list(TABLE_SCHEMA)).collect(engine="streaming")
    write_new(Location(str(path), path), frame, {"migrated_from": "parts", "seq": seq, "rows": frame.height})
    return seq


def stored_seq(table: LedgerTable, journal: str) -> int:
    """The last seq of this journal the table holds, when no mark says it (a mark deleted, or from
    before the table): its newest commit naming `journal`, or the migration that took over the parts."""
    for commit in table.history(COMMITS_SEARCHED):
        try:
            said = json.loads(commit.get("videobatch") or "{}")
        except (ValueError, TypeError):
            continue
        if said.get("journal") == journal or said.get("migrated_from"):
            return int(said.get("seq", 0))
    return 0


def remove_parts(path: Path) -> None:
    """Step 3: the parts a finished migration left (the table and the mark hold everything)."""
    if not is_delta(path):
        return
    for leftover in [*path.glob("part-*.parquet"), *path.glob(".tmp-*")]:
        leftover.unlink(missing_ok=True)
