"""store/catalog.py: the catalog a plan or run priced with is kept beside the ledger with the time
it was read, replaced whole; a missing or unreadable copy reads as none (it is only a trace)."""

from __future__ import annotations

from datetime import datetime, timezone

from pipeline.store.catalog import catalog_path, keep_catalog, kept_catalog


def test_the_catalog_is_kept_beside_the_ledger_with_its_date(tmp_path):
    ledger = tmp_path / "ledger.parquet"
    assert kept_catalog(ledger) is None
    when = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)
    answer = {"models": [{"id": "veo-3", "pricingMode": "per-second", "costMax": 3}]}
    path = keep_catalog(ledger, answer, when)
    assert path == catalog_path(ledger) == tmp_path / "ledger.catalog.json"
    assert kept_catalog(ledger) == ("2026-12-02T08:00:00+00:00", answer)
    keep_catalog(ledger, {"models": []}, when)
    assert kept_catalog(ledger)[1] == {"models": []}
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.catalog.json"]  # no temporary left


def test_a_damaged_copy_reads_as_none(tmp_path):
    ledger = tmp_path / "ledger.parquet"
    catalog_path(ledger).write_text("{not json")
    assert kept_catalog(ledger) is None
