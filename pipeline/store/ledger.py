"""The durable record of every job: an append-only journal folded into a folder of Parquet parts.

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

import asyncio
import contextlib
import json
import os
import threading
import time
import weakref
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.store import parts as store, runs
from pipeline.store.atomic import replace_atomic
from pipeline.store.faults import RESTORE, LedgerCorrupt, LedgerError, StorageFault, disk_fault
from pipeline.store.highwater import check_against, check_parts, read_highwater, write_highwater
from pipeline.store.lock import LockHeld, RunLock
from pipeline.store.schema import LEDGER_SCHEMA, STATUSES, TIMESTAMP

SEQ_METADATA = "videobatch_journal_seq"  # the journal seq a single-file ledger (before parts) holds
_TIME_FIELDS = frozenset(name for name, dtype in LEDGER_SCHEMA.items() if dtype == TIMESTAMP)
_FIELDS = frozenset(LEDGER_SCHEMA)
READ_TRIES = 10  # a read-only open racing a writer's checkpoints and merges lists again this often
__all__ = ["Ledger", "LedgerCorrupt", "LedgerError", "LedgerLocked", "StorageFault", "read_ledger", "reading_parts"]


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


@dataclass(frozen=True)
class _Fold:
    """The rows changed since the last part, as the part to write, and what undoes the fold."""

    frame: pl.DataFrame
    first: int
    last: int
    keys: list[str]
    known_before: dict[str, dict[str, Any] | None]  # what memory said the parts held of `keys`


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    raise TypeError(f"cannot journal {type(value).__name__}")


def _decode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    for name in _TIME_FIELDS.intersection(fields):
        if isinstance(fields[name], str):
            fields[name] = datetime.fromisoformat(fields[name])
    return fields


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(f"{path.stem}.journal.jsonl"), path.with_name(f"{path.stem}.lock")


def _line_seq(line: bytes) -> int:
    return int(json.loads(line).get("s", 0))


_DAMAGED = "nothing was changed and nothing will be spent: restore the journal from a backup, or move the " \
           "ledger folder aside and tell us"


def _read_journal(journal: Path) -> tuple[list[dict], int]:
    """Parsed journal entries, and the byte length of its whole lines.

    Only a last line without its newline is torn (a write cut short, never acknowledged); a
    complete line that does not parse is damage, wherever it is.
    """
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return [], 0
    entries: list[dict] = []
    position = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        end = position + len(line) + 1
        if end > len(data):
            break
        if line.strip():
            try:
                entry = json.loads(line)
                int(entry["s"])
            except (ValueError, KeyError, TypeError):
                raise LedgerCorrupt(f"{journal}: line {number} is complete but damaged; {_DAMAGED}") from None
            entries.append(entry)
        position = end
    return entries, position


class Ledger:
    def __init__(self, path: Path, run_id: str | None, readonly: bool):
        self.path = path
        self.journal_path, self.lock_path = _paths(path)
        self.run_id = run_id
        self.readonly = readonly
        self.stats = {"records": 0, "fsyncs": 0, "fsync_seconds": 0.0, "checkpoints": 0,
                      "checkpoint_seconds": 0.0, "checkpoint_rows": 0, "merges": 0}
        self._lock: RunLock | None = None
        self._parts: list[store.Part] = []
        self._parts_lock = threading.RLock()  # a merge deletes files a read may be about to open
        self._stored_seq = 0  # the last journal seq the parts hold
        # What the parts (or a part being written) say of keys read so far: row, or None if absent.
        self._known: dict[str, dict[str, Any] | None] = {}
        self._ever_stored: set[str] = set()  # keys with some version in a part, even a removed one
        self._unwritten: set[str] = set()  # keys whose newest state is in _known, its part not yet written
        self._overlay: dict[str, dict[str, Any]] = {}
        self._removed: set[str] = set()
        self._seq = 0
        self._durable_seq = 0
        self._buffer: list[str] = []
        self._journal = None
        self._journal_size = 0  # bytes of whole, durable lines: a failed write is cut back to it
        self._failed: StorageFault | None = None  # a journal write failed: every later commit fails so
        self.fault: StorageFault | None = None  # the first storage failure met: the line a stopped run ends with
        self._failed_fold: tuple[_Fold, BaseException] | None = None  # a worker's part write that failed
        self._pins: list[int] = []  # a read-only open's descriptors of its parts, closed with it or when it is dropped
        weakref.finalize(self, _close_all, self._pins)
        self._io_lock = threading.Lock()
        self._flush_task: asyncio.Future | None = None
        self._payer_hashes: pl.Series | None = None
        self._session_job_ids: dict[str, list[str]] = {}  # job_id -> keys that recorded it here
        # Held from a fold until its part is written and the journal trimmed, maybe across threads
        # (an async checkpoint's worker releases it): parts are written in the order of their seqs.
        self._storing = threading.Lock()
        self._closed = False

    # -- opening --

    @classmethod
    def open(cls, path: str | Path, *, run_id: str | None = None, readonly: bool = False) -> Ledger:
        if readonly:
            for attempt in range(READ_TRIES):
                ledger = cls(Path(path), run_id, readonly)
                try:
                    ledger._load()
                    return ledger
                except (FileNotFoundError, LedgerCorrupt) as exc:  # maybe a checkpoint or merge between two reads
                    ledger.close()
                    if attempt == READ_TRIES - 1:
                        if isinstance(exc, OSError):
                            raise disk_fault(exc, ledger.path, "read") from None
                        raise
                    time.sleep(0.01 * (attempt + 1))
                except OSError as exc:
                    ledger.close()
                    raise disk_fault(exc, ledger.path, "read") from None
        ledger = cls(Path(path), run_id, readonly)
        try:
            ledger.path.parent.mkdir(parents=True, exist_ok=True)
            ledger._lock = RunLock(ledger.lock_path)
            try:
                ledger._lock.acquire(run_id)
            except LockHeld as held:
                raise LedgerLocked(ledger.path, held.holder) from None
            ledger._load()
        except BaseException as exc:
            ledger._release_lock()
            if isinstance(exc, OSError):
                raise disk_fault(exc, ledger.path, "open") from None
            raise
        return ledger

    def _load(self) -> None:
        # The journal before the parts: a checkpoint between the two reads only moves lines into
        # a part this open then lists, so no line read is missed (a reader retries if one is).
        entries, good_end = _read_journal(self.journal_path)
        mark = read_highwater(self.path)
        if store.pending_migration(self.path):
            seq = int(pl.read_parquet_metadata(self.path).get(SEQ_METADATA, "0")) if self.path.is_file() else 0
            if self.readonly:  # read today's file as it is; the first writable open migrates it
                self._parts = self._legacy_parts(seq)
            else:
                store.migrate_file(self.path, seq)
        if not self._parts:
            self._parts = self._pin(store.list_parts(self.path)) if self.readonly else store.list_parts(self.path)
        check_parts(self.path, self._parts)
        self._stored_seq = max((p.last for p in self._parts), default=0)
        # Parts first: a lost part explains seqs missing from the journal, so it is what is named.
        check_against(mark, self.path, self._parts, self.journal_path, max((int(e["s"]) for e in entries), default=None))
        self._seq = self._stored_seq
        for entry in entries:
            seq = int(entry["s"])
            if seq <= self._stored_seq:
                continue  # already folded into a part
            if seq != self._seq + 1:  # each record takes the next seq: lines are missing
                raise LedgerCorrupt(
                    f"{self.journal_path}: seq {self._seq + 1} to {seq - 1} are missing (the parts end at "
                    f"{self._stored_seq}): the journal was cut, or a part lost; {_DAMAGED}")
            self._apply(entry)
            self._seq = seq
        self._durable_seq = self._seq
        if self.readonly:
            return
        store.migrate_file(self.path, 0)  # no-op, or removes the old file a finished migration left
        self.path.mkdir(exist_ok=True)
        for stale in [*self.path.parent.glob(f".{self.path.name}.tmp-*"), *self.path.glob(".tmp-*"),
                      *store.covered_parts(self.path)]:
            stale.unlink(missing_ok=True)  # a checkpoint or merge that died half way
        self._journal = open(self.journal_path, "ab", buffering=0)  # written whole by os.write, or cut back
        if self._journal.tell() != good_end:
            self._journal.truncate(good_end)  # drop a torn tail so new lines start clean
            os.fsync(self._journal.fileno())
        self._journal_size = good_end
        runs.read_runs(self.path)  # a damaged runs table is named now, not after the run has spent
        self._write_highwater()  # adopts a ledger from before the mark

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

    def _write_highwater(self) -> None:
        write_highwater(self.path, self._stored_seq, max(self._stored_seq, self._durable_seq), self._parts)

    def _legacy_parts(self, seq: int) -> list[store.Part]:
        if self.path.is_file():
            rows = pl.scan_parquet(self.path).select(pl.len()).collect().item()
            return [store.Part(self.path, 0, seq, rows, legacy=True)]
        return store.list_parts(self.path.with_name(f".{self.path.name}.migrating"))

    def _apply(self, entry: dict) -> None:
        if entry.get("op") == "rename":
            self._move(entry["from"], entry["to"])
        else:
            self._patch(entry["k"], _decode_fields(entry.get("f") or {}))

    # -- reading --

    def _read_stored(self, keys: list[str]) -> None:
        """Remember what the parts say of `keys` not read yet: one scan for all of them."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._known]
        if not missing:
            return
        self._remember(self._read_stored_copy(missing), missing)

    def _stored_row(self, job_key: str) -> dict[str, Any] | None:
        self._read_stored([job_key])
        return self._known[job_key]

    def get(self, job_key: str) -> dict[str, Any] | None:
        if job_key in self._removed:
            return None
        patch = self._overlay.get(job_key)
        if patch is not None and patch.get("_full"):
            return {k: v for k, v in patch.items() if k != "_full"}
        stored = self._stored_row(job_key)
        if patch is None:
            return dict(stored) if stored is not None else None
        row = dict(stored) if stored is not None else dict.fromkeys(LEDGER_SCHEMA)
        row.update(patch)
        return row

    def __contains__(self, job_key: str) -> bool:
        if job_key in self._overlay:
            return True
        return job_key not in self._removed and self._stored_row(job_key) is not None

    def __len__(self) -> int:
        return self.scan(["job_key"]).select(pl.len()).collect(engine="streaming").item()

    def _in_memory(self) -> tuple[pl.DataFrame, list[str]]:
        """Rows whose current state is held here, not (yet) in a part; and keys held here as gone."""
        keys = [*self._overlay, *self._removed, *self._unwritten]
        rows, gone = [], []
        for key in dict.fromkeys(keys):
            row = self.get(key)
            (rows.append(row) if row is not None else gone.append(key))
        frame = pl.DataFrame(rows, schema=LEDGER_SCHEMA, orient="row") if rows else _empty(LEDGER_SCHEMA)
        return frame, gone

    def scan(self, columns: list[str] | None = None) -> pl.LazyFrame:
        """The current state, lazily: one row per job_key, only `columns` (job_key first).

        For reading before a run starts or in a read-only ledger: a checkpoint's merge may remove
        files a scan collected later would open.
        """
        columns = list(LEDGER_SCHEMA) if columns is None else columns
        overlay, gone = self._in_memory()
        return store.current(self._parts, columns, overlay, gone)

    def rows(self, keys: list[str] | pl.Series, columns: list[str] | None = None) -> pl.DataFrame:
        """The current rows of `keys` (those the ledger has), `columns` only (job_key first)."""
        columns = list(LEDGER_SCHEMA) if columns is None else ["job_key", *[c for c in columns if c != "job_key"]]
        keys = keys.to_list() if isinstance(keys, pl.Series) else list(keys)
        held = set(self._overlay) | self._removed | set(self._known)
        here = [k for k in keys if k in held]
        with self._parts_lock:
            stored = store.lookup(self._parts, [k for k in keys if k not in held], columns)
        stored = stored.filter(~pl.col(store.REMOVED)).select(columns)
        mine = [row for row in map(self.get, dict.fromkeys(here)) if row is not None]
        if not mine:
            return stored
        return pl.concat([stored, pl.DataFrame(mine, schema=LEDGER_SCHEMA, orient="row").select(columns)])

    def frame(self) -> pl.DataFrame:
        """The whole current state, in memory: for tests and small ledgers (use scan() or rows())."""
        with self._parts_lock:
            return self.scan().collect()

    def credits_total(self) -> int:
        """creditCost charged over every row of the ledger."""
        with self._parts_lock:
            # Streaming: the sum over a million rows never holds them (a run's peak memory).
            total = self.scan(["credits_charged"]).select(pl.col("credits_charged").sum()).collect(
                engine="streaming").item()
        return int(total or 0)

    def first_payer(self, job_id: str) -> str | None:
        """The row that first recorded `job_id` (by submitted_at), or None if no row has it.

        Rows of this session are found by a dict; stored rows by a hashed, sorted index of the
        stored job ids (built on first use, 8 bytes a row), so a miss reads no row.
        """
        held = set(self._overlay) | self._removed | set(self._known)
        mine = [row for row in map(self.get, dict.fromkeys(self._session_job_ids.get(job_id, ())))
                if row is not None and row["job_id"] == job_id]
        candidates = [(row["submitted_at"], row["job_key"]) for row in mine]
        with self._parts_lock:
            if self._payer_hashes is None:
                self._payer_hashes = store.current(self._parts, ["job_id"]).select(
                    pl.col("job_id").drop_nulls().hash(seed=0)).collect(engine="streaming").to_series().sort()
            wanted = pl.Series([job_id]).hash(seed=0)[0]
            index = self._payer_hashes.search_sorted(wanted)
            if index < self._payer_hashes.len() and self._payer_hashes[index] == wanted:
                stored = store.current(self._parts, ["job_id", "submitted_at"]).filter(
                    pl.col("job_id") == job_id).collect(engine="streaming")
                candidates = [(at, key) for key, _, at in stored.iter_rows() if key not in held] + candidates
        if not candidates:
            return None
        # As a sort of every row by submitted_at would: a row with no time first, ties in order.
        return min(candidates, key=lambda c: (c[0] is not None, c[0] or 0))[1]

    # -- changing --

    def _patch(self, job_key: str, fields: dict[str, Any]) -> None:
        patch = self._overlay.get(job_key)
        if patch is None:
            patch = self._overlay[job_key] = {}
            if job_key in self._removed:  # a key moved away and used again: a new row, nothing inherited
                self._removed.discard(job_key)
                patch.update(dict.fromkeys(LEDGER_SCHEMA), _full=True)
        patch.update(fields)
        patch["job_key"] = job_key
        if fields.get("job_id"):
            self._session_job_ids.setdefault(fields["job_id"], []).append(job_key)

    def _move(self, old: str, new: str) -> None:
        row = self.get(old)
        if row is None:
            return
        self._overlay.pop(old, None)
        self._removed.add(old)
        self._removed.discard(new)
        row["job_key"] = new
        self._overlay[new] = {**row, "_full": True}
        if row.get("job_id"):
            self._session_job_ids.setdefault(row["job_id"], []).append(new)

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
        self._seq += 1
        self._buffer.append(json.dumps({"s": self._seq, "k": job_key, "f": fields}, default=_encode,
                                       ensure_ascii=False, separators=(",", ":")) + "\n")
        self._patch(job_key, fields)
        self.stats["records"] += 1

    def rename(self, old_key: str, new_key: str) -> None:
        """Move a row to a new key (an edited job's old version is kept under another name)."""
        self._check_writable()
        if new_key in self:
            raise ValueError(f"ledger already has a row {new_key!r}")
        self._seq += 1
        self._buffer.append(json.dumps({"s": self._seq, "op": "rename", "from": old_key, "to": new_key}) + "\n")
        self._move(old_key, new_key)

    def _check_writable(self) -> None:
        if self.readonly or self._closed:
            raise LedgerError(f"{self.path} is open read-only or closed")

    # -- durability --

    def _write_and_fsync(self, data: bytes) -> None:
        with self._io_lock:
            if self._failed is not None:
                raise self._failed
            started = time.perf_counter()
            fd = self._journal.fileno()
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as exc:
                self._failed = self._met(disk_fault(exc, self.journal_path))
                try:  # no half line for later good lines to follow: cut back to the last whole one
                    os.ftruncate(fd, self._journal_size)
                    os.fsync(fd)
                except OSError:
                    pass  # left as an unterminated tail, which the next open drops as torn
                raise self._failed from None
            self._journal_size += len(data)
            self.stats["fsyncs"] += 1
            self.stats["fsync_seconds"] += time.perf_counter() - started

    def _take_buffer(self) -> tuple[bytes, int]:
        data = "".join(self._buffer).encode()
        self._buffer.clear()
        return data, self._seq

    def _journal_lines(self, data: bytes) -> None:
        """_write_and_fsync; if the journal cannot take them, the lines stay buffered in memory."""
        try:
            self._write_and_fsync(data)
        except StorageFault:
            self._buffer.insert(0, data.decode())
            raise

    def commit_sync(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._journal is None or self._durable_seq >= self._seq:
            return
        data, upto = self._take_buffer()
        self._journal_lines(data)
        self._durable_seq = max(self._durable_seq, upto)

    async def commit(self) -> None:
        """Make every record so far durable; callers that arrive together share one fsync.
        Raises StorageFault if the journal cannot be written: nothing recorded since may be sent."""
        if self._failed is not None:
            raise self._failed
        if self._journal is None:
            return
        target = self._seq
        while self._durable_seq < target:
            if self._flush_task is None:
                self._flush_task = asyncio.ensure_future(self._flush())
            await asyncio.shield(self._flush_task)

    async def _flush(self) -> None:
        try:
            data, upto = self._take_buffer()  # on the loop: no record lands between the join and the clear
            if data:
                await asyncio.to_thread(self._journal_lines, data)
            self._durable_seq = max(self._durable_seq, upto)
        finally:
            self._flush_task = None

    # -- checkpoints --

    def _fold(self) -> _Fold | None:
        """The rows changed since the last part, as a part (with the seq range it covers); memory
        now holds them as stored rows until the part is written, or _unfold puts them back. Runs on
        the owning thread."""
        changed = [*self._overlay, *self._removed]
        if not changed and self._seq == self._stored_seq:
            return None
        self._read_stored(changed)
        known_before = {key: self._known[key] for key in changed}
        rows = []
        for key in changed:
            row = self.get(key)
            existed = key in self._ever_stored
            if row is not None:
                rows.append({**row, store.REMOVED: False, store.SUPERSEDES: existed})
            elif existed:  # gone now, some part still has it: a tombstone hides it
                rows.append({"job_key": key, store.REMOVED: True, store.SUPERSEDES: True})
            self._known[key] = row
        self._unwritten.update(changed)
        self._overlay, self._removed = {}, set()
        # Even with no row to write, the part is written: parts cover every seq the journal drops.
        frame = pl.DataFrame(rows, schema={**LEDGER_SCHEMA, store.REMOVED: pl.Boolean, store.SUPERSEDES: pl.Boolean},
                             orient="row").with_columns(pl.lit(self._seq, pl.Int64).alias(store.SEQ))
        # parts are written in seq order (_storing)
        return _Fold(frame, self._stored_seq + 1, self._seq, changed, known_before)

    def _unfold(self, fold: _Fold) -> None:
        """Undo a fold whose part was not written: its rows are memory's again, with whatever was
        recorded since on top, and the journal still holds them. On the owning thread."""
        for key in fold.keys:
            now = self.get(key)
            self._known[key] = fold.known_before[key]
            self._overlay.pop(key, None)
            if now is None:
                self._removed.add(key)
            else:
                self._removed.discard(key)
                self._overlay[key] = {**now, "_full": True}
        self._unwritten.difference_update(fold.keys)

    def _write_fold(self, fold: _Fold | None, upto: int) -> None:
        """Write the folded part. If this raises, nothing changed on disk: the caller unfolds. Any thread."""
        if fold is not None:
            try:
                part = store.write_part(self.path, fold.frame, fold.first, fold.last)
            except OSError as exc:
                raise self._met(disk_fault(exc, self.path)) from None
            with self._parts_lock:
                self._parts = [*self._parts, part]
            self._ever_stored.update(fold.frame["job_key"].to_list())
            self.stats["checkpoint_rows"] += fold.frame.height
        self._stored_seq = upto
        self._unwritten.clear()

    def _after_part(self, upto: int) -> None:
        """Once a part holds every line up to `upto`: trim the journal, merge, move the high-water
        mark. A failure here loses nothing (each step leaves whole files), but stops the run."""
        try:
            self._trim_journal(upto)
            self._merge()
            self._write_highwater()
        except OSError as exc:
            raise self._met(disk_fault(exc, self.path)) from None

    def _store_and_release(self, fold: _Fold | None, upto: int) -> None:
        """An async checkpoint's worker: a failed part write is left for the owning thread to undo."""
        try:
            try:
                self._write_fold(fold, upto)
            except BaseException as exc:
                self._failed_fold = (fold, exc)
                return
            self._after_part(upto)
        finally:
            self._storing.release()

    def _undo_failed_fold(self) -> BaseException | None:
        """Unfold what a worker could not write (with _storing held or just released by it)."""
        if self._failed_fold is None:
            return None
        fold, exc = self._failed_fold
        self._failed_fold = None
        if fold is not None:
            self._unfold(fold)
        return exc

    def _merge(self) -> None:
        def swap(parts: list[store.Part], obsolete: list[store.Part]) -> None:
            with self._parts_lock:  # no read opens a file while it is deleted
                self._parts = parts
                for part in obsolete:
                    part.path.unlink(missing_ok=True)
            self.stats["merges"] += 1

        store.compact(self.path, list(self._parts), swap)

    def _trim_journal(self, upto: int) -> None:
        """Keep only journal lines after seq `upto` (those recorded while the part was written)."""
        with self._io_lock:
            if self._failed is not None or self._journal_size == 0:
                return  # a failed journal is left exactly as it was cut back to
            keep = [line + b"\n" for line in self.journal_path.read_bytes()[:self._journal_size].split(b"\n")
                    if line.strip() and _line_seq(line) > upto]
            if not keep:
                self._journal.truncate(0)
                self._journal.seek(0)
                os.fsync(self._journal.fileno())
                self._journal_size = 0
                return
            kept = b"".join(keep)
            replace_atomic(self.journal_path, lambda out: out.write(kept))
            self._journal.close()
            self._journal = open(self.journal_path, "ab", buffering=0)
            self._journal_size = len(kept)

    def _met(self, fault: StorageFault) -> StorageFault:
        self.fault = self.fault or fault
        return fault

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
        if self._journal is None:
            return
        self._check_lock()
        self._storing.acquire()  # waits for a part a worker thread is still writing
        try:
            self._undo_failed_fold()  # a cancelled async checkpoint's failure: its rows are folded again
            started = time.perf_counter()
            self.commit_sync()
            folded = self._fold()
            try:
                self._write_fold(folded, self._seq)
            except BaseException:
                if folded is not None:
                    self._unfold(folded)
                raise
            self._after_part(self._stored_seq)
        finally:
            self._storing.release()
        if folded is not None:
            self.stats["checkpoints"] += 1
            self.stats["checkpoint_seconds"] += time.perf_counter() - started

    async def checkpoint_async(self) -> None:
        """checkpoint() for the event loop: the reading and writing run in a worker thread.

        Cancelled while its part is being written, the thread still finishes; checkpoint() and
        close() wait for it (and undo its fold if it failed).
        """
        if self._journal is None or self._storing.locked():
            return
        self._check_lock()
        started = time.perf_counter()
        await self.commit()
        unread = [k for k in [*self._overlay, *self._removed] if k not in self._known]
        if unread:  # rows the fold needs: read them off the loop
            self._remember(await asyncio.to_thread(self._read_stored_copy, unread), unread)
        if not self._storing.acquire(blocking=False):
            return
        try:
            self._undo_failed_fold()
            folded = self._fold()  # on the loop: exactly what was recorded up to self._seq
        except BaseException:
            self._storing.release()
            raise
        # Handed to the worker in this same step of the loop; the worker releases _storing.
        await asyncio.to_thread(self._store_and_release, folded, self._seq if folded is None else folded.last)
        failed = self._undo_failed_fold()
        if failed is not None:
            raise failed
        if folded is not None:
            self.stats["checkpoints"] += 1
            self.stats["checkpoint_seconds"] += time.perf_counter() - started

    def _read_stored_copy(self, keys: list[str]) -> pl.DataFrame:
        with self._parts_lock:
            return store.lookup(self._parts, keys)

    def _remember(self, found: pl.DataFrame, keys: list[str]) -> None:
        """Keep what the parts said of `keys` (None: not stored), unless read or folded meanwhile."""
        for row in found.iter_rows(named=True):
            if row["job_key"] in self._known:
                continue  # read or folded meanwhile: that is newer
            removed = row.pop(store.REMOVED)
            row.pop(store.SEQ), row.pop(store.SUPERSEDES)
            self._ever_stored.add(row["job_key"])
            self._known[row["job_key"]] = None if removed else row
        for key in keys:
            self._known.setdefault(key, None)

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
        """Checkpoint and let go. After a failed journal write nothing more is written: the
        journal stays as it was cut back to, which the next open replays."""
        if self._closed:
            return
        try:
            if not self.readonly and self._failed is None:
                self.checkpoint()
        finally:
            self._closed = True
            if self._journal is not None:
                self._journal.close()
                self._journal = None
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
def reading_parts(path: str | Path):
    """Around a read of the ledger at `path`: a part damaged inside (its size and footer intact,
    so the open's checks pass) fails the read with a Polars error that names no file. That error
    becomes one LedgerCorrupt naming the part; an error no part explains is raised as it was."""
    try:
        yield
    except pl.exceptions.PolarsError as exc:
        for part in store.list_parts(Path(path)):
            try:
                pl.read_parquet(part.path)
            except (pl.exceptions.PolarsError, OSError) as damage:
                reason = (str(damage).splitlines() or [type(damage).__name__])[0][:120]
                raise LedgerCorrupt(f"{part.path} is damaged ({reason}); {RESTORE}") from None
        raise exc


def read_ledger(path: str | Path) -> pl.DataFrame:
    """The ledger as it stands (snapshot + journal), without locking or changing any file."""
    ledger = Ledger.open(path, readonly=True)
    return ledger.frame()
