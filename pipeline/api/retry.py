"""The one retry primitive for transient failures: API calls (client.py) and video downloads
(runner.py). Waiting out a 429 is pacing, not a failure, and stays in the client; a new paid
attempt after a FAILED job is a decision (transitions.py), never a retry here."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
OnRetry = Callable[[BaseException, int, float], object]  # (the failure, failures so far, delay)


def _never() -> bool:
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff, full jitter by default: a delay drawn from [0, min(cap, base * 2^(n-1)))."""

    # Tries in all, the first included. Twelve ride out about 1.5 minutes of 503s or resets
    # (the capped delays add up to ~90 s on average) before a row is left for the next run.
    attempts: int = 12
    base: float = 0.5
    cap: float = 30.0
    jitter: bool = True  # False: exactly base, 2 * base, 4 * base ... cap

    def delay(self, failures: int) -> float:
        backoff = min(self.cap, self.base * 2 ** (failures - 1))
        return random.uniform(0, backoff) if self.jitter else backoff

    async def run(self, attempt: Callable[[], Awaitable[T]], *, retry_on: tuple[type[BaseException], ...],
                  on_retry: OnRetry | None = None, should_stop: Callable[[], bool] = _never) -> T:
        """`await attempt()` until it returns. A `retry_on` failure waits `delay(n)` and tries
        again, up to `attempts` tries in all; the last failure is raised, and so is any failure
        once `should_stop()` says the run is stopping. Other exceptions pass straight through."""
        failures = 0
        while True:
            try:
                return await attempt()
            except retry_on as exc:
                failures += 1
                if failures >= self.attempts or should_stop():
                    raise
                delay = self.delay(failures)
                if on_retry is not None:
                    on_retry(exc, failures, delay)
                await asyncio.sleep(delay)
                if should_stop():
                    raise
