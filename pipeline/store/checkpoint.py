"""Does I/O: a checkpoint writes the rows changed since the last one as a new immutable part, then
trims the journal, merges parts and moves the high-water mark.

- The part is written first (parts.py: temp file, fsync, rename, fsync the folder), and only then
  are the journal lines it folded in dropped: a journal line is dropped only once a durable part
  holds it.
- A checkpoint that fails (a full disk) leaves the journal and memory as they were, and raises:
  the fold is undone (LedgerRows.unfold).
- A part's name carries the last journal seq it contains, so if a crash comes between the rename
  and the trim, opening skips the lines already folded in (and replaying one twice would be
  harmless anyway: every line sets values, none adds to them).
- `run_async()` does the reading and writing in a worker thread, so the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pipeline.store import parts as store
from pipeline.store.faults import StorageFault, disk_fault
from pipeline.store.highwater import write_highwater
from pipeline.store.journal import Journal
from pipeline.store.rows import Fold, LedgerRows


class Checkpoints:
    """Folds the rows in memory into parts, one checkpoint at a time, in seq order."""

    def __init__(self, path: Path, rows: LedgerRows, journal: Journal, stats: dict[str, Any],
                 met: Callable[[StorageFault], StorageFault]):
        self.path = path
        self._rows = rows
        self._journal = journal
        self.stats = stats
        self._met = met  # tells the ledger the first storage failure met
        self._failed_fold: tuple[Fold, BaseException] | None = None  # a worker's part write that failed
        # Held from a fold until its part is written and the journal trimmed, maybe across threads
        # (an async checkpoint's worker releases it): parts are written in the order of their seqs.
        self._storing = threading.Lock()

    @property
    def busy(self) -> bool:
        """A part is being written (maybe by a worker thread)."""
        return self._storing.locked()

    def write_highwater(self) -> None:
        rows = self._rows
        write_highwater(self.path, rows.stored_seq, max(rows.stored_seq, self._journal.durable_seq), rows.parts)

    def _write_fold(self, fold: Fold | None, upto: int) -> None:
        """Write the folded part. If this raises, nothing changed on disk: the caller unfolds. Any thread."""
        if fold is not None:
            try:
                part = store.write_part(self.path, fold.frame, fold.first, fold.last)
            except OSError as exc:
                raise self._met(disk_fault(exc, self.path)) from None
            self._rows.add_part(part, fold)
            self.stats["checkpoint_rows"] += fold.frame.height
        self._rows.stored_up_to(upto)

    def _after_part(self, upto: int) -> None:
        """Once a part holds every line up to `upto`: trim the journal, merge, move the high-water
        mark. A failure here loses nothing (each step leaves whole files), but stops the run."""
        try:
            self._journal.trim(upto)
            self._merge()
            self.write_highwater()
        except OSError as exc:
            raise self._met(disk_fault(exc, self.path)) from None

    def _store_and_release(self, fold: Fold | None, upto: int) -> None:
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
            self._rows.unfold(fold)
        return exc

    def _merge(self) -> None:
        def swap(parts: list[store.Part], obsolete: list[store.Part]) -> None:
            with self._rows.parts_lock:  # no read opens a file while it is deleted
                self._rows.parts = parts
                for part in obsolete:
                    part.path.unlink(missing_ok=True)
            self.stats["merges"] += 1

        store.compact(self.path, list(self._rows.parts), swap)

    def run(self) -> None:
        """Write the rows changed since the last checkpoint as a new part, then trim the journal.

        Nothing is written when nothing changed: a rerun that finds every row done writes no part.
        Raises StorageFault (journal and memory as they were) if the part cannot be written.
        """
        self._storing.acquire()  # waits for a part a worker thread is still writing
        try:
            self._undo_failed_fold()  # a cancelled async checkpoint's failure: its rows are folded again
            started = time.perf_counter()
            self._journal.commit_sync()
            folded = self._rows.fold(self._journal.seq)
            try:
                self._write_fold(folded, self._journal.seq)
            except BaseException:
                if folded is not None:
                    self._rows.unfold(folded)
                raise
            self._after_part(self._rows.stored_seq)
        finally:
            self._storing.release()
        if folded is not None:
            self.stats["checkpoints"] += 1
            self.stats["checkpoint_seconds"] += time.perf_counter() - started

    async def run_async(self) -> None:
        """run() for the event loop: the reading and writing run in a worker thread.

        Cancelled while its part is being written, the thread still finishes; run() and the
        ledger's close() wait for it (and undo its fold if it failed).
        """
        started = time.perf_counter()
        await self._journal.commit()
        unread = self._rows.unread_changes()
        if unread:  # rows the fold needs: read them off the loop
            self._rows.remember(await asyncio.to_thread(self._rows.lookup, unread), unread)
        if not self._storing.acquire(blocking=False):
            return
        try:
            self._undo_failed_fold()
            folded = self._rows.fold(self._journal.seq)  # on the loop: exactly what was recorded up to the seq
        except BaseException:
            self._storing.release()
            raise
        # Handed to the worker in this same step of the loop; the worker releases _storing.
        upto = self._journal.seq if folded is None else folded.last
        await asyncio.to_thread(self._store_and_release, folded, upto)
        failed = self._undo_failed_fold()
        if failed is not None:
            raise failed
        if folded is not None:
            self.stats["checkpoints"] += 1
            self.stats["checkpoint_seconds"] += time.perf_counter() - started
