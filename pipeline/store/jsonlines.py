"""Does I/O: an append-only file of JSON lines, each durable (written whole and fsynced) when its
append returns; the one such log of the project (the ledger's journal, the review verdict log).

The torn-tail rule, in one place: only a last line without its newline is torn (a write cut
short by a crash, never acknowledged), so it is dropped, and opening for append cuts it off so
the next line does not join it into one complete line that means nothing. A complete line that
does not parse is damage, wherever it is: it is named (DamagedLine), never skipped.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any, Callable

from pipeline.store.atomic import fsync_dir


class DamagedLine(Exception):
    """Line `number` of `path` is complete (it has its newline) but does not parse."""

    def __init__(self, path: Path, number: int):
        self.path = path
        self.number = number
        super().__init__(f"{path}: line {number} is complete but damaged")


def read_lines(path: Path, parse: Callable[[bytes], Any]) -> tuple[list[Any], int]:
    """`parse` of each whole, non-blank line of `path`, and the byte length of its whole lines
    (a torn last line is left out). A missing file holds nothing. `parse` raising ValueError,
    KeyError or TypeError is DamagedLine."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    entries: list[Any] = []
    position = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        end = position + len(line) + 1
        if end > len(data):
            break
        if line.strip():
            try:
                entries.append(parse(line))
            except (ValueError, KeyError, TypeError):
                raise DamagedLine(path, number) from None
        position = end
    return entries, position


def cut_torn_tail(fd: int) -> int:
    """Drop a last line a crash cut short; the byte length of the whole lines left."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    data = os.pread(fd, size, 0)
    whole = data.rfind(b"\n") + 1
    os.ftruncate(fd, whole)
    os.fsync(fd)
    return whole


class JsonLinesLog:
    """One open of an append-only JSON-lines file. `size` is the bytes of its whole, durable lines."""

    def __init__(self, path: Path, *, mode: int = 0o644):
        self.path = Path(path)
        self.mode = mode
        self.fd: int | None = None
        self.size = 0
        self._closer: weakref.finalize | None = None

    def open(self) -> None:
        """Open for appending, the torn tail cut. A new file's name is made durable too."""
        created = not self.path.exists()
        # O_APPEND: one write lands whole at the end, so lines of two writers never interleave.
        self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, self.mode)
        self._closer = weakref.finalize(self, os.close, self.fd)  # closed when dropped, as a file object is
        self.size = cut_torn_tail(self.fd)
        if created:
            fsync_dir(self.path.parent)

    def append(self, data: bytes) -> None:
        """Write `data` (whole lines) and fsync: durable when this returns. OSError if not."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        os.fsync(self.fd)
        self.size += len(data)

    def cut_back(self) -> None:
        """After a failed append: back to the last whole line, so no half line is followed by good ones.
        Only for a sole writer (the journal, under the ledger's lock)."""
        os.ftruncate(self.fd, self.size)
        os.fsync(self.fd)

    def empty(self) -> None:
        """Drop every line, durably."""
        os.ftruncate(self.fd, 0)
        os.fsync(self.fd)
        self.size = 0

    def close(self) -> None:
        if self._closer is not None:
            self._closer()  # os.close, once
            self._closer = self.fd = None

