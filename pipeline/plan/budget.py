"""Decides what `--max-credits` lets a run start: every attempt that still fits, in the order the
run submits them, and the one line that names the rows it left out.

First fit, not first stop: a row too dear for what is left is left out, and the cheaper rows after
it still go in, so a cap of 40 over rows of 10, 15, 25, 10 makes 35 credits' worth, not 25. The
run decides attempt by attempt as it submits (run/spending.py: a retry after a definite FAILED
is a new attempt and must fit too); `plan --max-credits N` forecasts the same first attempts in
the same order with `fit`, so what `plan` names is what `run` leaves, retries aside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

NAMED = 10  # rows a left-out line names; the rest are counted


@dataclass(frozen=True)
class LeftOut:
    job_key: str
    credits: int
    retry: bool = False  # a FAILED row whose next attempt did not fit (the row stays FAILED)


@dataclass
class Budget:
    """Attempts against a cap (None: no cap, every attempt fits): what was reserved, and what
    was left out, in order."""

    limit: int | None
    started: int = 0  # credits_estimated of the attempts let in
    left: list[LeftOut] = field(default_factory=list)

    def admits(self, job_key: str, credits: int, *, retry: bool = False) -> bool:
        """Reserve `credits` for one attempt if they fit under the cap; else note the row as left out."""
        if self.limit is None or self.started + credits <= self.limit:
            self.started += credits  # reserved at once: the run's submits go out concurrently
            return True
        self.left.append(LeftOut(job_key, credits, retry))
        return False

    @property
    def left_credits(self) -> int:
        return sum(row.credits for row in self.left)

    def line(self, *, after_run: bool) -> str | None:
        """`--max-credits 40: 3 rows left out (65 credits): a, b, c; ...` and the one thing to do
        about it: before a run, the cap that takes them all in; after it, the cap that makes them
        in the next run (the rows made now are skipped then)."""
        if not self.left:
            return None
        n, credits = len(self.left), self.left_credits
        names = ", ".join(row.job_key + (" (its retry)" if row.retry else "") for row in self.left[:NAMED])
        if n > NAMED:
            names += f" and {n - NAMED} more"
        said = f"--max-credits {self.limit}: {n} row{'s' if n != 1 else ''} left out ({credits} credits): {names}"
        if not after_run:
            return f"{said}; raise --max-credits to {self.started + credits} to include them"
        retry = " --retry-failed" if any(row.retry for row in self.left) else ""
        return f"{said}; run again with --max-credits {credits}{retry} to make them"


def fit(limit: int, attempts: Iterable[tuple[str, int]]) -> Budget:
    """The first attempts, in submit order (job_key, credits), against the cap."""
    budget = Budget(limit)
    for job_key, credits in attempts:
        budget.admits(job_key, credits)
    return budget
