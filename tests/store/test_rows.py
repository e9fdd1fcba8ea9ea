"""The current rows: the Delta table on disk with the changes since the last commit in memory, read
by key or by scan, folded into a merge and unfolded when that merge could not be committed."""

from __future__ import annotations

from datetime import datetime, timezone

from pipeline.store.location import parse
from pipeline.store.rows import LedgerRows
from pipeline.store.table import REMOVED, LedgerTable

EARLY = datetime(2026, 11, 24, 1, 0, tzinfo=timezone.utc)
LATE = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


def table(tmp_path) -> LedgerTable:
    return LedgerTable(parse(str(tmp_path / "ledger.parquet")))


def new_rows(tmp_path) -> LedgerRows:
    rows = LedgerRows()
    rows.source = table(tmp_path)
    return rows


def stored(rows: LedgerRows, seq: int) -> None:
    """Fold what memory holds into a real commit of the table, as a checkpoint does."""
    fold = rows.fold(seq)
    rows.source.merge(fold.frame)
    rows.committed(fold)
    rows.stored_up_to(seq)


def test_a_patch_on_a_stored_row_keeps_its_other_fields(tmp_path):
    rows = new_rows(tmp_path)
    rows.patch("koi", {"status": "SUBMITTED", "job_id": "j1", "credits_charged": 10})
    stored(rows, 1)
    fresh = LedgerRows()  # another open of the same table
    fresh.source, fresh.stored_seq = table(tmp_path), 1
    assert fresh.source.load()
    fresh.patch("koi", {"status": "DOWNLOADED"})
    assert (fresh.get("koi")["status"], fresh.get("koi")["job_id"]) == ("DOWNLOADED", "j1")
    assert "koi" in fresh and "carp" not in fresh and fresh.get("carp") is None
    assert fresh.credits_total() == 10
    assert fresh.rows(["koi", "carp"], ["status"]).to_dicts() == [{"job_key": "koi", "status": "DOWNLOADED"}]


def test_a_moved_key_used_again_is_a_new_row(tmp_path):
    rows = new_rows(tmp_path)
    rows.patch("koi", {"status": "DOWNLOADED", "prompt": "old"})
    rows.move("koi", "koi@aaaa1111")
    assert rows.get("koi") is None and rows.get("koi@aaaa1111")["prompt"] == "old"
    rows.patch("koi", {"status": "PENDING"})
    assert rows.get("koi")["prompt"] is None  # nothing inherited from the moved version
    assert sorted(rows.scan(["status"]).collect()["job_key"]) == ["koi", "koi@aaaa1111"]


def test_a_removed_stored_row_is_folded_as_a_tombstone(tmp_path):
    rows = new_rows(tmp_path)
    rows.patch("koi", {"status": "DOWNLOADED"})
    stored(rows, 1)
    rows.move("koi", "koi@aaaa1111")
    fold = rows.fold(2)
    by_key = {row["job_key"]: row for row in fold.frame.iter_rows(named=True)}
    # the old key is deleted in the partition it was stored in; the moved row stays in that partition
    assert by_key["koi"][REMOVED] and (by_key["koi"]["night"], by_key["koi"]["batch"]) == \
        (by_key["koi@aaaa1111"]["night"], by_key["koi@aaaa1111"]["batch"])
    assert not by_key["koi@aaaa1111"][REMOVED] and (fold.first, fold.last) == (2, 2)
    rows.source.merge(fold.frame)
    assert rows.source.scan(["job_key", "status"]).collect().rows() == [("koi@aaaa1111", "DOWNLOADED")]


def test_unfold_puts_the_rows_back_with_what_came_after_on_top(tmp_path):
    rows = new_rows(tmp_path)
    rows.patch("koi", {"status": "SUBMITTED", "job_id": "j1"})
    fold = rows.fold(1)
    rows.patch("koi", {"status": "PROCESSING"})  # recorded while the part was being written
    rows.unfold(fold)
    assert rows.get("koi")["status"] == "PROCESSING" and rows.get("koi")["job_id"] == "j1"
    again = rows.fold(2)  # everything is folded again, nothing lost
    assert again.keys == ["koi"] and again.frame.row(0, named=True)["status"] == "PROCESSING"


def test_first_payer_is_the_earliest_row_stored_or_recorded_here(tmp_path):
    rows = new_rows(tmp_path)
    rows.patch("late", {"job_id": "j1", "submitted_at": LATE})
    rows.patch("other", {"job_id": "j2", "submitted_at": EARLY})
    stored(rows, 2)
    rows.patch("early", {"job_id": "j1", "submitted_at": EARLY})
    assert rows.first_payer("j1") == "early"
    assert rows.first_payer("j2") == "other" and rows.first_payer("nobody") is None
