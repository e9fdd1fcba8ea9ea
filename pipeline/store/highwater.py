"""The ledger's high-water mark: what the ledger durably held at its last checkpoint or merge.

`<stem>.highwater.json` beside the journal (outside the parts folder, so losing the whole folder
is noticed too) holds
- `seq`: the last journal seq the parts hold;
- `journal_seq`: the last seq durable in the journal or the parts when it was written;
- `parts`: each live part's file name and size in bytes.

It is replaced atomically after every checkpoint and merge, and checked on every open, so a part
deleted or cut, a journal cut mid-file or at its end, or a lost parts folder is named, never read as
a smaller ledger. A ledger from before this file is adopted: its first writable open writes it.

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
    parts: dict[str, int]  # part file name -> bytes


def read_highwater(ledger_path: Path) -> HighWater | None:
    """The mark, or None for a ledger written before it existed."""
    path = highwater_path(ledger_path)
    try:
        data = json.loads(path.read_bytes())
        return HighWater(int(data["seq"]), int(data["journal_seq"]),
                         {str(name): int(size) for name, size in data["parts"].items()})
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
                  journal_last: int | None) -> None:
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
    stored = max((p.last for p in parts), default=0)
    if max(stored, journal_last or 0) < mark.journal_seq:
        raise LedgerCorrupt(f"{journal_path} ends at seq {max(stored, journal_last or 0)}, but seq {mark.journal_seq} "
                            f"was durable ({highwater_path(ledger_path).name}): the journal was cut; {RESTORE}")
