"""Decides what a row is now: the ledger's table (store/table.py, or an old-format ledger read as it
is: parts.PartsSource) with the changes since the last checkpoint held in memory, read by key or as
a lazy scan, and folded into the next commit.

Memory: nothing of the history is held. Rows are read when asked for, by key (`get`, `rows`) or
as a lazy scan of the current state (`scan`); rows changed since the last checkpoint live as
Python dicts, and rows read or written in this session are remembered by key.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.store.schema import LEDGER_SCHEMA
from pipeline.store.table import PARTITIONS, REMOVED, TABLE_SCHEMA, batch_of, night_of


@dataclass(frozen=True)
class Fold:
    """The rows changed since the last commit, as the merge to make, and what undoes the fold."""

    frame: pl.DataFrame  # TABLE_SCHEMA + REMOVED
    first: int
    last: int
    keys: list[str]
    known_before: dict[str, dict[str, Any] | None]  # what memory said the table held of `keys`

    @property
    def partitions(self) -> set[tuple[str, str]]:
        return set(self.frame.select(list(PARTITIONS)).unique().iter_rows())


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


class LedgerRows:
    """The current rows: the table, and what changed since the last commit into it."""

    def __init__(self) -> None:
        self.source = None  # store.table.LedgerTable, or parts.PartsSource for an old ledger read as it is
        self.parts_lock = threading.RLock()  # the source is swapped (a migration) while a read may use it
        self.stored_seq = 0  # the last journal seq the table holds
        # What the table (or a commit being made) says of keys read so far: row, or None if absent.
        self._known: dict[str, dict[str, Any] | None] = {}
        self._partition: dict[str, tuple[str, str]] = {}  # a stored row's (night, batch): it never moves
        self._ever_stored: set[str] = set()  # keys with a row in the table
        self._unwritten: set[str] = set()  # keys whose newest state is in _known, its commit not yet made
        self._overlay: dict[str, dict[str, Any]] = {}
        self._removed: set[str] = set()
        self._payer_hashes: pl.Series | None = None
        self._session_job_ids: dict[str, list[str]] = {}  # job_id -> keys that recorded it here

    # -- reading --

    def _read_stored(self, keys: list[str]) -> None:
        """Remember what the table says of `keys` not read yet: one scan for all of them."""
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
        """Rows whose current state is held here, not (yet) in the table; and keys held here as gone."""
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
        return self.source.current(columns, overlay, gone)

    def rows(self, keys: list[str] | pl.Series, columns: list[str] | None = None) -> pl.DataFrame:
        """The current rows of `keys` (those the ledger has), `columns` only (job_key first)."""
        columns = list(LEDGER_SCHEMA) if columns is None else ["job_key", *[c for c in columns if c != "job_key"]]
        keys = keys.to_list() if isinstance(keys, pl.Series) else list(keys)
        held = set(self._overlay) | self._removed | set(self._known)
        here = [k for k in keys if k in held]
        with self.parts_lock:
            stored = self.source.lookup([k for k in keys if k not in held], columns).select(columns)
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
                self._payer_hashes = self.source.current(["job_id"]).select(
                    pl.col("job_id").drop_nulls().hash(seed=0)).collect(engine="streaming").to_series().sort()
            wanted = pl.Series([job_id]).hash(seed=0)[0]
            index = self._payer_hashes.search_sorted(wanted)
            if index < self._payer_hashes.len() and self._payer_hashes[index] == wanted:
                stored = self.source.current(["job_id", "submitted_at"]).filter(
                    pl.col("job_id") == job_id).collect(engine="streaming")
                candidates = [(at, key) for key, _, at in stored.iter_rows() if key not in held] + candidates
        if not candidates:
            return None
        # As a sort of every row by submitted_at would: a row with no time first, ties in order.
        return min(candidates, key=lambda c: (c[0] is not None, c[0] or 0))[1]

    def lookup(self, keys: list[str]) -> pl.DataFrame:
        """What the table holds of `keys`, with their partitions (any thread)."""
        with self.parts_lock:
            return self.source.lookup(keys)

    def remember(self, found: pl.DataFrame, keys: list[str]) -> None:
        """Keep what the table said of `keys` (None: not stored), unless read or folded meanwhile."""
        for row in found.iter_rows(named=True):
            if row["job_key"] in self._known:
                continue  # read or folded meanwhile: that is newer
            self._partition[row["job_key"]] = (row.pop("night", None), row.pop("batch", None))
            self._ever_stored.add(row["job_key"])
            self._known[row["job_key"]] = row
        for key in keys:
            self._known.setdefault(key, None)

    def unread_changes(self) -> list[str]:
        """Keys changed since the last commit whose stored rows were not read yet (a fold needs them)."""
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
        if old in self._partition:  # the moved row stays in its partition: the merge deletes the old key there
            self._partition[new] = self._partition[old]
        if row.get("job_id"):
            self._session_job_ids.setdefault(row["job_id"], []).append(new)

    # -- folding into a commit (store/checkpoint.py) --

    def fold(self, seq: int) -> Fold | None:
        """The rows changed since the last commit, as a merge (with the seq range it covers, up to
        the journal's `seq`); memory now holds them as stored rows until the merge is committed, or
        unfold puts them back. Runs on the owning thread."""
        changed = [*self._overlay, *self._removed]
        if not changed and seq == self.stored_seq:
            return None
        self._read_stored(changed)
        known_before = {key: self._known[key] for key in changed}
        tonight = night_of()
        rows = []
        for key in changed:
            row = self.get(key)
            # A stored row keeps its partition for life (the merge finds it there); a new one is tonight's.
            night, batch = self._partition.get(key) or (None, None)
            if row is not None:
                if night is None:
                    night, batch = self._partition[key] = (tonight, batch_of(row.get("manifest")))
                rows.append({**row, "night": night, "batch": batch, REMOVED: False})
            elif key in self._ever_stored:  # gone now, the table still has it: the merge deletes it
                rows.append({"job_key": key, "night": night, "batch": batch, REMOVED: True})
            self._known[key] = row
        self._unwritten.update(changed)
        self._overlay, self._removed = {}, set()
        frame = pl.DataFrame(rows, schema={**TABLE_SCHEMA, REMOVED: pl.Boolean}, orient="row")
        # commits are made in seq order (the checkpoint's _storing)
        return Fold(frame, self.stored_seq + 1, seq, changed, known_before)

    def unfold(self, fold: Fold) -> None:
        """Undo a fold whose merge was not committed: its rows are memory's again, with whatever was
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

    def committed(self, fold: Fold) -> None:
        """A fold's merge is committed: reads find its rows in the table. Any thread."""
        removed = fold.frame.filter(pl.col(REMOVED))["job_key"].to_list()
        self._ever_stored.update(fold.frame.filter(~pl.col(REMOVED))["job_key"].to_list())
        self._ever_stored.difference_update(removed)

    def stored_up_to(self, seq: int) -> None:
        """The table now holds every journal line up to `seq`: nothing folded is unwritten."""
        self.stored_seq = seq
        self._unwritten.clear()
