"""What this run may still start: `--max-credits` against the credits of the attempts it has
started, and `--deadline` against the slowest generation seen so far.

It only decides; the runner carries the answer out (stops submitting, logs the reason).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.run.deadline import Deadline


@dataclass
class Spending:
    limit: int | None = None  # --max-credits
    deadline: Deadline | None = None
    started: int = 0  # credits_estimated of the attempts started in this run

    def affords(self, cost: int) -> bool:
        return self.limit is None or self.started + cost <= self.limit

    def admit(self, cost: int, duration: int, observed: dict[int, tuple[float, float]]) -> str | None:
        """Reserve `cost` for a new attempt, or say why no new attempt may start."""
        if self.deadline is not None and not self.deadline.allows(duration, observed):
            return self.deadline.submit_stop_reason(duration, observed)
        if not self.affords(cost):
            return f"budget: --max-credits {self.limit} reached ({self.started} credits of attempts started)"
        self.started += cost  # reserved at once: submits run concurrently
        return None
