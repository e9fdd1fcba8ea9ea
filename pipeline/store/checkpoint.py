"""Does I/O: a checkpoint MERGEs the rows changed since the last one into the ledger's Delta table
(store/table.py), moves the high-water mark, and only then trims the journal.

- The commit comes first (fsynced, for a local table), and only then are the journal lines it
  folded in dropped: a journal line is dropped only once a durable commit holds it.
- A checkpoint that fails (a full disk, a store out of reach) leaves the journal and memory as they
  were, and raises: the fold is undone (LedgerRows.unfold).
- The mark holds the last journal seq the table holds, written before the trim, so if a crash comes
  between the commit and the trim, opening skips the lines already folded in (and replaying one
  twice would be harmless anyway: every line sets values, none adds to them).
- `run_async()` does the reading and writing in a worker thread, so the event loop never waits on it.
- `maintain()`, at the ledger's close, compacts the partitions this run touched and vacuums.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from deltalake.exceptions import DeltaError

from pipeline.store.faults import StorageFault, disk_fault, table_fault
from pipeline.store.highwater import write_table_mark
from pipeline.store.journal import Journal
from pipeline.store.rows import Fold, LedgerRows
from pipeline.store.table import LedgerTable


VACUUM_EVERY = 24 * 3600  # seconds between vacuums from one journal


def journal_id(path: Path) -> str:
    """Names this journal in the commits it makes (no path or user name leaves the machine)."""
    return hashlib.sha256(f"{socket.gethostname()}:{path.absolute()}".encode()).hexdigest()[:16]


class Checkpoints:
    """Folds the rows in memory into the table, one checkpoint at a time, in seq order."""

    def __init__(self, path: Path, table: LedgerTable, rows: LedgerRows, journal: Journal, stats: dict[str, Any],
                 met: Callable[[StorageFault], StorageFault]):
        self.path = path
        self.table = table
        self._touched: set[tuple[str, str]] = set()  # partitions this session committed into
        self.journal_id = journal_id(journal.path)
        self._rows = rows
        self._journal = journal
        self.stats = stats
        self._met = met  # tells the ledger the first storage failure met
        self._failed_fold: tuple[Fold, BaseException] | None = None  # a worker's part write that failed
        # Held from a fold until its commit is made and the journal trimmed, maybe across threads
        # (an async checkpoint's worker releases it): commits are made in the order of their seqs.
        self._storing = threading.Lock()

    @property
    def busy(self) -> bool:
        """A commit is being made (maybe by a worker thread)."""
        return self._storing.locked()

    def write_highwater(self) -> None:
        rows = self._rows
        write_table_mark(self.path, rows.stored_seq, max(rows.stored_seq, self._journal.durable_seq),
                         self.table.version)

    def _write_fold(self, fold: Fold | None, upto: int) -> None:
        """Commit the folded rows. If this raises, the table is as it was: the caller unfolds. Any thread."""
        if fold is not None and fold.frame.height:
            try:
                self.table.merge(fold.frame, {"seq": fold.last, "journal": self.journal_id, "host": socket.gethostname()})
            except (OSError, DeltaError) as exc:
                raise self._met(table_fault(exc, self.table.where)) from None
            self._rows.committed(fold)
            self._touched |= fold.partitions
            self.stats["checkpoint_rows"] += fold.frame.height
        self._rows.stored_up_to(upto)

    def _after_part(self, upto: int) -> None:
        """Once the table holds every line up to `upto`: move the high-water mark, then trim the
        journal. A failure here loses nothing (each step leaves whole files), but stops the run."""
        try:
            self.write_highwater()
            self._journal.trim(upto)
        except OSError as exc:
            raise self._met(disk_fault(exc, self.path)) from None

    def maintain(self) -> None:
        """Compact what this session touched and vacuum, if due. Tidying only: a failure here loses
        nothing and stops nothing (the next run tries again), so it is counted, not raised."""
        if not self._touched:
            return
        # A vacuum lists the whole table (in a store, every object): once a day from this journal is
        # plenty, and delta-rs commits nothing when it finds nothing, so the day is kept here.
        stamp = self.path.with_name(f"{self.path.stem}.vacuumed")
        try:
            due = time.time() - stamp.stat().st_mtime > VACUUM_EVERY
        except FileNotFoundError:
            due = True
        try:
            done = self.table.maintain(self._touched, vacuum=due)
            self.stats["merges"] += done["compacted"]
            if due:
                stamp.touch()
                self.stats["vacuums"] = self.stats.get("vacuums", 0) + 1
        except (OSError, DeltaError):
            self.stats["maintain_failed"] = self.stats.get("maintain_failed", 0) + 1

    def _store_and_release(self, fold: Fold | None, upto: int) -> None:
        """An async checkpoint's worker: a failed commit is left for the owning thread to undo."""
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

    def run(self) -> None:
        """Commit the rows changed since the last checkpoint, then trim the journal.

        Nothing is written when nothing changed: a rerun that finds every row done commits nothing.
        Raises StorageFault (journal and memory as they were) if the commit cannot be made.
        """
        self._storing.acquire()  # waits for a commit a worker thread is still making
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

        Cancelled while its commit is being made, the thread still finishes; run() and the
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
