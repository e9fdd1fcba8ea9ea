"""One JSON object per line for every event of a run, beside the ledger: logs/<run_id>.jsonl."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.redact import redact


class RunLog:
    """Append-only event log. Lines are buffered and flushed by `flush()` (the runner calls it
    twice a second) and on close: one write for many events, not one per event. The ledger's
    journal, not this log, is the durable record, so a crash costs at most the last half second
    of log lines."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8", buffering=1 << 20)

    def event(self, kind: str, **fields: Any) -> None:
        if self._file.closed:
            return
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": kind}
        record.update(fields)
        self._file.write(redact(json.dumps(record, default=str, ensure_ascii=False)) + "\n")

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        self._file.close()
