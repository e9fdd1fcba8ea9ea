"""Holds what the run knows of a row: its manifest fields, what the ledger has recorded of it
(Recorded), and what this run alone counts (Work). Data only: no rule, no I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.store.archive import is_archived


@dataclass(frozen=True)
class Recorded:
    """The ledger columns a row's next step depends on, as last recorded.

    Never edited: `Runner.record` replaces it from the very fields it writes to the ledger, so
    it cannot drift from the ledger's row (names are the ledger's columns)."""

    attempts: int = 0
    job_id: str | None = None
    credits_prior: int = 0
    credits_charged: int = 0
    video_url: str | None = None
    idempotency_key: str | None = None
    request_body: str | None = None
    first_sent_at: datetime | None = None

    @classmethod
    def of(cls, row: dict[str, Any], prefix: str = "") -> Recorded:
        """From a ledger row, or from the plan's copy of it (columns prefixed `ledger_`)."""
        values = {name: row.get(prefix + name) for name in _RECORDED}
        for name in ("attempts", "credits_prior", "credits_charged"):
            values[name] = values[name] or 0
        return cls(**values)

    def after(self, fields: dict[str, Any]) -> Recorded:
        changed = {name: value for name, value in fields.items() if name in _RECORDED}
        return dataclasses.replace(self, **changed) if changed else self

    @property
    def first_sent(self) -> float | None:
        """Epoch seconds the current intent was first sent."""
        return self.first_sent_at.timestamp() if self.first_sent_at is not None else None


_RECORDED = tuple(f.name for f in dataclasses.fields(Recorded))


@dataclass
class Work:
    """A row this run is responsible for: its manifest fields, what the ledger has recorded of
    it, and what this run alone counts."""

    job_key: str
    row: dict[str, Any]  # manifest fields
    recorded: Recorded = Recorded()
    uncertain: int = 0  # uncertain answers about the current job or intent, this run
    after_cdn_404: bool = False  # the next read follows a CDN 404 for video_url

    @property
    def duration(self) -> int:
        return int(self.row["duration"])

    @property
    def job_id(self) -> str | None:
        return self.recorded.job_id

    @property
    def superseded(self) -> bool:
        """An archived version (`<key>@<hash>`): followed to its end, never paid for again."""
        return is_archived(self.job_key)
