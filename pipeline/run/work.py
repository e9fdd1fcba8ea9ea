"""Holds what the run knows of a row: its manifest fields, what the ledger has recorded of it
(Recorded), and what this run alone counts (Work); and says what a step may ask of the run it
belongs to (Run, which the Runner fulfils). Data and an interface only: no rule, no I/O.

The steps (run/submit.py, old_intents.py, follow.py, fetch.py, intake.py) name `Run`, never the
Runner, so no step imports the module that wires them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Protocol, runtime_checkable

from pipeline.models import get_model
from pipeline.run import transitions as t
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
        """The clip length that paces tracking and ETAs: the asked one, else the model's longest
        (a row may ask none: midjourney-video takes no duration). Never what a file is checked
        against: that is the row's own `duration` (fetch.py)."""
        asked = self.row["duration"]
        return int(asked) if asked is not None else get_model(self.row["model"]).longest or 0

    @property
    def job_id(self) -> str | None:
        return self.recorded.job_id

    @property
    def superseded(self) -> bool:
        """An archived version (`<key>@<hash>`): followed to its end, never paid for again."""
        return is_archived(self.job_key)


@runtime_checkable
class Run(Protocol):
    """What a step may read of the run and ask of it. The steps, the stop flags (Control) and the
    reporter (RunEvents) are named Any here: each of their modules imports this one."""

    client: Any  # pipeline.api.client.ApiClient
    ledger: Any  # pipeline.store.ledger.Ledger
    plan: Any  # pipeline.plan.actions.Plan
    options: Any  # pipeline.run.runner.RunOptions
    limits: t.Limits
    payers: Any  # pipeline.run.payers.JobPayers
    spending: Any  # pipeline.run.spending.Spending
    control: Any  # pipeline.run.control.Control
    events: Any  # pipeline.run.events.RunEvents
    work: dict[str, Work]
    by_job_id: dict[str, Work]
    active: set[str]
    submitter: Any  # pipeline.run.submit.Submitter
    old_intents: Any  # pipeline.run.old_intents.OldIntents
    follower: Any  # pipeline.run.follow.Follower
    fetcher: Any  # pipeline.run.fetch.Fetcher

    def row(self, work: Work) -> t.Row: ...

    def record(self, work: Work, **fields: Any) -> None: ...

    async def apply(self, work: Work, decision: t.Decision, *, stop_message: str | None = None,
                    sent: float | None = None, resumed: bool = False) -> None: ...

    def take_on(self, work: Work) -> None: ...

    def leave(self, work: Work, reason: str) -> None: ...

    async def slot_free(self) -> None: ...

    def spawn(self, coro: Awaitable[Any]) -> None: ...

    async def guarded(self, work: Work, coro: Awaitable[Any]) -> None: ...

    def check_finished(self) -> None: ...
