"""Decides what a row is now: the ledger's parts (store/parts.py) with the changes since the last
one held in memory, read by key or as a lazy scan, and folded into the next part.

Memory: nothing of the history is held. Rows are read when asked for, by key (`get`, `rows`) or
as a lazy scan of the current state (`scan`); rows changed since the last checkpoint live as
Python dicts, and rows read or written in this session are remembered by key.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.store import parts as store
from pipeline.store.schema import LEDGER_SCHEMA


@dataclass(frozen=True)
class Fold:
    """The rows changed since the last part, as the part to write, and what undoes the fold."""

    frame: pl.DataFrame
    first: int
    last: int
    keys: list[str]
    known_before: dict[str, dict[str, Any] | None]  # what memory said the parts held of `keys`


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


class LedgerRows:
    """The current rows: the parts, and what changed since the last one."""

    def __init__(self) -> None:
        self.parts: list[store.Part] = []
        self.parts_lock = threading.RLock()  # a merge deletes files a read may be about to open
        self.stored_seq = 0  # the last journal seq the parts hold
        # What the parts (or a part being written) say of keys read so far: row, or None if absent.
        self._known: dict[str, dict[str, Any] | None] = {}
        self._ever_stored: set[str] = set()  # keys with some version in a part, even a removed one
        self._unwritten: set[str] = set()  # keys whose newest state is in _known, its part not yet written
        self._overlay: dict[str, dict[str, Any]] = {}
        self._removed: set[str] = set()
        self._payer_hashes: pl.Series | None = None
        self._session_job_ids: dict[str, list[str]] = {}  # job_id -> keys that recorded it here

    # -- reading --

    def _read_stored(self, keys: list[str]) -> None:
        """Remember what the parts say of `keys` not read yet: one scan for all of them."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._known]
        if not missing:
            return
        self.remember(self.lookup(missing), missing)

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
        return store.current(self.parts, columns, overlay, gone)

    def rows(self, keys: list[str] | pl.Series, columns: list[str] | None = None) -> pl.DataFrame:
        """The current rows of `keys` (those the ledger has), `columns` only (job_key first)."""
        columns = list(LEDGER_SCHEMA) if columns is None else ["job_key", *[c for c in columns if c != "job_key"]]
        keys = keys.to_list() if isinstance(keys, pl.Series) else list(keys)
        held = set(self._overlay) | self._removed | set(self._known)
        here = [k for k in keys if k in held]
        with self.parts_lock:
            stored = store.lookup(self.parts, [k for k in keys if k not in held], columns)
        stored = stored.filter(~pl.col(store.REMOVED)).select(columns)
        mine = [row for row in map(self.get, dict.fromkeys(here)) if row is not None]
        if not mine:
            return stored
        return pl.concat([stored, pl.DataFrame(mine, schema=LEDGER_SCHEMA, orient="row").select(columns)])

    def frame(self) -> pl.DataFrame:
        """The whole current state, in memory: for tests and small ledgers (use scan() or rows())."""
        with self.parts_lock:
            return self.scan().collect()

    def credits_total(self) -> int:
        """creditCost charged over every row of the ledger."""
        with self.parts_lock:
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
        with self.parts_lock:
            if self._payer_hashes is None:
                self._payer_hashes = store.current(self.parts, ["job_id"]).select(
                    pl.col("job_id").drop_nulls().hash(seed=0)).collect(engine="streaming").to_series().sort()
            wanted = pl.Series([job_id]).hash(seed=0)[0]
            index = self._payer_hashes.search_sorted(wanted)
            if index < self._payer_hashes.len() and self._payer_hashes[index] == wanted:
                stored = store.current(self.parts, ["job_id", "submitted_at"]).filter(
                    pl.col("job_id") == job_id).collect(engine="streaming")
                candidates = [(at, key) for key, _, at in stored.iter_rows() if key not in held] + candidates
        if not candidates:
            return None
        # As a sort of every row by submitted_at would: a row with no time first, ties in order.
        return min(candidates, key=lambda c: (c[0] is not None, c[0] or 0))[1]

    def lookup(self, keys: list[str]) -> pl.DataFrame:
        """What the parts hold of `keys` (any thread: a merge swaps the parts under parts_lock)."""
        with self.parts_lock:
            return store.lookup(self.parts, keys)

    def remember(self, found: pl.DataFrame, keys: list[str]) -> None:
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

    def unread_changes(self) -> list[str]:
        """Keys changed since the last part whose stored rows were not read yet (a fold needs them)."""
        return [k for k in [*self._overlay, *self._removed] if k not in self._known]

    # -- changing --

    def patch(self, job_key: str, fields: dict[str, Any]) -> None:
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

    def move(self, old: str, new: str) -> None:
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

    # -- folding into a part (store/checkpoint.py) --

    def fold(self, seq: int) -> Fold | None:
        """The rows changed since the last part, as a part (with the seq range it covers, up to the
        journal's `seq`); memory now holds them as stored rows until the part is written, or
        unfold puts them back. Runs on the owning thread."""
        changed = [*self._overlay, *self._removed]
        if not changed and seq == self.stored_seq:
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
                             orient="row").with_columns(pl.lit(seq, pl.Int64).alias(store.SEQ))
        # parts are written in seq order (the checkpoint's _storing)
        return Fold(frame, self.stored_seq + 1, seq, changed, known_before)

    def unfold(self, fold: Fold) -> None:
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

    def add_part(self, part: store.Part, fold: Fold) -> None:
        """A fold's part is written: reads find its rows there. Any thread."""
        with self.parts_lock:
            self.parts = [*self.parts, part]
        self._ever_stored.update(fold.frame["job_key"].to_list())

    def stored_up_to(self, seq: int) -> None:
        """The parts now hold every journal line up to `seq`: nothing folded is unwritten."""
        self.stored_seq = seq
        self._unwritten.clear()
