"""The one write-fsync-rename routine: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import os
import stat

import pytest

from pipeline.store.atomic import replace_atomic, write_text_atomic


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "table.parquet"
    path.write_bytes(b"old")

    def half(out) -> None:
        out.write(b"ne")
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        replace_atomic(path, half)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["table.parquet"]
    replace_atomic(path, lambda out: out.write(b"new"))
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_text_makes_its_folder_and_is_readable_by_others(tmp_path):
    path = tmp_path / "metrics" / "videobatch.prom"
    umask = os.umask(0o022)
    try:
        write_text_atomic(path, "ü 1\n")
    finally:
        os.umask(umask)
    assert path.read_text(encoding="utf-8") == "ü 1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # node_exporter, another user, reads it
