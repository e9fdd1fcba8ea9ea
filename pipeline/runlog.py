"""One JSON object per line for every event of a run, beside the ledger: logs/<run_id>.jsonl."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.redact import redact


class RunLog:
    """Append-only event log. Lines are written whole and flushed, so `tail -f` and cron see them."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def event(self, kind: str, **fields: Any) -> None:
        if self._file.closed:
            return
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": kind}
        record.update(fields)
        self._file.write(redact(json.dumps(record, default=str, ensure_ascii=False)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
