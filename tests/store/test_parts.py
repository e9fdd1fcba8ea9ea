"""The folder of parts (the ledger's format before the Delta table), as it is still read and
migrated: names, which parts are live, the newest version of a row winning, and a folder of parts
becoming the table's first commit with one current row per key. Real Parquet files in tmp_path.
(Merging parts by size tier is gone with the format: the table's compaction is maintain(),
tests/store/test_table.py.)"""

from __future__ import annotations

import polars as pl

from pipeline.store import migrate, parts as store


def versions(*rows: tuple[str, int, bool, bool, str]) -> pl.DataFrame:
    """(job_key, seq, removed, supersedes, status) rows as a part's frame."""
    return pl.DataFrame([{"job_key": k, store.SEQ: s, store.REMOVED: r, store.SUPERSEDES: sup, "status": st}
                         for k, s, r, sup, st in rows], schema=store.PART_SCHEMA, orient="row")


def test_a_part_name_says_its_seqs_and_rows():
    name = store.part_name(1, 42, 7)
    assert name == "part-000000000001-000000000042-7.parquet"
    assert store.parse_part_name(name) == (1, 42) and store.parse_part_name("notes.txt") == (0, -1)


def test_a_merge_input_a_crash_left_behind_is_not_live(tmp_path):
    old = store.write_part(tmp_path, versions(("a", 1, False, False, "PENDING")), 1, 1)
    merged = store.write_part(tmp_path, versions(("a", 1, False, False, "PENDING")), 1, 2)
    (tmp_path / ".tmp-123-part.partial").write_bytes(b"half")
    assert [p.name for p in store.list_parts(tmp_path)] == [merged.name]
    assert store.covered_parts(tmp_path) == [old.path]


def test_the_newest_version_wins_and_a_removed_row_is_gone(tmp_path):
    first = store.write_part(tmp_path, versions(("a", 1, False, False, "PENDING"),
                                                ("b", 1, False, False, "PENDING")), 1, 1)
    second = store.write_part(tmp_path, versions(("a", 2, False, True, "DOWNLOADED"),
                                                 ("b", 2, True, True, None)), 2, 2)
    parts = [first, second]
    assert store.current(parts, ["status"]).collect().rows() == [("a", "DOWNLOADED")]
    found = store.lookup(parts, ["a", "b", "c"]).sort("job_key")
    assert found["job_key"].to_list() == ["a", "b"] and found[store.REMOVED].to_list() == [False, True]
    overlay = pl.DataFrame([{"job_key": "a", "status": "FAILED"}], schema={"job_key": pl.String, "status": pl.String})
    assert store.current(parts, ["status"], overlay).collect().rows() == [("a", "FAILED")]
    assert store.current(parts, ["status"], hidden=["a"]).collect().height == 0


def test_a_folder_of_parts_migrates_to_one_current_row_per_key(tmp_path):
    """Versions of a row over several parts, a removed row, and a merge's input a crash left behind:
    the table's first commit holds each key's newest version once, and no removed key."""
    parts = [store.write_part(tmp_path, versions(("a", s, s == 8, s > 1, f"S{s}"), (f"k{s}", s, False, False, "PENDING")),
                              s, s) for s in range(1, 8)]
    store.write_part(tmp_path, versions(("b", 8, False, False, "DOWNLOADED")), 8, 8)
    # the old code's merge of parts 1 and 2, its inputs left behind by a crash: not read twice
    store.write_part(tmp_path, versions(("a", 2, False, False, "S2"), ("k1", 1, False, False, "PENDING"),
                                        ("k2", 2, False, False, "PENDING")), 1, 2)
    assert len(store.list_parts(tmp_path)) == len(parts) - 2 + 2 and store.covered_parts(tmp_path) == \
        [p.path for p in parts[:2]]
    assert migrate.migrate(tmp_path, 0) == 8  # the journal seq the table now holds
    table = pl.read_delta(str(tmp_path)).sort("job_key")
    assert table.select("job_key", "status").rows() == \
        [("a", "S7"), ("b", "DOWNLOADED"), *[(f"k{s}", "PENDING") for s in range(1, 8)]]
    assert migrate.is_delta(tmp_path) and migrate.migrate(tmp_path, 0) is None  # done once
    migrate.remove_parts(tmp_path)
    assert not list(tmp_path.glob("part-*.parquet")) and pl.read_delta(str(tmp_path)).height == 9


def test_a_part_an_earlier_version_wrote_reads_its_new_columns_as_null_and_migrates(tmp_path):
    """Columns are only added (schema.py): a part written before `params` (issue 21) is read, looked
    up and migrated beside newer parts, whichever comes first, its missing columns null."""
    old_columns = [c for c in store.PART_SCHEMA if c not in ("params", "video_width", "video_height", "video_seconds")]
    parts = []
    for seq in range(1, store.MERGE_AT + 1):
        frame = versions((f"k{seq}", seq, False, False, "DOWNLOADED")).with_columns(
            params=pl.lit('{"mode":"pro"}'), video_width=pl.lit(1280, pl.Int64))
        if seq % 2:  # every other part as the code before issue 21 wrote it
            frame = frame.select(old_columns)
            path = tmp_path / store.part_name(seq, seq, 1)
            frame.write_parquet(path)
            parts.append(store.Part(path, seq, seq, 1, size=path.stat().st_size))
        else:
            parts.append(store.write_part(tmp_path, frame, seq, seq))
    assert "params" not in pl.read_parquet_schema(parts[0].path)
    expected = [(f"k{s}", None if s % 2 else '{"mode":"pro"}', None if s % 2 else 1280)
                for s in range(1, store.MERGE_AT + 1)]
    assert store.current(parts, ["params", "video_width"]).sort("job_key").collect().rows() == expected
    assert store.lookup(parts, ["k1", "k2"], ["params"]).select("job_key", "params").sort("job_key").rows() == \
        [row[:2] for row in expected[:2]]
    migrate.migrate(tmp_path, 0)  # and migrated into the table, the missing columns null there
    table = pl.read_delta(str(tmp_path)).select("job_key", "params", "video_width").sort("job_key")
    assert table.rows() == expected
