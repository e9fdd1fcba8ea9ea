"""`--deadline`: when a nightly batch must stop, and whether a new job can still make it.

Accepted forms: a local clock time (`07:00`, `7:30:15`: the next time the clock shows it), a
duration from now (`6h`, `90m`, `1h30m`, `45s`), or an ISO 8601 timestamp
(`2026-11-25T07:00`, local time unless it carries an offset or `Z`).

Two moments matter. Before each submit the runner asks `allows(duration, observed)`: a new job
is started only if the slowest generation seen so far for its clip length (or, before any has
finished, for a shorter clip, which cannot take longer) still fits before the deadline. The
slowest, not the typical: a job that ends after the deadline waits for the next run, and the
API keeps results and honours an Idempotency-Key for 24 hours only. At the deadline itself the
run stops: rows still generating stay in flight and the next run follows them; nothing is
submitted twice because every submit's intent is journaled before it leaves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

HELP = "a local clock time (07:00), a duration (6h, 90m, 1h30m) or an ISO timestamp (2026-11-25T07:00)"


class DeadlineError(ValueError):
    """A --deadline that names no usable moment."""


@dataclass(frozen=True)
class Deadline:
    given: str  # as the user wrote it: the summary names the deadline this way
    at: datetime  # timezone-aware

    def seconds_left(self, now: datetime | None = None) -> float:
        return (self.at - (now or datetime.now().astimezone())).total_seconds()

    def estimate(self, duration: int, observed: dict[int, tuple[float, float]]) -> float | None:
        """Seconds a new job of this clip length may take, from the generations seen so far
        (`observed[duration] = (fastest, slowest)`); None before anything comparable finished."""
        if duration in observed:
            return observed[duration][1]
        shorter = [slow for d, (_, slow) in observed.items() if d < duration]
        return max(shorter) if shorter else None

    def allows(self, duration: int, observed: dict[int, tuple[float, float]],
               now: datetime | None = None) -> bool:
        """Could a job of this clip length submitted now finish before the deadline?"""
        left = self.seconds_left(now)
        expected = self.estimate(duration, observed)
        return left > 0 and (expected is None or expected <= left)

    def describe(self) -> str:
        return f"--deadline {self.given} ({self.at.isoformat(timespec='seconds')})"

    def submit_stop_reason(self, duration: int, observed: dict[int, tuple[float, float]]) -> str:
        expected = self.estimate(duration, observed)
        if self.seconds_left() <= 0 or expected is None:
            return f"deadline: {self.describe()} reached; run again to continue"
        return (f"deadline: a new {duration} s clip could not finish before {self.describe()} "
                f"(the slowest seen took {expected:.0f} s); run again to continue")

    def reached_reason(self) -> str:
        return f"deadline: {self.describe()} reached; unfinished rows wait for the next run"


def parse_deadline(text: str, now: datetime | None = None) -> Deadline:
    """A Deadline from `07:00`, `6h`/`90m`, or an ISO timestamp. DeadlineError says what to write."""
    now = now or datetime.now().astimezone()
    try:
        return _parse(text, now)
    except (OverflowError, ValueError) as exc:  # 99999999h, year 10000, year 0: past what datetime holds
        if isinstance(exc, DeadlineError):
            raise
        raise DeadlineError(f"--deadline {text!r}: out of range (the latest moment is {datetime.max.year}-12-31); "
                            f"use {HELP}") from None


def _parse(text: str, now: datetime) -> Deadline:
    given = text.strip()
    clock = _CLOCK.match(given)
    if clock:
        hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise DeadlineError(f"--deadline {text!r}: not a clock time; use {HELP}")
        at = now.replace(hour=hour, minute=minute, second=second, microsecond=0)
        if at <= now:
            at += timedelta(days=1)  # 07:00 given at 22:00 means tomorrow morning
        return Deadline(given, at)
    duration = _DURATION.match(given)
    if duration and any(duration.groups()):
        hours, minutes, seconds = (int(part or 0) for part in duration.groups())
        span = timedelta(hours=hours, minutes=minutes, seconds=seconds)
        if span <= timedelta(0):
            raise DeadlineError(f"--deadline {text!r}: a duration must be longer than zero")
        return Deadline(given, now + span)
    try:
        at = datetime.fromisoformat(given.replace("Z", "+00:00"))
    except ValueError:
        raise DeadlineError(f"--deadline {text!r}: not understood; use {HELP}") from None
    if at.tzinfo is None:
        at = at.astimezone()  # a naive timestamp is local time, like the clock form
    if at <= now:
        raise DeadlineError(f"--deadline {text!r} has already passed (now {now.isoformat(timespec='seconds')}); "
                            "give a later time")
    return Deadline(given, at)
