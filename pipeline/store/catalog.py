"""Does the I/O of the kept catalog: the answer of `GET /v2/models?modality=video` a plan or run
priced its rows with, kept beside the ledger (`<stem>.catalog.json`) with the time it was read,
so the estimates in the ledger can be traced to the prices they came from."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.store.atomic import write_text_atomic


def catalog_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(f"{ledger_path.stem}.catalog.json")


def keep_catalog(ledger_path: Path, answer: Any, read_at: datetime) -> Path:
    """Replace the kept catalog (whole or not at all) with this answer."""
    path = catalog_path(ledger_path)
    text = json.dumps({"read_at": read_at.isoformat(), "source": "GET /v2/models?modality=video",
                       "answer": answer}, indent=1, sort_keys=True, default=str)
    write_text_atomic(path, text + "\n")
    return path


def kept_catalog(ledger_path: Path) -> tuple[str, Any] | None:
    """(when it was read, the answer) of the kept catalog; None when there is none or it cannot
    be read (it is only a trace: the prices that count are read again by every plan and run)."""
    try:
        data = json.loads(catalog_path(ledger_path).read_text())
        return str(data["read_at"]), data["answer"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
