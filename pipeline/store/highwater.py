"""The ledger's high-water mark: what the ledger durably held at its last checkpoint.

`<stem>.highwater.json` beside the journal (outside the table's folder, so losing the whole folder
is noticed too; for a remote ledger, in the state folder) holds
- `seq`: the last journal seq the table holds;
- `journal_seq`: the last seq durable in the journal or the table when it was written;
- `version`: the Delta table's version after this journal's last commit into it (a table's
  version only grows, whoever commits: a smaller one is a table rolled back or lost);
- `parts`: in a mark written before the Delta table (the parts format), each part's name and size.

It is replaced atomically after every checkpoint, and checked on every open, so a table lost or
rolled back, a part of an old-format ledger deleted or cut, or a journal cut mid-file or at its
end is named, never read as a smaller ledger. A ledger from before this file is adopted: its first
writable open writes it. A data file of the table lost or damaged fails the read that needs it,
named then (ledger.reading_ledger).

What it cannot see, honestly: lines appended to the journal after its last write and then lost
with the journal's tail (only the journal itself knew of them; no submit after them is ever
acknowledged without them, so the API's copy of the job is what recovers it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.store.atomic import write_text_atomic
from pipeline.store.faults import RESTORE, LedgerCorrupt
from pipeline.store.parts import Part, parse_part_name

def highwater_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(f"{ledger_path.stem}.highwater.json")


@dataclass(frozen=True)
class HighWater:
    seq: int
    journal_seq: int
    parts: dict[str, int]  # part file name -> bytes (a mark of the parts format)
    version: int | None = None  # the Delta table's version (a mark of the table)


def read_highwater(ledger_path: Path) -> HighWater | None:
    """The mark, or None for a ledger written before it existed."""
    path = highwater_path(ledger_path)
    try:
        data = json.loads(path.read_bytes())
        version = data.get("version")
        return HighWater(int(data["seq"]), int(data["journal_seq"]),
                         {str(name): int(size) for name, size in (data.get("parts") or {}).items()},
                         None if version is None else int(version))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerCorrupt(f"{path} is damaged ({type(exc).__name__}); nothing was changed and nothing will be "
                            "spent: restore it from a backup, or delete it to accept the ledger's files as they are "
                            "now, then run again") from None


def write_highwater(ledger_path: Path, seq: int, journal_seq: int, parts: list[Part]) -> None:
    sizes = {part.path.name: part.size for part in parts if not part.legacy}
    write_text_atomic(highwater_path(ledger_path), json.dumps(
        {"seq": seq, "journal_seq": journal_seq, "parts": sizes}, separators=(",", ":")) + "\n")


def write_table_mark(ledger_path: Path, seq: int, journal_seq: int, version: int) -> None:
    write_text_atomic(highwater_path(ledger_path), json.dumps(
        {"seq": seq, "journal_seq": journal_seq, "version": version}, separators=(",", ":")) + "\n")


def check_table(mark: HighWater | None, ledger_path: Path, where: str, version: int) -> None:
    """The table against the mark: gone, or at an older version than this journal committed."""
    if mark is None or mark.version is None or version >= mark.version:
        return
    said = "is missing" if version < 0 else f"is at version {version}"
    raise LedgerCorrupt(f"the ledger table {where} {said}, but version {mark.version} was committed "
                        f"({highwater_path(ledger_path).name}): it was lost or rolled back; {RESTORE}")


def check_parts(ledger_path: Path, parts: list[Part]) -> None:
    """Every part a whole Parquet file: its footer's magic bytes at the end (a cut file loses them)."""
    for part in parts:
        if part.legacy:
            continue
        if part.size < 12 or _tail(part) != b"PAR1":
            raise LedgerCorrupt(f"{ledger_path / part.path.name if part.pinned else part.path} is cut short or "
                                f"damaged (no Parquet footer); {RESTORE}")


def _tail(part: Part) -> bytes:
    fd = os.open(part.path, os.O_RDONLY)
    try:
        return os.pread(fd, 4, part.size - 4)
    finally:
        os.close(fd)


def check_against(mark: HighWater | None, ledger_path: Path, parts: list[Part], journal_path: Path,
                  journal_last: int | None, stored: int | None = None) -> None:
    """What the files hold now against what they durably held: a listed part gone (and not merged
    into a live one) or changed in size, or a journal ending before its last durable line."""
    if mark is None:
        return
    live = {part.name: part for part in parts}
    for name, size in mark.parts.items():
        part = live.get(name)
        if part is None:
            first, last = parse_part_name(name)
            if any(p.first <= first and last <= p.last for p in parts):
                continue  # merged into a live part after the mark was written
            raise LedgerCorrupt(f"{ledger_path / name} is missing ({highwater_path(ledger_path).name} lists it); {RESTORE}")
        if part.size != size:
            raise LedgerCorrupt(f"{ledger_path / name} has {part.size} bytes, not the {size} it was written with; "
                                f"{RESTORE}")
    stored = max((p.last for p in parts), default=0) if stored is None else stored
    if max(stored, journal_last or 0) < mark.journal_seq:
        raise LedgerCorrupt(f"{journal_path} ends at seq {max(stored, journal_last or 0)}, but seq {mark.journal_seq} "
                            f"was durable ({highwater_path(ledger_path).name}): the journal was cut; {RESTORE}")
