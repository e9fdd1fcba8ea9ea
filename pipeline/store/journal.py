"""Does I/O: the ledger's write-ahead journal, `<stem>.journal.jsonl`, through store/jsonlines.py.

- `record()`/`rename()` turn a change into a journal line `{"s": seq, "k": job_key, "f": {field:
  value}}` holding *absolute* values, buffered: nothing is durable yet.
- `commit()` writes every buffered line and fsyncs the journal. Concurrent callers share fsyncs
  (group commit): while one write+fsync runs in a thread, later callers wait for the next one,
  which covers all their records at once.
- A journal write that fails is cut back to its last whole line, and every later commit fails
  the same way: no line ever follows a gap.
- `trim()` drops the lines a durable part holds: called only once that part is written.
- Reading: a last line cut mid-write (no newline) was never acknowledged and is dropped; a
  complete line that does not parse, or seqs missing between the parts and the journal, is
  corruption and stops the open (LedgerCorrupt) rather than guessing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pipeline.store.atomic import replace_atomic
from pipeline.store.faults import LedgerCorrupt, StorageFault, disk_fault
from pipeline.store.jsonlines import DamagedLine, JsonLinesLog, read_lines
from pipeline.store.schema import LEDGER_SCHEMA, TIMESTAMP

_TIME_FIELDS = frozenset(name for name, dtype in LEDGER_SCHEMA.items() if dtype == TIMESTAMP)
_DAMAGED = "nothing was changed and nothing will be spent: restore the journal from a backup, or move the " \
           "ledger folder aside and tell us"


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    raise TypeError(f"cannot journal {type(value).__name__}")


def decode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A journal line's fields as the ledger holds them (times parsed back)."""
    for name in _TIME_FIELDS.intersection(fields):
        if isinstance(fields[name], str):
            fields[name] = datetime.fromisoformat(fields[name])
    return fields


def _line_seq(line: bytes) -> int:
    return int(json.loads(line).get("s", 0))


def _entry(line: bytes) -> dict:
    entry = json.loads(line)
    int(entry["s"])
    return entry


class Journal:
    """The journal of one ledger open: its seqs, its buffer of lines not yet durable, its file."""

    def __init__(self, path: Path, stats: dict[str, Any], met: Callable[[StorageFault], StorageFault]):
        self.path = path
        self.stats = stats
        self._met = met  # tells the ledger the first storage failure met
        self.seq = 0  # the last seq recorded
        self.durable_seq = 0  # the last seq on disk (journal or parts)
        self._buffer: list[str] = []
        self._log: JsonLinesLog | None = None  # open only in a writable ledger
        self.failed: StorageFault | None = None  # a journal write failed: every later commit fails so
        self._io_lock = threading.Lock()
        self._flush_task: asyncio.Future | None = None

    @property
    def is_open(self) -> bool:
        return self._log is not None

    # -- opening --

    def read(self) -> list[dict]:
        """Parsed journal entries (a torn last line left out; a damaged whole line is LedgerCorrupt)."""
        try:
            entries, _ = read_lines(self.path, _entry)
        except DamagedLine as damage:
            raise LedgerCorrupt(f"{self.path}: line {damage.number} is complete but damaged; {_DAMAGED}") from None
        return entries

    def replay(self, entries: list[dict], stored_seq: int, apply: Callable[[dict], None]) -> None:
        """`apply` each entry after the parts' `stored_seq`; a gap in the seqs is LedgerCorrupt."""
        self.seq = stored_seq
        for entry in entries:
            seq = int(entry["s"])
            if seq <= stored_seq:
                continue  # already folded into a part
            if seq != self.seq + 1:  # each record takes the next seq: lines are missing
                raise LedgerCorrupt(
                    f"{self.path}: seq {self.seq + 1} to {seq - 1} are missing (the parts end at "
                    f"{stored_seq}): the journal was cut, or a part lost; {_DAMAGED}")
            apply(entry)
            self.seq = seq
        self.durable_seq = self.seq

    def open(self) -> None:
        """Open for appending; a torn tail is dropped so new lines start clean."""
        log = JsonLinesLog(self.path, mode=0o666)
        log.open()
        self._log = log

    # -- recording --

    def record(self, job_key: str, fields: dict[str, Any]) -> None:
        self.seq += 1
        self._buffer.append(json.dumps({"s": self.seq, "k": job_key, "f": fields}, default=_encode,
                                       ensure_ascii=False, separators=(",", ":")) + "\n")

    def rename(self, old_key: str, new_key: str) -> None:
        self.seq += 1
        self._buffer.append(json.dumps({"s": self.seq, "op": "rename", "from": old_key, "to": new_key}) + "\n")

    # -- durability --

    def _write_and_fsync(self, data: bytes) -> None:
        with self._io_lock:
            if self.failed is not None:
                raise self.failed
            started = time.perf_counter()
            try:
                self._log.append(data)
            except OSError as exc:
                self.failed = self._met(disk_fault(exc, self.path))
                try:  # no half line for later good lines to follow: cut back to the last whole one
                    self._log.cut_back()
                except OSError:
                    pass  # left as an unterminated tail, which the next open drops as torn
                raise self.failed from None
            self.stats["fsyncs"] += 1
            self.stats["fsync_seconds"] += time.perf_counter() - started

    def _take_buffer(self) -> tuple[bytes, int]:
        data = "".join(self._buffer).encode()
        self._buffer.clear()
        return data, self.seq

    def _journal_lines(self, data: bytes) -> None:
        """_write_and_fsync; if the journal cannot take them, the lines stay buffered in memory."""
        try:
            self._write_and_fsync(data)
        except StorageFault:
            self._buffer.insert(0, data.decode())
            raise

    def commit_sync(self) -> None:
        if self.failed is not None:
            raise self.failed
        if self._log is None or self.durable_seq >= self.seq:
            return
        data, upto = self._take_buffer()
        self._journal_lines(data)
        self.durable_seq = max(self.durable_seq, upto)

    async def commit(self) -> None:
        """Make every record so far durable; callers that arrive together share one fsync.
        Raises StorageFault if the journal cannot be written: nothing recorded since may be sent."""
        if self.failed is not None:
            raise self.failed
        if self._log is None:
            return
        target = self.seq
        while self.durable_seq < target:
            if self._flush_task is None:
                self._flush_task = asyncio.ensure_future(self._flush())
                # Every waiter may be cancelled (the run stopping) while the flush fails (a full
                # disk): its exception is then read here, never logged by asyncio as a traceback.
                # The waiters that remain get it through the shield; `failed` keeps it for the rest.
                self._flush_task.add_done_callback(lambda task: task.cancelled() or task.exception())
            await asyncio.shield(self._flush_task)

    async def _flush(self) -> None:
        try:
            data, upto = self._take_buffer()  # on the loop: no record lands between the join and the clear
            if data:
                await asyncio.to_thread(self._journal_lines, data)
            self.durable_seq = max(self.durable_seq, upto)
        finally:
            self._flush_task = None

    def trim(self, upto: int) -> None:
        """Keep only journal lines after seq `upto` (those recorded while the part was written).
        Only once a durable part holds every line up to `upto`."""
        with self._io_lock:
            if self.failed is not None or self._log.size == 0:
                return  # a failed journal is left exactly as it was cut back to
            keep = [line + b"\n" for line in self.path.read_bytes()[:self._log.size].split(b"\n")
                    if line.strip() and _line_seq(line) > upto]
            if not keep:
                self._log.empty()
                return
            kept = b"".join(keep)
            replace_atomic(self.path, lambda out: out.write(kept))
            self._log.close()
            self.open()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
