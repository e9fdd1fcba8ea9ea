"""A checkpoint on real files: the Delta commit is made before the journal is trimmed, a commit
that cannot be made (a really full disk) leaves journal, table and memory as they were, nothing
changed commits nothing. (The async worker's failure: test_faults.py.)"""

from __future__ import annotations

import pytest

from pipeline.store.checkpoint import Checkpoints
from pipeline.store.faults import StorageFault
from pipeline.store.highwater import read_highwater
from pipeline.store.journal import Journal
from pipeline.store.location import parse
from pipeline.store.rows import LedgerRows
from pipeline.store.table import LedgerTable
from tests.harness import SmallDisk


def wired(folder) -> tuple[Checkpoints, LedgerRows, Journal, dict]:
    path = folder / "ledger.parquet"
    stats = {"fsyncs": 0, "fsync_seconds": 0.0, "checkpoints": 0, "checkpoint_seconds": 0.0,
             "checkpoint_rows": 0, "merges": 0}
    table = LedgerTable(parse(str(path)))
    table.create()
    rows, journal = LedgerRows(), Journal(folder / "ledger.journal.jsonl", stats, lambda fault: fault)
    rows.source = table
    journal.open()
    return Checkpoints(path, table, rows, journal, stats, lambda fault: fault), rows, journal, stats


def record(rows: LedgerRows, journal: Journal, key: str, **fields) -> None:
    journal.record(key, fields)
    rows.patch(key, fields)


def test_the_journal_is_trimmed_only_once_the_commit_is_made(tmp_path, monkeypatch):
    checkpoints, rows, journal, stats = wired(tmp_path)
    table = checkpoints.table
    record(rows, journal, "koi", status="SUBMITTED")
    record(rows, journal, "carp", status="PENDING")
    seen = []
    merge = table.merge

    def watched(frame, metadata=None):
        seen.append(("before", len(journal.read()), table.version))
        version = merge(frame, metadata)
        seen.append(("after", len(journal.read()), version))  # committed: the lines are still there
        return version

    monkeypatch.setattr(table, "merge", watched)
    checkpoints.run()
    assert seen == [("before", 2, 0), ("after", 2, 1)] and journal.read() == []
    assert table.scan(["job_key", "status"]).collect().sort("job_key").rows() == \
        [("carp", "PENDING"), ("koi", "SUBMITTED")]
    mark = read_highwater(checkpoints.path)
    assert (mark.seq, mark.version) == (2, 1) and stats["checkpoints"] == 1
    [commit] = [c for c in table.history() if c.get("operation") == "MERGE"]
    assert '"seq": 2' in commit["videobatch"]  # the commit says the last journal seq it holds
    checkpoints.run()  # nothing changed: no commit
    table.load()
    assert table.version == 1 and stats["checkpoints"] == 1
    journal.close()


def test_a_commit_that_cannot_be_made_changes_nothing(tmp_path):
    """A really full disk (tmpfs): the merge fails, nothing is trimmed or lost, and once there is
    room the same rows are folded and committed again."""
    with SmallDisk(tmp_path / "disk", "512k") as disk:
        checkpoints, rows, journal, stats = wired(disk.path)
        table = checkpoints.table
        record(rows, journal, "koi", status="SUBMITTED", job_id="j1", prompt="p" * 2000)
        journal.commit_sync()
        lines = journal.path.read_bytes()
        disk.fill()
        with pytest.raises(StorageFault, match="disk full"):
            checkpoints.run()
        assert journal.path.read_bytes() == lines  # durable, kept
        assert rows.get("koi")["job_id"] == "j1" and rows.stored_seq == 0 and not checkpoints.busy
        table.load()
        assert table.version == 0 and table.scan(["job_key"]).collect().height == 0  # no commit landed
        disk.free()
        checkpoints.run()  # the same rows fold again
        assert table.scan(["job_key", "job_id"]).collect().rows() == [("koi", "j1")]
        assert journal.read() == [] and read_highwater(checkpoints.path).seq == 1
        journal.close()
