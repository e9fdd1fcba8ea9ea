"""The one append-only JSON-lines log (the journal's and the verdict log's): real files, a real
full disk. A torn tail is cut, a complete bad line is named, every append is fsynced."""

from __future__ import annotations

import errno
import json
import os

import pytest

from pipeline.store import jsonlines
from pipeline.store.jsonlines import DamagedLine, JsonLinesLog, cut_torn_tail, read_lines
from tests.harness import SmallDisk


def test_a_torn_last_line_is_left_out_and_whole_lines_are_measured(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a":1}\n\n{"a":2}\n{"a":')
    entries, whole = read_lines(path, json.loads)
    assert entries == [{"a": 1}, {"a": 2}]
    assert whole == len(b'{"a":1}\n\n{"a":2}\n')
    assert read_lines(tmp_path / "missing.jsonl", json.loads) == ([], 0)


@pytest.mark.parametrize("damage", [b"{not json", b'"a string"'])
def test_a_complete_bad_line_is_named_wherever_it_is(tmp_path, damage):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a":1}\n' + damage + b'\n{"a":3}\n')

    def parse(line: bytes) -> dict:
        return {"a": json.loads(line)["a"]}

    with pytest.raises(DamagedLine) as raised:
        read_lines(path, parse)
    assert raised.value.number == 2 and raised.value.path == path
    assert str(raised.value) == f"{path}: line 2 is complete but damaged"


def test_open_cuts_a_torn_tail_so_the_next_line_stands_alone(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":')
    log = JsonLinesLog(path)
    log.open()
    try:
        assert log.size == len(b'{"a":1}\n')
        log.append(b'{"a":2}\n')
    finally:
        log.close()
    assert path.read_bytes() == b'{"a":1}\n{"a":2}\n'
    assert read_lines(path, json.loads)[0] == [{"a": 1}, {"a": 2}]


def test_cut_torn_tail_leaves_whole_lines_alone(tmp_path):
    path = tmp_path / "log.jsonl"
    for data, whole in [(b"", 0), (b'{"a":1}\n', 8), (b'{"a', 0)]:
        path.write_bytes(data)
        fd = os.open(path, os.O_RDWR)
        try:
            assert cut_torn_tail(fd) == whole
        finally:
            os.close(fd)
        assert path.read_bytes() == data[:whole]


def test_every_append_is_fsynced_and_a_new_file_s_name_too(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(jsonlines.os, "fsync", fsync)
    monkeypatch.setattr("pipeline.store.atomic.os.fsync", fsync)
    path = tmp_path / "log.jsonl"
    log = JsonLinesLog(path)
    log.open()
    assert synced == [str(tmp_path)]  # created: its name is made durable
    log.append(b'{"a":1}\n')
    log.append(b'{"a":2}\n')
    log.close()
    assert synced == [str(tmp_path), str(path), str(path)]
    reopened = JsonLinesLog(path)
    reopened.open()
    reopened.close()
    assert synced == [str(tmp_path), str(path), str(path)]  # nothing new to make durable


def test_a_failed_append_is_cut_back_to_the_last_whole_line(tmp_path):
    with SmallDisk(tmp_path / "disk", "64k") as disk:
        path = disk.path / "log.jsonl"
        log = JsonLinesLog(path)
        log.open()
        log.append(b'{"a":1}\n')
        disk.fill()
        with pytest.raises(OSError) as raised:
            log.append(b'{"big":"' + b"x" * 200_000 + b'"}\n')
        assert raised.value.errno == errno.ENOSPC
        log.cut_back()
        log.close()
        assert path.read_bytes() == b'{"a":1}\n'
