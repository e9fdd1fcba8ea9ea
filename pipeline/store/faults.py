"""When our own storage fails: one exception family, and one line that names the file and the next step.

Every error of the ledger, its journal, its parts, its lock, the high-water file and the runs
table is a StorageFault. The run stops on it (exit 3, everything durable kept for the rerun) and
status, report, plan and review print its line instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path


# What a refusal over a damaged file says to do: the same words wherever the damage was found.
RESTORE = "nothing was changed and nothing will be spent: restore it from a backup, then run again"


class StorageFault(Exception):
    """Our own durable state cannot be read or written as it is: stop, name the file, say what to do."""


class DiskFault(StorageFault):
    """An OSError of our own storage (full disk, read-only folder, ...), said in one line."""

    def __init__(self, exc: OSError, path: Path | str, doing: str = "write"):
        self.errno = exc.errno
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            what, step = "disk full", "free space there and run the same command again"
        elif exc.errno in (errno.EACCES, errno.EPERM) and doing == "read":
            what, step = "not readable", "make it readable and run the same command again"
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            what, step = "not writable", "make the folder writable and run the same command again"
        else:
            what, step = "storage error", "fix the disk or folder and run the same command again"
        super().__init__(f"cannot {doing} {path}: {what} ({reason}); everything durable is kept: {step}")


class LedgerError(StorageFault):
    """The ledger cannot be used as it is."""


class LedgerCorrupt(LedgerError):
    """A file of the ledger is missing, cut or damaged: nothing was changed, nothing will be spent."""


class FirstFault:
    """The first storage failure one ledger met: the line a stopped run ends with. Its journal and
    checkpoints tell it each failure (`met`) without holding the ledger itself."""

    def __init__(self) -> None:
        self.fault: StorageFault | BaseException | None = None

    def met(self, fault: StorageFault) -> StorageFault:
        self.fault = self.fault or fault
        return fault


def disk_fault(exc: OSError, path: Path | str, doing: str = "write") -> StorageFault:
    """`exc` as a StorageFault naming `path` (the file the OS error names, if it names one)."""
    return DiskFault(exc, exc.filename or path, doing)


# delta-rs and obstore report the OS's error inside their own text ("... (os error 28)"): read back.
_OS_ERRORS = {"os error 28": errno.ENOSPC, "no space left": errno.ENOSPC, "os error 122": errno.EDQUOT,
              "os error 30": errno.EROFS, "read-only file system": errno.EROFS,
              "os error 13": errno.EACCES, "permission denied": errno.EACCES}


def table_fault(exc: BaseException, where: object, doing: str = "write") -> StorageFault:
    """An error of the ledger's Delta table (delta-rs, at a local folder or a store URL) as one line:
    a disk's error said as disk_fault says it; a store's first line of its error, and what to do."""
    if isinstance(exc, StorageFault):
        return exc
    if isinstance(exc, OSError) and exc.errno:
        return disk_fault(exc, exc.filename or str(where), doing)
    text = str(exc)
    for marker, code in _OS_ERRORS.items():
        if marker in text.lower():
            return DiskFault(OSError(code, os.strerror(code)), str(where), doing)
    if "not found" in text.lower() and doing == "read":
        return LedgerCorrupt(f"the ledger table {where} names a file that is gone ({_first_line(text)}); {RESTORE}")
    return StorageFault(f"cannot {doing} the ledger table {where}: {_first_line(text)}; everything durable is kept "
                        "(the journal holds every change): check the store is reachable and its credentials in the "
                        "environment, then run the same command again")


def _first_line(text: str) -> str:
    """A Rust error's chain ("X\n  ↳ Y\n   ↳ Z", in colour) as "X: Y: Z", cut short."""
    lines = [re.sub(r"\x1b\[[0-9;]*m|↳", "", line).strip() for line in text.strip().splitlines()]
    return ": ".join(line for line in lines[:4] if line)[:240] or "unknown error"
