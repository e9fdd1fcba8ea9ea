"""Does I/O: where a ledger's local files live. A local ledger keeps its journal, lock, high-water
mark, runs table and logs beside its folder; a remote one (s3://, gs://, az://) keeps them in a
state folder on this machine (--state-dir, default one per user and ledger URL), which names the
ledger's URL in `ledger.where`, so every command given the state folder's path finds the table.
Losing that folder loses at most the journal's unfolded lines (ARCHITECTURE.md, reconcile).
"""

from __future__ import annotations

from pathlib import Path

from deltalake.exceptions import DeltaError

from pipeline.store import location
from pipeline.store.atomic import write_text_atomic
from pipeline.store.faults import table_fault
from pipeline.store.location import Location
from pipeline.store.table import LedgerTable

POINTER = "ledger.where"  # in a state folder: the URL of the remote ledger whose journal it holds


def anchor(ledger: str | Path | Location, state_dir: str | Path | None = None) -> Path:
    """The local path a ledger is known by: its journal, lock, high-water mark, runs table and logs
    are named beside it. A local ledger is its own folder; a remote one is `ledger` in its state
    folder (--state-dir, default per user and URL), which names the URL in `ledger.where`, so every
    command given that path finds the table (`where_of`). One state folder serves one ledger."""
    where = location.parse(ledger)
    if where.path is not None:
        return where.path
    folder = Path(state_dir) if state_dir else location.default_state_dir(where)
    pointer = folder / POINTER
    try:
        said = pointer.read_text().strip()
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(pointer, where.url + "\n")
        said = where.url
    if said != where.url:
        raise location.LocationError(f"--state-dir {folder} holds the journal of the ledger {said}, not {where.url}: "
                                     "give each ledger its own --state-dir")
    return folder / "ledger"


def where_of(path: str | Path | Location) -> Location:
    """The table of the ledger known by `path`: the URL its state folder names, or the folder itself."""
    where = location.parse(path)
    if where.path is not None and not where.path.exists():
        pointer = where.path.with_name(POINTER)
        if where.path.name == "ledger" and pointer.is_file():
            return location.parse(pointer.read_text().strip())
    return where


def exists(path: str | Path) -> bool:
    """A ledger is there: a local folder or file, or a table at the URL its state folder names."""
    where = where_of(path)
    if where.path is not None:
        return where.path.exists()
    try:
        return LedgerTable(where).exists()
    except (DeltaError, OSError) as exc:  # the store cannot be reached or refuses us: said, not taken for "none"
        raise table_fault(exc, where, "read") from None
