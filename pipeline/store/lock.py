"""One ledger, one run: an exclusive lock file that names its holder.

The lock is `flock` on a file beside the ledger. The kernel drops an flock when its process
dies, however it dies, so a lock file left by a dead run is simply taken over; the file's text
(pid, host, start time, run id) only serves to tell the user who holds a live lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from pipeline.store.faults import StorageFault


class LockHeld(Exception):
    def __init__(self, path: Path, holder: dict):
        self.path = path
        self.holder = holder
        super().__init__(f"{path} is held by {holder}")


class LockLost(StorageFault):
    def __init__(self, path: Path):
        super().__init__(
            f"the lock file {path} was deleted or replaced while this run held it, so another run could "
            "take the ledger too; this run stopped with everything durable kept: make sure no other "
            "videobatch run uses this ledger, then run the same command again")


class RunLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, run_id: str | None) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(self.path, holder) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "run_id": run_id}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def check(self) -> None:
        """Raise LockLost if the path no longer names the file this run locked (deleted, or
        deleted and made again by another run): the flock then excludes nobody."""
        if self._fd is None:
            return
        held = os.fstat(self._fd)
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            raise LockLost(self.path) from None
        if (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino):
            raise LockLost(self.path)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
