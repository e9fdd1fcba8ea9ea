"""Wires the durable record of every job: an append-only journal (store/journal.py) folded into a
folder of Parquet parts (store/checkpoint.py), the current rows read through store/rows.py.

Algorithm:
- `record()` turns a change into a journal line `{"s": seq, "k": job_key, "f": {field: value}}`
  holding *absolute* values, and applies it to memory. Nothing is durable yet.
- `commit()` writes every buffered line and fsyncs the journal. Concurrent callers share fsyncs
  (group commit): while one write+fsync runs in a thread, later callers wait for the next one,
  which covers all their records at once.
- `checkpoint()` writes the rows changed since the last one as a new immutable part
  (parts.py: temp file, fsync, rename, fsync the folder), then drops the journal lines it
  folded in: a journal line is dropped only once a durable part holds it. A checkpoint that
  fails (a full disk) leaves the journal and memory as they were, and raises. A part's name
  carries the last journal seq it contains, so if a crash comes between the rename and the trim, opening skips the lines already folded in (and replaying one twice
  would be harmless anyway: every line sets values, none adds to them). `checkpoint_async()` does
  the reading and writing in a worker thread, so the event loop never waits on it.
- Opening lists the parts and replays the journal; it reads no row. A last line cut mid-write
  (no newline) was never acknowledged and is dropped; a complete line that does not parse, or
  seqs missing between the parts and the journal, is corruption and stops the open
  (LedgerCorrupt) rather than guessing. The high-water file (highwater.py) names a part deleted
  or cut and a journal cut at its end. A journal write that fails is cut back to its last whole
  line, and every later commit fails the same way: no line ever follows a gap.
- A read-only open (status, report, a reader in another process) holds each part it listed open,
  so a merge deleting it meanwhile changes nothing it reads; an open that races a checkpoint or
  merge lists again.
- A ledger written by an earlier version (one `ledger.parquet` file) becomes a folder of the
  same name with one part on its first writable open (parts.migrate_file).

Memory: nothing of the history is held. Rows are read when asked for, by key (`get`, `rows`) or
as a lazy scan of the current state (`scan`); rows changed since the last checkpoint live as
Python dicts, and rows read or written in this session are remembered by key.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from deltalake.exceptions import DeltaError

from pipeline.store import migrate, parts as store, runs
from pipeline.store.checkpoint import Checkpoints, journal_id
from pipeline.store.faults import (RESTORE, FirstFault, LedgerCorrupt, LedgerError, StorageFault, disk_fault,
                                   table_fault)
from pipeline.store.highwater import check_against, check_parts, check_table, read_highwater
from pipeline.store.location import Location
from pipeline.store.state import anchor, exists, where_of
from pipeline.store.journal import Journal, decode_fields
from pipeline.store.lock import LockHeld, RunLock
from pipeline.store.rows import LedgerRows
from pipeline.store.table import LedgerTable
from pipeline.store.schema import LEDGER_SCHEMA, STATUSES

SEQ_METADATA = "videobatch_journal_seq"  # the journal seq a single-file ledger (before parts) holds
_FIELDS = frozenset(LEDGER_SCHEMA)
READ_TRIES = 10  # a read-only open racing a writer's checkpoints and merges lists again this often
__all__ = ["anchor", "exists", "where_of", "Ledger", "LedgerCorrupt", "LedgerError", "LedgerLocked", "StorageFault", "read_ledger", "reading_ledger"]


def _close_all(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


class LedgerLocked(LedgerError):
    def __init__(self, path: Path, holder: dict):
        self.holder = holder
        who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
               f"since {holder.get('started_at', '?')}")
        super().__init__(
            f"another videobatch run ({who}) is using the ledger {path}; wait for it to finish, "
            "or if that process is gone, run again (a dead run's lock is taken over)")


def _paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(f"{path.stem}.journal.jsonl"), path.with_name(f"{path.stem}.lock")


class Ledger:
    def __init__(self, path: Path, where: Location, run_id: str | None, readonly: bool):
        self.path = path  # local: the table's folder; remote: the anchor of the local files in the state folder
        self.where = where  # the table: this folder, or the store URL
        self.journal_path, self.lock_path = _paths(path)
        self.run_id = run_id
        self.readonly = readonly
        self.stats = {"records": 0, "fsyncs": 0, "fsync_seconds": 0.0, "checkpoints": 0,
                      "checkpoint_seconds": 0.0, "checkpoint_rows": 0, "merges": 0}
        self._lock: RunLock | None = None
        self._faults = FirstFault()  # the first storage failure met: the line a stopped run ends with
        # Its parts get the ledger's pieces, never the ledger: no cycle, so a ledger dropped unclosed
        # (read_ledger's) is freed at once and its pinned parts with it.
        self._rows = LedgerRows()
        self.table = LedgerTable(where)
        self._journal = Journal(self.journal_path, self.stats, self._faults.met)
        self._checkpoints = Checkpoints(path, self.table, self._rows, self._journal, self.stats, self._faults.met)
        self._pins: list[int] = []  # a read-only open's descriptors of an old-format ledger's parts
        weakref.finalize(self, _close_all, self._pins)
        self._closed = False

    # -- opening --

    @classmethod
    def open(cls, path: str | Path | Location, *, run_id: str | None = None, readonly: bool = False,
             state_dir: str | Path | None = None) -> Ledger:
        local = anchor(path, state_dir)
        where = where_of(local)
        if readonly:
            for attempt in range(READ_TRIES):
                ledger = cls(local, where, run_id, readonly)
                try:
                    ledger._load()
                    return ledger
                except (FileNotFoundError, LedgerCorrupt) as exc:  # maybe a checkpoint or migration between two reads
                    ledger.close()
                    if attempt == READ_TRIES - 1:
                        if isinstance(exc, OSError):
                            raise disk_fault(exc, ledger.path, "read") from None
                        raise
                    time.sleep(0.01 * (attempt + 1))
                except (OSError, DeltaError) as exc:
                    ledger.close()
                    raise table_fault(exc, where, "read") from None
        ledger = cls(local, where, run_id, readonly)
        try:
            ledger.path.parent.mkdir(parents=True, exist_ok=True)
            ledger._lock = RunLock(ledger.lock_path)
            try:
                ledger._lock.acquire(run_id)
            except LockHeld as held:
                raise LedgerLocked(ledger.path, held.holder) from None
            ledger._load()
        except BaseException as exc:
            ledger._journal.close()
            ledger._release_lock()
            if isinstance(exc, (OSError, DeltaError)):
                raise table_fault(exc, where, "open") from None
            raise
        return ledger

    def _load(self) -> None:
        # The journal before the table: a checkpoint between the two reads only moves lines into
        # a commit this open then reads, so no line read is missed (a reader retries if one is).
        entries = self._journal.read()
        journal_last = max((int(e["s"]) for e in entries), default=None)
        mark = read_highwater(self.path)
        local = self.where.path
        if local is not None and self.readonly and migrate.has_old_format(local):
            self._load_old_format(mark, journal_last)  # read as it is; the first writable open migrates it
        else:
            migrated = None
            if local is not None and not self.readonly:
                seq = int(pl.read_parquet_metadata(local).get(SEQ_METADATA, "0")) if local.is_file() else 0
                migrated = migrate.migrate(local, seq)
            self._rows.source = self.table
            self.table.load()
            check_table(mark, self.path, str(self.where), self.table.version)
            self.table.check_files()
            if mark is not None and mark.version is not None:
                stored = mark.seq
            else:  # a table just migrated (or a mark from before it): the seq its first commit took over
                stored = migrated if migrated is not None else migrate.stored_seq(self.table, journal_id(self.journal_path))
            self._rows.stored_seq = stored
            check_against(mark and replace(mark, parts={}), self.path, [], self.journal_path, journal_last, stored)
        self._journal.replay(entries, self._rows.stored_seq, self._apply)
        if self.readonly:
            return
        if local is not None:
            local.mkdir(exist_ok=True)  # a run that records nothing still leaves a ledger (empty) to read
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            stale.unlink(missing_ok=True)  # a single-file migration that died half way
        self._journal.open()  # drops a torn tail so new lines start clean
        runs.read_runs(self.path)  # a damaged runs table is named now, not after the run has spent
        self._checkpoints.write_highwater()  # adopts a ledger from before the mark, or just migrated
        if local is not None:
            migrate.remove_parts(local)  # only now: the table and the mark hold what they held

    def _load_old_format(self, mark, journal_last: int | None) -> None:
        """A read-only open of a ledger still in parts (or the single file): each part held open."""
        rows = self._rows
        path = self.where.path
        if store.pending_migration(path):
            seq = int(pl.read_parquet_metadata(path).get(SEQ_METADATA, "0")) if path.is_file() else 0
            found = self._legacy_parts(seq)
        else:
            found = self._pin(store.list_parts(path))
        check_parts(path, found)
        rows.source = store.PartsSource(found)
        rows.stored_seq = max((p.last for p in found), default=0)
        # Parts first: a lost part explains seqs missing from the journal, so it is what is named.
        check_against(mark, path, found, self.journal_path, journal_last)

    def _pin(self, parts: list[store.Part]) -> list[store.Part]:
        """Hold each part open: its rows stay readable through /proc/self/fd even once a merge
        deletes the file (Linux; elsewhere the path is read, and a race means listing again)."""
        if not os.path.isdir("/proc/self/fd"):
            return parts
        pinned = []
        for part in parts:
            fd = os.open(part.path, os.O_RDONLY)  # FileNotFoundError: merged away since listed, list again
            self._pins.append(fd)
            pinned.append(replace(part, size=os.fstat(fd).st_size, pinned=Path(f"/proc/self/fd/{fd}")))
        return pinned

    def _legacy_parts(self, seq: int) -> list[store.Part]:
        if self.path.is_file():
            rows = pl.scan_parquet(self.path).select(pl.len()).collect().item()
            return [store.Part(self.path, 0, seq, rows, legacy=True)]
        return store.list_parts(self.path.with_name(f".{self.path.name}.migrating"))

    def _apply(self, entry: dict) -> None:
        if entry.get("op") == "rename":
            self._rows.move(entry["from"], entry["to"])
        else:
            self._rows.patch(entry["k"], decode_fields(entry.get("f") or {}))

    # -- reading (store/rows.py) --

    def get(self, job_key: str) -> dict[str, Any] | None:
        return self._rows.get(job_key)

    def __contains__(self, job_key: str) -> bool:
        return job_key in self._rows

    def __len__(self) -> int:
        return self.scan(["job_key"]).select(pl.len()).collect(engine="streaming").item()

    def scan(self, columns: list[str] | None = None) -> pl.LazyFrame:
        """The current state, lazily: one row per job_key, only `columns` (job_key first).

        For reading before a run starts or in a read-only ledger: a checkpoint's merge may remove
        files a scan collected later would open.
        """
        return self._rows.scan(columns)

    def rows(self, keys: list[str] | pl.Series, columns: list[str] | None = None) -> pl.DataFrame:
        """The current rows of `keys` (those the ledger has), `columns` only (job_key first)."""
        return self._rows.rows(keys, columns)

    def frame(self) -> pl.DataFrame:
        """The whole current state, in memory: for tests and small ledgers (use scan() or rows())."""
        return self._rows.frame()

    def credits_total(self) -> int:
        """creditCost charged over every row of the ledger."""
        return self._rows.credits_total()

    def first_payer(self, job_id: str) -> str | None:
        """The row that first recorded `job_id` (by submitted_at), or None if no row has it."""
        return self._rows.first_payer(job_id)

    # -- changing --

    def record(self, job_key: str, **fields: Any) -> None:
        """Change a row (created if new). In memory now; durable after the next commit()."""
        self._check_writable()
        unknown = set(fields) - _FIELDS
        if unknown:
            raise ValueError(f"not ledger columns: {sorted(unknown)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"not a job status: {fields['status']!r}")
        fields["updated_at"] = datetime.now(timezone.utc)
        fields.setdefault("run_id", self.run_id)
        self._journal.record(job_key, fields)
        self._rows.patch(job_key, fields)
        self.stats["records"] += 1

    def rename(self, old_key: str, new_key: str) -> None:
        """Move a row to a new key (an edited job's old version is kept under another name)."""
        self._check_writable()
        if new_key in self:
            raise ValueError(f"ledger already has a row {new_key!r}")
        self._journal.rename(old_key, new_key)
        self._rows.move(old_key, new_key)

    def _check_writable(self) -> None:
        if self.readonly or self._closed:
            raise LedgerError(f"{self.path} is open read-only or closed")

    # -- durability (store/journal.py) --

    def commit_sync(self) -> None:
        self._journal.commit_sync()

    async def commit(self) -> None:
        """Make every record so far durable; callers that arrive together share one fsync.
        Raises StorageFault if the journal cannot be written: nothing recorded since may be sent."""
        await self._journal.commit()

    # -- checkpoints (store/checkpoint.py) --

    @property
    def fault(self) -> StorageFault | BaseException | None:
        """The first storage failure met: the line a stopped run ends with."""
        return self._faults.fault

    @fault.setter
    def fault(self, fault: StorageFault | BaseException | None) -> None:
        self._faults.fault = fault

    def _met(self, fault: StorageFault) -> StorageFault:
        return self._faults.met(fault)

    def _check_lock(self) -> None:
        if self._lock is not None:
            try:
                self._lock.check()
            except StorageFault as fault:
                raise self._met(fault) from None

    def checkpoint(self) -> None:
        """Write the rows changed since the last checkpoint as a new part, then trim the journal.

        Nothing is written when nothing changed: a rerun that finds every row done writes no part.
        Raises StorageFault (journal and memory as they were) if the part cannot be written.
        """
        if not self._journal.is_open:
            return
        self._check_lock()
        self._checkpoints.run()

    async def checkpoint_async(self) -> None:
        """checkpoint() for the event loop: the reading and writing run in a worker thread.

        Cancelled while its part is being written, the thread still finishes; checkpoint() and
        close() wait for it (and undo its fold if it failed).
        """
        if not self._journal.is_open or self._checkpoints.busy:
            return
        self._check_lock()
        await self._checkpoints.run_async()

    # -- runs table --

    def append_run(self, run: dict[str, Any]) -> None:
        """Add the run's row to the runs table (store/runs.py), under this ledger's lock."""
        self._check_writable()
        self._check_lock()
        try:
            runs.append_run(self.path, run)
        except StorageFault as fault:
            raise self._met(fault) from None

    # -- closing --

    def close(self) -> None:
        """Checkpoint, tidy the table (compaction, vacuum) and let go. After a failed journal write
        nothing more is written: the journal stays as it was cut back to, which the next open replays."""
        if self._closed:
            return
        try:
            if not self.readonly and self._journal.failed is None:
                self.checkpoint()
                self._checkpoints.maintain()
        finally:
            self._closed = True
            self._journal.close()
            self._release_lock()
            _close_all(self._pins)

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def reading_ledger(path: str | Path | Location, state_dir: str | Path | None = None):
    """Around a read of the ledger at `path`: a data file of its table lost or damaged inside (or a
    part of an old-format ledger) fails the read with an error that may name no file. That error
    becomes one LedgerCorrupt naming the file; an error no file explains is raised as it was."""
    try:
        yield
    # PanicException: polars' streaming engine panics (a BaseException) on a data file cut short
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, DeltaError, OSError) as exc:
        where = where_of(anchor(path, state_dir))
        if where.path is not None and not migrate.is_delta(where.path):
            for part in store.list_parts(where.path):
                try:
                    pl.read_parquet(part.path)
                except (pl.exceptions.PolarsError, OSError) as damage:
                    reason = (str(damage).splitlines() or [type(damage).__name__])[0][:120]
                    raise LedgerCorrupt(f"{part.path} is damaged ({reason}); {RESTORE}") from None
            raise exc
        table = LedgerTable(where)
        if where.path is not None and table.load():
            for uri in table.files():
                try:
                    pl.read_parquet(uri)
                except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as damage:
                    reason = (str(damage).splitlines() or [type(damage).__name__])[0][:120]
                    raise LedgerCorrupt(f"{uri} is damaged ({reason}); {RESTORE}") from None
        if isinstance(exc, DeltaError) or (isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)):
            raise table_fault(exc, where, "read") from None
        raise exc


def read_ledger(path: str | Path) -> pl.DataFrame:
    """The ledger as it stands (snapshot + journal), without locking or changing any file."""
    ledger = Ledger.open(path, readonly=True)
    return ledger.frame()
