"""Decides what a run comes to: its exit code (the scheduler's contract, README "Exit codes"), its
tally of failed and unfinished rows with their reasons, and the RunResult that carries them.

The CLI imports this module at start-up (`videobatch --help`), so it imports no polars, and
transitions.py imports it: the run's Plan, Counters and Account are named, not imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any


class ExitCode(IntEnum):
    """The exit code of `run` and `plan` (an int to the shell, to JSON and to the runs table)."""

    OK = 0
    FAILED_ROWS = 1
    BAD_INPUT = 2
    STOPPED = 3
    UNREACHABLE = 4


EXIT_OK, EXIT_FAILED_ROWS, EXIT_BAD_INPUT, EXIT_STOPPED, EXIT_UNREACHABLE = ExitCode
EXIT_MEANINGS = {
    EXIT_OK: "every row is downloaded",
    EXIT_FAILED_ROWS: "finished, with failed or rejected rows",
    EXIT_BAD_INPUT: "bad manifest, arguments or configuration (such as a key the API refused): nothing was submitted",
    EXIT_STOPPED: "stopped early: run the same command again to continue",
    EXIT_UNREACHABLE: "the API could not be reached: nothing was submitted",
}


def exit_meaning(code: int | None) -> str | None:
    return EXIT_MEANINGS.get(code) if code is not None else None


@dataclass
class Tally:
    """What this run alone knows of its rows' endings, beyond the ledger's statuses."""

    failures: dict[str, str] = field(default_factory=dict)  # job_key -> why it failed in this run
    unfinished: dict[str, str] = field(default_factory=dict)  # job_key -> why it is left for the next run
    rows_expired: int = 0

    def failure_reasons(self, failed: set[str], ledger_errors: dict[str, str | None]) -> list[tuple[str, str]]:
        """Rows that failed in an earlier run keep the reason the ledger has for them."""
        return [(k, self.failures.get(k) or ledger_errors.get(k) or "") for k in sorted(failed)]

    def unfinished_reasons(self, unfinished: set[str]) -> list[tuple[str, str]]:
        return [(k, self.unfinished[k]) for k in sorted(unfinished) if k in self.unfinished]


def stop_reason(stopped_because: str | None, internal_error: str | None, unfinished: int) -> str | None:
    """The one line that says why the run ended short, if it did."""
    return stopped_because or internal_error or (f"{unfinished} rows unfinished" if unfinished else None)


@dataclass
class RunResult:
    run_id: str
    exit_code: ExitCode
    stop_reason: str | None
    counters: Any  # pipeline.run.progress.Counters
    credits_estimated: int  # attempts started in this run, at the model's price
    credits_charged: int  # creditCost reported for this run's jobs (net of refunds)
    rows_finished: int
    rows_failed: int
    rows_expired: int
    rows_unfinished: int
    requests: int
    rate_limited: int
    started_at: datetime
    ended_at: datetime
    failures: list[tuple[str, str]] = field(default_factory=list)  # (job_key, reason)
    unfinished: list[tuple[str, str]] = field(default_factory=list)  # (job_key, reason), left for the next run
    account: Any = None  # pipeline.run.account.Account, once the key's account is known
    # (credits, a retry among them) of the rows --max-credits left out, when that is why the run
    # ended short: the next run's cap that makes them (the one next command says it).
    budget_left: tuple[int, bool] | None = None

    @property
    def rows_submitted(self) -> int:
        """Submits that got a job_id in this run."""
        return self.counters.submitted

    def to_runs_row(self, plan: Any, *, emulated: bool, log_path: Path) -> dict[str, Any]:
        """This run as a row of the runs table: the only code that builds one."""
        # Lazy: both load polars, which `videobatch --help` (importing this module) must not.
        from pipeline.plan.actions import SKIP  # the plan's Plan is passed in, its SKIP read here
        from pipeline.store.schema import RUNS_SCHEMA  # lazy too: store.schema loads polars

        account = self.account
        row = {
            "run_id": self.run_id, "manifest": str(plan.manifest), "emulated": emulated,
            "started_at": self.started_at, "ended_at": self.ended_at,
            "rows_planned": plan.rows.height, "rows_skipped": plan.counts.get(SKIP, 0),
            "rows_submitted": self.rows_submitted, "rows_finished": self.rows_finished,
            "rows_failed": self.rows_failed, "credits_estimated": self.credits_estimated,
            "credits_charged": self.credits_charged, "exit_code": int(self.exit_code),
            "log_path": str(log_path),
            "account_user_id": account.user_id if account else None,
            "account_team_id": account.team_id if account else None,
            "account_key_id": account.key_id if account else None,
            "rows_unfinished": self.rows_unfinished, "stop_reason": self.stop_reason,
        }
        return {name: row[name] for name in RUNS_SCHEMA}  # a column missing here fails loudly
