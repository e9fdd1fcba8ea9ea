"""A checkpoint on real files: the part is durable before the journal is trimmed, a part that
cannot be written leaves journal and memory as they were, nothing changed writes no part.
(A really full disk, and the async worker's failure: test_faults.py.)"""

from __future__ import annotations

import errno

import pytest

from pipeline.store import checkpoint, parts as store
from pipeline.store.checkpoint import Checkpoints
from pipeline.store.faults import StorageFault
from pipeline.store.highwater import read_highwater
from pipeline.store.journal import Journal
from pipeline.store.rows import LedgerRows


def wired(tmp_path) -> tuple[Checkpoints, LedgerRows, Journal, dict]:
    path = tmp_path / "ledger.parquet"
    path.mkdir()
    stats = {"fsyncs": 0, "fsync_seconds": 0.0, "checkpoints": 0, "checkpoint_seconds": 0.0,
             "checkpoint_rows": 0, "merges": 0}
    rows, journal = LedgerRows(), Journal(tmp_path / "ledger.journal.jsonl", stats, lambda fault: fault)
    journal.open()
    return Checkpoints(path, rows, journal, stats, lambda fault: fault), rows, journal, stats


def record(rows: LedgerRows, journal: Journal, key: str, **fields) -> None:
    journal.record(key, fields)
    rows.patch(key, fields)


def test_the_journal_is_trimmed_only_once_the_part_is_written(tmp_path, monkeypatch):
    checkpoints, rows, journal, stats = wired(tmp_path)
    record(rows, journal, "koi", status="SUBMITTED")
    record(rows, journal, "carp", status="PENDING")
    seen_while_writing = []
    write_part = store.write_part

    def watched(folder, frame, first, last):
        seen_while_writing.append(len(journal.read()))  # every line still there
        return write_part(folder, frame, first, last)

    monkeypatch.setattr(checkpoint.store, "write_part", watched)
    checkpoints.run()
    assert seen_while_writing == [2] and journal.read() == []
    [part] = store.list_parts(checkpoints.path)
    assert (part.first, part.last, part.rows) == (1, 2, 2)
    assert read_highwater(checkpoints.path).seq == 2 and stats["checkpoints"] == 1
    checkpoints.run()  # nothing changed: no part
    assert len(store.list_parts(checkpoints.path)) == 1 and stats["checkpoints"] == 1
    journal.close()


def test_a_part_that_cannot_be_written_changes_nothing(tmp_path, monkeypatch):
    checkpoints, rows, journal, stats = wired(tmp_path)
    record(rows, journal, "koi", status="SUBMITTED", job_id="j1")

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.store, "write_part", full)
    with pytest.raises(StorageFault, match="disk full"):
        checkpoints.run()
    assert [e["k"] for e in journal.read()] == ["koi"]  # durable, kept
    assert rows.get("koi")["job_id"] == "j1" and rows.stored_seq == 0
    assert not store.list_parts(checkpoints.path) and not checkpoints.busy
    monkeypatch.undo()
    checkpoints.run()  # the same rows fold again
    assert store.list_parts(checkpoints.path)[0].rows == 1 and journal.read() == []
    journal.close()
