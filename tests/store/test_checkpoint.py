"""A checkpoint on real files: the Delta commit is made before the journal is trimmed, a commit
that cannot be made (a really full disk) leaves journal, table and memory as they were, nothing
changed commits nothing. (The async worker's failure: test_faults.py.)"""

from __future__ import annotations

import os

import pytest

from pipeline.store.checkpoint import Checkpoints
from pipeline.store.faults import StorageFault
from pipeline.store.highwater import read_highwater
from pipeline.store.journal import Journal
from pipeline.store.ledger import Ledger, read_ledger
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


def test_the_table_is_vacuumed_at_most_once_a_day_from_one_journal(tmp_path):
    """delta-rs commits nothing when a vacuum finds nothing to delete, so the table's history cannot
    say when the last one ran: a stamp beside the journal does (a vacuum lists the whole table)."""
    path = tmp_path / "ledger.parquet"
    first = Ledger.open(path, run_id="r1")
    first.record("a", status="PENDING", manifest="m.yaml")
    first.close()
    stamp = tmp_path / "ledger.vacuumed"
    assert first.stats["vacuums"] == 1 and stamp.exists()
    second = Ledger.open(path, run_id="r2")
    second.record("b", status="PENDING", manifest="m.yaml")
    second.close()
    assert "vacuums" not in second.stats  # within the day: not again
    day_ago = stamp.stat().st_mtime - 25 * 3600
    os.utime(stamp, (day_ago, day_ago))
    third = Ledger.open(path, run_id="r3")
    third.record("c", status="PENDING", manifest="m.yaml")
    third.close()
    assert third.stats["vacuums"] == 1
    assert read_ledger(path)["job_key"].sort().to_list() == ["a", "b", "c"]
