"""The durable record of every job: an append-only journal folded into a Parquet file.

Algorithm:
- `record()` turns a change into a journal line `{"s": seq, "k": job_key, "f": {field: value}}`
  holding *absolute* values, and applies it to memory. Nothing is durable yet.
- `commit()` writes every buffered line and fsyncs the journal. Concurrent callers share fsyncs
  (group commit): while one write+fsync runs in a thread, later callers wait for the next one,
  which covers all their records at once.
- `checkpoint()` writes the whole state to a temporary Parquet file, fsyncs it, renames it over
  the ledger and fsyncs the folder, then empties the journal. The Parquet file's metadata names
  the last journal seq it contains, so if a crash comes between the rename and the emptying,
  opening skips the lines already folded in (and replaying one twice would be harmless anyway:
  every line sets values, none adds to them).
- Opening reads the Parquet snapshot and replays the journal. A last line cut mid-write was
  never acknowledged and is dropped; a damaged line with good lines after it is real
  corruption and stops the open (LedgerCorrupt) rather than guessing.

Memory: the snapshot stays a Polars DataFrame (100,000 finished rows open in a blink); only rows
changed since the last checkpoint live as Python dicts.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.lock import LockHeld, RunLock
from pipeline.schema import LEDGER_SCHEMA, RUNS_SCHEMA, STATUSES, TIMESTAMP

SEQ_METADATA = "videobatch_journal_seq"
_TIME_FIELDS = frozenset(name for name, dtype in LEDGER_SCHEMA.items() if dtype == TIMESTAMP)
_FIELDS = frozenset(LEDGER_SCHEMA)


class LedgerError(Exception):
    """The ledger cannot be used as it is."""


class LedgerLocked(LedgerError):
    def __init__(self, path: Path, holder: dict):
        self.holder = holder
        who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
               f"since {holder.get('started_at', '?')}")
        super().__init__(
            f"another videobatch run ({who}) is using the ledger {path}; wait for it to finish, "
            "or if that process is gone, run again (a dead run's lock is taken over)")


class LedgerCorrupt(LedgerError):
    pass


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    raise TypeError(f"cannot journal {type(value).__name__}")


def _decode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    for name in _TIME_FIELDS.intersection(fields):
        if isinstance(fields[name], str):
            fields[name] = datetime.fromisoformat(fields[name])
    return fields


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _paths(path: Path) -> tuple[Path, Path, Path]:
    return (path.with_name(f"{path.stem}.journal.jsonl"), path.with_name(f"{path.stem}.lock"),
            path.with_name("runs.parquet"))


def _read_snapshot(path: Path) -> tuple[pl.DataFrame, int, bool]:
    """(frame, journal seq it holds, whether the file is already exactly in LEDGER_SCHEMA)."""
    if not path.exists():
        return _empty(LEDGER_SCHEMA), 0, False
    frame = pl.read_parquet(path)
    seq = int(pl.read_parquet_metadata(path).get(SEQ_METADATA, "0"))
    current = frame.schema == pl.Schema(LEDGER_SCHEMA)  # same columns, order and types
    missing = [c for c in LEDGER_SCHEMA if c not in frame.columns]  # written by an older version
    if missing:
        frame = frame.with_columns(pl.lit(None, dtype=LEDGER_SCHEMA[c]).alias(c) for c in missing)
    return frame.select(list(LEDGER_SCHEMA)).cast(LEDGER_SCHEMA), seq, current


def _read_journal(journal: Path) -> tuple[list[dict], int]:
    """Parsed journal entries, and the byte length of its intact part."""
    if not journal.exists():
        return [], 0
    data = journal.read_bytes()
    entries: list[dict] = []
    good_end = 0
    bad_line: int | None = None
    position = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        end = position + len(line) + 1
        if end > len(data):  # no newline after it: a write cut short, never acknowledged
            break
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError:
                if bad_line is None:
                    bad_line = number
            else:
                if bad_line is not None:
                    raise LedgerCorrupt(
                        f"{journal}: line {bad_line} is damaged but later lines are intact; "
                        "nothing was changed. Move the ledger folder aside and tell us, or restore "
                        "the journal from a backup")
                good_end = end
        position = end
    return entries, good_end


class Ledger:
    def __init__(self, path: Path, run_id: str | None, readonly: bool):
        self.path = path
        self.journal_path, self.lock_path, self.runs_path = _paths(path)
        self.run_id = run_id
        self.readonly = readonly
        self.stats = {"records": 0, "fsyncs": 0, "fsync_seconds": 0.0, "checkpoints": 0,
                      "checkpoint_seconds": 0.0}
        self._lock: RunLock | None = None
        self._base = _empty(LEDGER_SCHEMA)
        self._index: dict[str, int] | None = None
        self._overlay: dict[str, dict[str, Any]] = {}
        self._removed: set[str] = set()
        self._seq = 0
        self._durable_seq = 0
        self._buffer: list[str] = []
        self._journal = None
        self._io_lock = threading.Lock()
        self._flush_task: asyncio.Future | None = None
        self._snapshot_current = False  # the Parquet file is in LEDGER_SCHEMA and holds _base
        self._closed = False

    # -- opening --

    @classmethod
    def open(cls, path: str | Path, *, run_id: str | None = None, readonly: bool = False) -> Ledger:
        ledger = cls(Path(path), run_id, readonly)
        if not readonly:
            ledger.path.parent.mkdir(parents=True, exist_ok=True)
            ledger._lock = RunLock(ledger.lock_path)
            try:
                ledger._lock.acquire(run_id)
            except LockHeld as held:
                raise LedgerLocked(ledger.path, held.holder) from None
        try:
            ledger._load()
        except BaseException:
            ledger._release_lock()
            raise
        return ledger

    def _load(self) -> None:
        self._base, snapshot_seq, current = _read_snapshot(self.path)
        entries, good_end = _read_journal(self.journal_path)
        self._seq = snapshot_seq
        for entry in entries:
            seq = int(entry.get("s", 0))
            if seq <= snapshot_seq:
                continue  # already folded into the snapshot
            self._apply(entry)
            self._seq = max(self._seq, seq)
        self._durable_seq = self._seq
        # No column had to be added or cast; what came from the journal is in the overlay, and
        # checkpoint() writes whenever the overlay or the journal is not empty.
        self._snapshot_current = current
        if self.readonly:
            return
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            stale.unlink(missing_ok=True)  # a checkpoint that died before its rename
        self._journal = open(self.journal_path, "ab")
        if self._journal.tell() != good_end:
            self._journal.truncate(good_end)  # drop a torn tail so new lines start clean
            os.fsync(self._journal.fileno())

    def _apply(self, entry: dict) -> None:
        if entry.get("op") == "rename":
            self._move(entry["from"], entry["to"])
        else:
            self._patch(entry["k"], _decode_fields(entry.get("f") or {}))

    # -- reading --

    def _base_row(self, job_key: str) -> dict[str, Any] | None:
        if job_key in self._removed:
            return None
        if self._index is None:
            self._index = {key: i for i, key in enumerate(self._base["job_key"].to_list())}
        i = self._index.get(job_key)
        return self._base.row(i, named=True) if i is not None else None

    def get(self, job_key: str) -> dict[str, Any] | None:
        patch = self._overlay.get(job_key)
        if patch is not None and patch.get("_full"):
            return {k: v for k, v in patch.items() if k != "_full"}
        base = self._base_row(job_key)
        if patch is None:
            return base
        row = base if base is not None else dict.fromkeys(LEDGER_SCHEMA)
        row.update((k, v) for k, v in patch.items() if k != "_full")
        return row

    def __contains__(self, job_key: str) -> bool:
        return job_key in self._overlay or self._base_row(job_key) is not None

    def __len__(self) -> int:
        return self.frame().height

    def frame(self) -> pl.DataFrame:
        """The current state: one row per job_key, LEDGER_SCHEMA."""
        if not self._overlay and not self._removed:
            return self._base
        touched = set(self._overlay) | self._removed
        kept = self._base.filter(~pl.col("job_key").is_in(list(touched)))
        changed = pl.DataFrame([self.get(key) for key in self._overlay], schema=LEDGER_SCHEMA, orient="row"
                               ) if self._overlay else _empty(LEDGER_SCHEMA)
        return pl.concat([kept, changed], how="vertical")

    # -- changing --

    def _patch(self, job_key: str, fields: dict[str, Any]) -> None:
        patch = self._overlay.get(job_key)
        if patch is None:
            patch = self._overlay[job_key] = {}
            if self._base_row(job_key) is None:
                patch.update(dict.fromkeys(LEDGER_SCHEMA), _full=True)
        patch.update(fields)
        patch["job_key"] = job_key

    def _move(self, old: str, new: str) -> None:
        row = self.get(old)
        if row is None:
            return
        self._overlay.pop(old, None)
        self._removed.add(old)
        self._removed.discard(new)
        row["job_key"] = new
        self._overlay[new] = {**row, "_full": True}

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
            started = time.perf_counter()
            self._journal.write(data)
            self._journal.flush()
            os.fsync(self._journal.fileno())
            self.stats["fsyncs"] += 1
            self.stats["fsync_seconds"] += time.perf_counter() - started

    def _take_buffer(self) -> tuple[bytes, int]:
        data = "".join(self._buffer).encode()
        self._buffer.clear()
        return data, self._seq

    def commit_sync(self) -> None:
        if self._journal is None or self._durable_seq >= self._seq:
            return
        data, upto = self._take_buffer()
        self._write_and_fsync(data)
        self._durable_seq = max(self._durable_seq, upto)

    async def commit(self) -> None:
        """Make every record so far durable; callers that arrive together share one fsync."""
        if self._journal is None:
            return
        target = self._seq
        while self._durable_seq < target:
            if self._flush_task is None:
                self._flush_task = asyncio.ensure_future(self._flush())
            await asyncio.shield(self._flush_task)

    async def _flush(self) -> None:
        try:
            data, upto = self._take_buffer()
            if data:
                await asyncio.to_thread(self._write_and_fsync, data)
            self._durable_seq = max(self._durable_seq, upto)
        finally:
            self._flush_task = None

    def checkpoint(self) -> None:
        """Fold everything into the Parquet file atomically, then start an empty journal.

        Nothing to do, and nothing written, when nothing changed since the Parquet file was read or
        written and the journal is empty: a rerun that finds every row done rewrites no 100,000 rows.
        """
        if self._journal is None:
            return
        started = time.perf_counter()
        self.commit_sync()
        if (self._snapshot_current and not self._overlay and not self._removed
                and os.fstat(self._journal.fileno()).st_size == 0):
            return
        frame = self.frame()
        temporary = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(temporary, "wb") as out:
            frame.write_parquet(out, metadata={SEQ_METADATA: str(self._seq)})
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        _fsync_dir(self.path.parent)
        with self._io_lock:
            self._journal.truncate(0)
            self._journal.seek(0)
            os.fsync(self._journal.fileno())
        self._base, self._index = frame, None
        self._overlay, self._removed = {}, set()
        self._snapshot_current = True
        self.stats["checkpoints"] += 1
        self.stats["checkpoint_seconds"] += time.perf_counter() - started

    # -- runs table --

    def append_run(self, run: dict[str, Any]) -> None:
        self._check_writable()
        runs = read_runs(self.path)
        row = pl.DataFrame([{name: run.get(name) for name in RUNS_SCHEMA}], schema=RUNS_SCHEMA, orient="row")
        temporary = self.runs_path.with_name(f".{self.runs_path.name}.tmp-{os.getpid()}")
        with open(temporary, "wb") as out:
            pl.concat([runs, row]).write_parquet(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.runs_path)
        _fsync_dir(self.runs_path.parent)

    # -- closing --

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self.readonly:
                self.checkpoint()
        finally:
            self._closed = True
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_ledger(path: str | Path) -> pl.DataFrame:
    """The ledger as it stands (snapshot + journal), without locking or changing any file."""
    ledger = Ledger.open(path, readonly=True)
    return ledger.frame()


def read_runs(path: str | Path) -> pl.DataFrame:
    """runs.parquet beside the ledger at `path` (empty if no run has ended yet)."""
    runs_path = _paths(Path(path))[2]
    if not runs_path.exists():
        return _empty(RUNS_SCHEMA)
    frame = pl.read_parquet(runs_path)
    missing = [c for c in RUNS_SCHEMA if c not in frame.columns]
    if missing:
        frame = frame.with_columns(pl.lit(None, dtype=RUNS_SCHEMA[c]).alias(c) for c in missing)
    return frame.select(list(RUNS_SCHEMA)).cast(RUNS_SCHEMA)
