"""The one spelling of an earlier version's name, `<job_key>@<8 of the old hash>[-n]`."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.store.archive import archived_name, base_key, base_key_col, is_archived, is_archived_col


@pytest.mark.parametrize("taken, name", [
    ((), "koi@abcdef12"),
    ({"koi@abcdef12"}, "koi@abcdef12-2"),
    ({"koi@abcdef12", "koi@abcdef12-2"}, "koi@abcdef12-3"),  # edited A, B, A, B: every version kept
])
def test_an_old_version_gets_a_name_no_other_has(taken, name):
    assert archived_name("koi", "abcdef1234567890", taken) == name


def test_a_version_without_a_hash_is_old():
    assert archived_name("koi", None) == "koi@old"


@pytest.mark.parametrize("key, archived, base", [
    ("koi", False, "koi"), ("koi@abcdef12", True, "koi"), ("koi@abcdef12-3", True, "koi")])
def test_base_key_and_is_archived_agree_with_their_columns(key, archived, base):
    assert (is_archived(key), base_key(key)) == (archived, base)
    frame = pl.DataFrame({"job_key": [key]})
    assert frame.select(is_archived_col(), base=base_key_col()).row(0) == (archived, base)
