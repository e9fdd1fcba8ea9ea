"""The ledger's journal on its own, over a real file: its line format, the replay's gap check,
the trim after a durable part. (Full disks and group commit through the Ledger: test_faults.py,
test_ledger.py.)"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from pipeline.store.faults import LedgerCorrupt, StorageFault
from pipeline.store.journal import Journal, decode_fields

NOW = datetime(2026, 11, 24, 1, 2, 3, tzinfo=timezone.utc)


def journal_at(tmp_path) -> tuple[Journal, dict, list[StorageFault]]:
    stats = {"fsyncs": 0, "fsync_seconds": 0.0}
    met: list[StorageFault] = []
    journal = Journal(tmp_path / "ledger.journal.jsonl", stats, lambda fault: met.append(fault) or fault)
    return journal, stats, met


def test_lines_hold_absolute_values_and_are_durable_only_after_commit(tmp_path):
    journal, stats, _ = journal_at(tmp_path)
    journal.open()
    journal.record("koi", {"status": "SUBMITTED", "submitted_at": NOW, "prompt": "ünï"})
    journal.rename("koi", "koi@abcd1234")
    assert journal.path.read_bytes() == b""  # buffered, not durable
    journal.commit_sync()
    assert journal.path.read_text().splitlines() == [
        '{"s":1,"k":"koi","f":{"status":"SUBMITTED","submitted_at":"2026-11-24T01:02:03+00:00","prompt":"ünï"}}',
        '{"s": 2, "op": "rename", "from": "koi", "to": "koi@abcd1234"}',
    ]
    assert (journal.seq, journal.durable_seq, stats["fsyncs"]) == (2, 2, 1)
    entries = journal.read()
    assert decode_fields(entries[0]["f"])["submitted_at"] == NOW
    journal.close()


def test_async_commit_writes_what_was_recorded_before_it(tmp_path):
    journal, stats, _ = journal_at(tmp_path)
    journal.open()

    async def scenario() -> None:
        journal.record("a", {"status": "PENDING"})
        journal.record("b", {"status": "PENDING"})
        await asyncio.gather(journal.commit(), journal.commit())

    asyncio.run(scenario())
    assert [e["k"] for e in journal.read()] == ["a", "b"] and stats["fsyncs"] == 1
    journal.close()


def test_replay_skips_what_the_parts_hold_and_names_a_gap(tmp_path):
    journal, _, _ = journal_at(tmp_path)
    applied: list[int] = []
    entries = [{"s": s, "k": "a", "f": {}} for s in (3, 4, 5)]
    journal.replay(entries, 3, lambda entry: applied.append(entry["s"]))
    assert applied == [4, 5] and (journal.seq, journal.durable_seq) == (5, 5)
    with pytest.raises(LedgerCorrupt, match=r"seq 2 to 3 are missing \(the parts end at 1\)"):
        Journal(journal.path, {}, lambda f: f).replay([{"s": 4, "k": "a", "f": {}}], 1, applied.append)


def test_a_damaged_whole_line_stops_the_read(tmp_path):
    journal, _, _ = journal_at(tmp_path)
    journal.path.write_bytes(b'{"s":1,"k":"a","f":{}}\n{"k":"no seq"}\n{"s":3')
    with pytest.raises(LedgerCorrupt, match=r"line 2 is complete but damaged; nothing was changed"):
        journal.read()
    journal.path.write_bytes(b'{"s":1,"k":"a","f":{}}\n{"s":2')
    assert [e["s"] for e in journal.read()] == [1]  # a torn tail is not damage


def test_trim_keeps_only_the_lines_after_the_durable_part(tmp_path):
    journal, _, _ = journal_at(tmp_path)
    journal.open()
    for key in "abc":
        journal.record(key, {"status": "PENDING"})
    journal.commit_sync()
    journal.trim(2)
    assert [e["k"] for e in journal.read()] == ["c"]
    journal.record("d", {"status": "PENDING"})  # appends to the trimmed file
    journal.commit_sync()
    assert [e["s"] for e in journal.read()] == [3, 4]
    journal.trim(4)
    assert journal.path.read_bytes() == b""
    journal.close()
