"""Decides when the run stops: the stop flags, what a Ctrl-C does and prints, the deadline's
timers, and what an exception in our own code stops. The runner wires its callbacks in."""

from __future__ import annotations

import asyncio
import traceback
from typing import Callable

from pipeline.redact import redact
from pipeline.run.deadline import Deadline
from pipeline.run.events import RunEvents
from pipeline.store.faults import StorageFault

STOP_GRACE_S = 2.0  # after Ctrl-C, time for submits already sent to bring back their job_id


def internal_error_line(where: str, exc: BaseException) -> str:
    """The one line the summary shows for a bug of ours; the traceback goes to the run log."""
    return f"internal error in {where}: {type(exc).__name__}: {redact(str(exc))[:200]}; see the run log"


class Control:
    """The run's stop flags. Submits stop on 402, the budget, the deadline or a first Ctrl-C; the
    whole run stops on 401/403, a second stop, our storage failing, or a loop's bug."""

    def __init__(self, events: RunEvents, *, on_submits_stopped: Callable[[], None],
                 on_hard_stop: Callable[[], None], submits_in_air: Callable[[], int]):
        self.events = events
        self._on_submits_stopped = on_submits_stopped
        self._on_hard_stop = on_hard_stop
        self._submits_in_air = submits_in_air
        self.stop_reason: str | None = None
        self.submits_stopped = False
        self.hard_stopped = False
        self.internal_error: str | None = None  # the first exception a task raised, in one line

    def stopped(self) -> bool:
        """Whether the run stopped at once: the API client asks before each retry."""
        return self.hard_stopped

    @property
    def ended_short(self) -> bool:
        return self.hard_stopped or self.submits_stopped or bool(self.internal_error)

    def stop_submitting(self, reason: str) -> None:
        if not self.submits_stopped:
            self.submits_stopped = True
            self.stop_reason = self.stop_reason or reason
            self.events.stop_submitting(reason)
            self._on_submits_stopped()

    def hard_stop(self, reason: str) -> None:
        self.stop_submitting(reason)
        self.hard_stopped = True
        self._on_hard_stop()

    def interrupt(self, name: str) -> None:
        """A first Ctrl-C or SIGTERM: no new submits; submits already sent get a moment to bring
        back their job_id, then everything is saved and the run ends (exit 3)."""
        print(f"\n{name}: no new submits; saving and stopping (interrupt again to quit at once)", flush=True)
        self.stop_submitting(f"interrupted ({name})")
        if self._submits_in_air() == 0:
            self.hard_stop(f"interrupted ({name})")
        else:
            asyncio.get_running_loop().call_later(STOP_GRACE_S, self.hard_stop, f"interrupted ({name})")

    def note_internal_error(self, job_key: str | None, exc: BaseException, where: str) -> None:
        if isinstance(exc, StorageFault):  # not a bug: our disk failed; one line says which file and what to do
            line = str(exc)
            self.events.storage_failed(where, line)
            if self.internal_error is None:
                self.internal_error = self.stop_reason = line
            self.hard_stop(line)
            return
        self.internal_error = self.internal_error or internal_error_line(where, exc)
        self.events.internal_error(job_key, where, f"{type(exc).__name__}: {exc}",
                                   "".join(traceback.format_exception(exc)))

    def arm_deadline(self, deadline: Deadline | None, has_work: Callable[[], bool]) -> list[asyncio.TimerHandle]:
        """At the deadline the run stops (rows still generating stay in flight for the next run).
        Submits stop a moment before, so those already sent bring back their job_id first. A run with
        nothing to do has nothing a deadline could cut: it is not armed, and the run ends with exit 0."""
        if deadline is None or not has_work():
            return []
        loop = asyncio.get_running_loop()
        left = max(0.0, deadline.seconds_left())
        reason = deadline.reached_reason()
        return [loop.call_later(max(0.0, left - STOP_GRACE_S), self.stop_submitting, reason),
                loop.call_later(left, self.hard_stop, reason)]
