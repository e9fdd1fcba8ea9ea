"""The high-water mark against the files as they are: a lost part, a part of another size, a
journal cut at its end are named; a part merged into a live one is not a loss.
(Through Ledger.open, on real damaged folders: test_faults.py.)"""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.store import parts as store
from pipeline.store.faults import LedgerCorrupt
from pipeline.store.highwater import HighWater, check_against, check_parts, highwater_path, read_highwater, \
    write_highwater


def part(folder, first: int, last: int) -> store.Part:
    frame = pl.DataFrame([{"job_key": f"k{last}", store.REMOVED: False, store.SUPERSEDES: False,
                           store.SEQ: last}], schema=store.PART_SCHEMA, orient="row")
    return store.write_part(folder, frame, first, last)


def test_the_mark_round_trips_and_a_ledger_before_it_has_none(tmp_path):
    ledger = tmp_path / "ledger.parquet"
    assert read_highwater(ledger) is None
    one = part(ledger, 1, 3)
    write_highwater(ledger, 3, 5, [one])
    assert read_highwater(ledger) == HighWater(3, 5, {one.name: one.size})
    highwater_path(ledger).write_text("{")
    with pytest.raises(LedgerCorrupt, match="highwater.json is damaged"):
        read_highwater(ledger)


def test_a_lost_part_is_named_unless_a_live_part_merged_it(tmp_path):
    ledger = tmp_path / "ledger.parquet"
    one, two = part(ledger, 1, 3), part(ledger, 4, 6)
    mark = HighWater(6, 6, {one.name: one.size, two.name: two.size})
    check_against(mark, ledger, [one, two], tmp_path / "j", None)
    with pytest.raises(LedgerCorrupt, match=rf"{two.name} is missing \(ledger.highwater.json lists it\)"):
        check_against(mark, ledger, [one], tmp_path / "j", None)
    merged = part(ledger, 1, 6)
    check_against(mark, ledger, [merged], tmp_path / "j", None)


def test_a_part_of_another_size_or_without_its_footer_is_named(tmp_path):
    ledger = tmp_path / "ledger.parquet"
    one = part(ledger, 1, 3)
    with pytest.raises(LedgerCorrupt, match=rf"has {one.size} bytes, not the {one.size + 1}"):
        check_against(HighWater(3, 3, {one.name: one.size + 1}), ledger, [one], tmp_path / "j", None)
    with open(one.path, "r+b") as cut:
        cut.truncate(one.size - 2)
    [short] = store.list_parts(ledger)
    with pytest.raises(LedgerCorrupt, match="is cut short or damaged"):
        check_parts(ledger, [short])


def test_a_journal_ending_before_its_last_durable_line_is_named(tmp_path):
    ledger = tmp_path / "ledger.parquet"
    journal = tmp_path / "ledger.journal.jsonl"
    check_against(HighWater(0, 4, {}), ledger, [], journal, 4)
    with pytest.raises(LedgerCorrupt, match=r"ends at seq 3, but seq 4 was durable"):
        check_against(HighWater(0, 4, {}), ledger, [], journal, 3)
