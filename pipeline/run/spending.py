"""What this run may still start: `--max-credits` against the credits of the attempts it has
started (every attempt that still fits, plan/budget.py), and `--deadline` against the slowest
generation seen so far.

It only decides; the runner carries the answer out: a deadline stops submitting, a row the budget
leaves out is left unsent (or, for a retry, FAILED) and the cheaper rows after it still go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from pipeline.plan.budget import Budget
from pipeline.run.deadline import Deadline


class Refusal(NamedTuple):
    reason: str
    stops: bool  # True: no new attempt may start at all (the deadline); False: only this one


@dataclass
class Spending:
    limit: int | None = None  # --max-credits
    deadline: Deadline | None = None
    budget: Budget = field(init=False)

    def __post_init__(self) -> None:
        self.budget = Budget(self.limit)

    @property
    def started(self) -> int:
        """credits_estimated of the attempts started in this run."""
        return self.budget.started

    def admit(self, job_key: str, cost: int, duration: int, observed: dict[int, tuple[float, float]],
              *, retry: bool = False) -> Refusal | None:
        """Reserve `cost` for a new attempt of `job_key`, or say why it may not start."""
        if self.deadline is not None and not self.deadline.allows(duration, observed):
            return Refusal(self.deadline.submit_stop_reason(duration, observed), stops=True)
        if self.budget.admits(job_key, cost, retry=retry):
            return None
        what = "its retry's" if retry else "its"
        return Refusal(f"budget: --max-credits {self.limit}: {what} {cost} credits did not fit "
                       f"({self.started} credits of attempts started)", stops=False)

    def left_out(self) -> tuple[int, bool] | None:
        """(credits, whether a retry is among them) of the attempts the budget left out; None if none."""
        left = self.budget.left
        return (self.budget.left_credits, any(row.retry for row in left)) if left else None

    def left_out_line(self) -> str | None:
        """The rows the budget left out, named, and the next step; None if it left none."""
        return self.budget.line(after_run=True)
