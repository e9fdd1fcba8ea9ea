"""Does I/O: the ledger's table, a Delta Lake table (delta-rs) in a local folder or at a store URL.

One row per job_key is the current state, so polars (`pl.read_delta`), pandas, DuckDB and Spark
read it in one call. The layout, and why:
- partitioned by `night` (the UTC date a row was first written) and `batch` (the manifest's file
  name): a checkpoint's MERGE names the partitions of the rows it changes, so it reads and rewrites
  only tonight's files of its own manifest, never the history, and two manifests running at once
  on two machines never touch the same files (delta-rs's conflict checker lets both commit);
- a commit that does conflict (another writer committed in a partition this one read) is retried
  on the new version: every row we merge holds absolute values, so a retry is the same change.
- history is kept 30 days (time travel is the audit), compacted and vacuumed by `maintain()`.

Frames go to delta-rs through the Arrow C stream interface (polars and delta-rs both speak it;
arro3 for a schema), never through pyarrow: pyarrow is a test extra, not a runtime dependency.

Durability: delta-rs writes a local table's files without fsync, so after a commit the new log
entry and every data file it adds are fsynced here before the journal may be trimmed. An object
store acknowledges a PUT only once it is durable.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
from arro3.core import Table
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from pipeline.store.atomic import fsync_dir, fsync_path
from pipeline.store.faults import RESTORE, LedgerCorrupt
from pipeline.store.location import Location
from pipeline.store.schema import LEDGER_SCHEMA, conform

PARTITIONS: dict[str, pl.DataType] = {"night": pl.String, "batch": pl.String}
TABLE_SCHEMA: dict[str, pl.DataType] = {**LEDGER_SCHEMA, **PARTITIONS}
REMOVED = "_removed"  # a merge source row that deletes its key (an edited row's key moved away)
RETENTION_DAYS = 30
CONFIGURATION = {"delta.logRetentionDuration": f"interval {RETENTION_DAYS} days",
                 "delta.deletedFileRetentionDuration": f"interval {RETENTION_DAYS} days",
                 # statistics on job_key only (the first column): lookups by key skip files by it,
                 # and no min/max of every prompt and request body is kept in the log
                 "delta.dataSkippingNumIndexedCols": "1"}
COMMIT_TRIES = 30
COMPACT_AT = 16  # a partition with more files than this is compacted at the end of a run


def batch_of(manifest: str | None) -> str:
    """The partition of a manifest's rows: its file name, as a safe path segment."""
    name = Path(manifest).name if manifest else "none"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "none"


def night_of(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%d")


def _quote(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def overlaid(stored: pl.LazyFrame, columns: list[str], overlay: pl.DataFrame | None,
             hidden: list[str] | None) -> pl.LazyFrame:
    """`stored` rows with memory on top: `overlay`'s rows replace theirs, `hidden` keys are gone."""
    shadow = list(hidden or [])
    if overlay is not None and overlay.height:
        shadow += overlay["job_key"].to_list()
    if shadow:
        stored = stored.filter(~pl.col("job_key").is_in(pl.Series(shadow, dtype=pl.String).implode()))
    if overlay is not None and overlay.height:
        stored = pl.concat([stored.select(columns), overlay.lazy().select(columns)])
    return stored.select(columns)


class LedgerTable:
    """The Delta table at `where`, read at the version loaded (a stable snapshot) and merged into."""

    def __init__(self, where: Location):
        self.where = where
        self.uri = str(where.path.absolute()) if where.path is not None else where.url
        self.lock = threading.RLock()  # the snapshot is swapped after a commit, while a reader may hold it
        self.stats = {"commits": 0, "conflicts": 0}
        self._dt: DeltaTable | None = None

    # -- reading --

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(self.uri)

    def load(self, version: int | None = None) -> bool:
        """Read the table's newest snapshot (or `version`): False if there is no table yet."""
        try:
            dt = DeltaTable(self.uri, version=version)
        except TableNotFoundError:
            return False
        with self.lock:
            self._dt = dt
        return True

    @property
    def version(self) -> int:
        """The loaded snapshot's version; -1 before the first commit."""
        return -1 if self._dt is None else self._dt.version()

    def scan(self, columns: list[str]) -> pl.LazyFrame:
        """The current rows' `columns`, lazily, as of the loaded snapshot."""
        with self.lock:
            dt = self._dt
        if dt is None:
            return pl.DataFrame(schema={c: TABLE_SCHEMA[c] for c in columns}).lazy()
        # conform: a table written by an earlier version lacks the columns added since (read as null)
        return conform(pl.scan_delta(dt), {c: TABLE_SCHEMA[c] for c in columns})

    def current(self, columns: list[str], overlay: pl.DataFrame | None = None,
                hidden: list[str] | None = None) -> pl.LazyFrame:
        """The current state of `columns` (job_key first), with `overlay` (rows changed in memory,
        winning over the table) and without `hidden` (keys removed in memory)."""
        columns = ["job_key", *[c for c in columns if c != "job_key"]]
        return overlaid(self.scan(columns), columns, overlay, hidden)

    def lookup(self, keys: list[str], columns: list[str] | None = None) -> pl.DataFrame:
        """The stored rows of `keys` (with their partition columns), one scan for all."""
        columns = list(TABLE_SCHEMA) if columns is None else [
            "job_key", *[c for c in columns if c != "job_key"]]
        if not keys:
            return pl.DataFrame(schema={c: TABLE_SCHEMA[c] for c in columns})
        wanted = pl.Series(keys, dtype=pl.String).implode()
        return self.scan(columns).filter(pl.col("job_key").is_in(wanted)).collect()

    def check_files(self) -> None:
        """A local table: every data file its snapshot names is there with the size the log says
        (a file deleted or cut is named now, not as a read's error later). A store's objects are
        immutable and listed by the store: not checked one by one."""
        with self.lock:
            dt = self._dt
        if dt is None or self.where.path is None:
            return
        actions = pl.DataFrame(dt.get_add_actions(flatten=True)).select("path", "size_bytes")
        root = Path(self.uri)
        for path, size in actions.iter_rows():
            data = root / path
            try:
                found = data.stat().st_size
            except FileNotFoundError:
                raise LedgerCorrupt(f"{data} is missing (the table's log names it); {RESTORE}") from None
            if found != size:
                raise LedgerCorrupt(f"{data} has {found} bytes, not the {size} it was written with; {RESTORE}")

    def files(self) -> list[str]:
        with self.lock:
            return [] if self._dt is None else self._dt.file_uris()

    # -- writing --

    def create(self) -> None:
        """The empty table, with its partitions and history settings; another writer's is as good."""
        schema = Table.from_arrow(pl.DataFrame(schema=TABLE_SCHEMA)).schema
        try:
            DeltaTable.create(self.uri, schema, mode="error", partition_by=list(PARTITIONS),
                              configuration=CONFIGURATION, name="videobatch ledger")
        except DeltaError as exc:
            if "already exists" not in str(exc).lower():
                raise
        self.load()

    def merge(self, frame: pl.DataFrame, metadata: dict[str, str] | None = None) -> int:
        """Make the table's rows of `frame`'s keys what `frame` says (TABLE_SCHEMA + REMOVED: a true
        REMOVED deletes the key) in one commit, retried over conflicts; the new version."""
        if self._dt is None and not self.load():
            self.create()
            self.load()
        nights = frame["night"].unique().to_list()
        batches = frame["batch"].unique().to_list()
        source = frame.select([*TABLE_SCHEMA, REMOVED]).cast({**TABLE_SCHEMA, REMOVED: pl.Boolean})
        columns = {c: f"s.{c}" for c in TABLE_SCHEMA}
        predicate = (f"t.job_key = s.job_key AND t.night IN ({_quote(nights)}) "
                     f"AND t.batch IN ({_quote(batches)})")
        properties = CommitProperties(custom_metadata={"videobatch": json.dumps(metadata or {})})
        for attempt in range(COMMIT_TRIES):
            try:
                # Its own snapshot, the newest: readers in other threads keep theirs meanwhile.
                dt = DeltaTable(self.uri)
                (dt.merge(source, predicate=predicate, source_alias="s", target_alias="t",
                          commit_properties=properties)
                 .when_matched_delete(predicate=f"s.{REMOVED}")
                 .when_matched_update(columns, predicate=f"NOT s.{REMOVED}")
                 .when_not_matched_insert(columns, predicate=f"NOT s.{REMOVED}")
                 .execute())
                ours = dt.version()  # the writer's snapshot is now at its own commit
                break
            except CommitFailedError:
                self.stats["conflicts"] += 1
                if attempt == COMMIT_TRIES - 1:
                    raise
                time.sleep(min(2.0, 0.05 * 2 ** min(attempt, 6)) * (0.5 + (os.getpid() % 10) / 10))
        self.stats["commits"] += 1
        self.load()
        self._fsync_commit(ours)  # ours, even if another writer has committed after it
        return ours

    def _fsync_commit(self, version: int) -> None:
        """A local table: the log entry of `version` and the data files it adds, fsynced."""
        if self.where.path is None:
            return
        root = Path(self.uri)
        entry = root / "_delta_log" / f"{version:020d}.json"
        try:
            lines = entry.read_text().splitlines()
        except FileNotFoundError:
            return
        folders = {entry.parent}
        for line in lines:
            action = json.loads(line).get("add")
            if action:
                data = root / action["path"]
                fsync_path(data)
                folders.add(data.parent)
        fsync_path(entry)
        for folder in folders:
            fsync_dir(folder)

    # -- history --

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first (delta-rs's commitInfo, with our "videobatch" metadata)."""
        with self.lock:
            dt = self._dt
        return [] if dt is None else dt.history(limit)

    def maintain(self, partitions: set[tuple[str, str]], vacuum: bool = True) -> dict[str, Any]:
        """Compact the partitions this run touched that hold many small files, and (`vacuum`) delete
        the files no version of the last 30 days needs. Conflicts leave it for the next run."""
        done: dict[str, Any] = {"compacted": 0, "vacuumed": 0}
        if self._dt is None and not self.load():
            return done
        actions = pl.DataFrame(self._dt.get_add_actions(flatten=True))
        for night, batch in sorted(partitions):
            count = actions.filter((pl.col("partition.night") == night)
                                   & (pl.col("partition.batch") == batch)).height
            if count > COMPACT_AT:
                try:
                    self._dt.optimize.compact(partition_filters=[("night", "=", night), ("batch", "=", batch)])
                    done["compacted"] += 1
                except CommitFailedError:
                    pass  # another writer changed it meanwhile: the next run compacts
                self.load()
        if vacuum:
            done["vacuumed"] = len(self._dt.vacuum(retention_hours=RETENTION_DAYS * 24, dry_run=False))
            self.load()
        return done


def write_new(where: Location, frame: pl.DataFrame, metadata: dict[str, str]) -> int:
    """A new table holding `frame` (TABLE_SCHEMA) in its first commit: a migration's one atomic step."""
    table = LedgerTable(where)
    data = frame.select(list(TABLE_SCHEMA)).cast(TABLE_SCHEMA)
    write_deltalake(table.uri, data, mode="error", partition_by=list(PARTITIONS), configuration=CONFIGURATION,
                    name="videobatch ledger",
                    commit_properties=CommitProperties(custom_metadata={"videobatch": json.dumps(metadata)}))
    table.load()
    table._fsync_commit(table.version)
    return table.version
