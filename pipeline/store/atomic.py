"""Replace a file so a reader sees the old content or the new, never half of either: the one
write-fsync-rename routine of the project (ledger parts, runs table, journal trim, owner file,
summaries, metrics, exports)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable


def fsync_path(path: Path) -> None:
    """Make a file's bytes, or a folder's names (a rename, a new file in it), survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_path


def replace_atomic(path: Path, write: Callable[[BinaryIO], object], *, temporary: Path | None = None,
                   mode: int = 0o666) -> None:
    """`write(out)` into a temporary file beside `path`, fsync it, rename it over `path`, fsync
    the folder. The temporary file is removed if anything fails before the rename.

    `temporary` defaults to `.<name>.tmp-PID`: it does not end like the target, so a reader that
    globs `*.parquet` or `*.prom` never picks it up.
    """
    path = Path(path)
    temporary = temporary or path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """UTF-8 text through `replace_atomic`, its folder made if needed.

    Created 0644 (less the umask) by default because another user, such as node_exporter,
    usually reads the result.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, lambda out: out.write(text.encode("utf-8")), mode=mode)
