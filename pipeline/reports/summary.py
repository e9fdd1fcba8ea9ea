"""What a run (or a plan) came to, as one object: printed for people, JSON for scripts, sent by
--notify, turned into --metrics-file, and returned by `run_batch` / `plan_batch`.

The JSON document is versioned (`version`) and described by summary.schema.json beside this
file. Its words are the ledger's and `status --json`'s: a run's figures sit at the top level
(as in status's `last_run`), the ledger's to date under `ledger` (as at status's top level).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.run.outcome import EXIT_MEANINGS, EXIT_OK

SUMMARY_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("summary.schema.json")
NOTIFY_LIST_LIMIT = 20  # rows listed in a notification: a chat message, not the whole ledger


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


@dataclass
class BatchSummary:
    command: str  # "run" or "plan"
    manifest: str
    exit_code: int
    started_at: datetime
    ended_at: datetime
    run_id: str | None = None
    emulated: bool = False
    stop_reason: str | None = None  # why a run stopped early (exit 3), naming the deadline if it did
    error: str | None = None  # why nothing ran (exit 2, or 3 when the ledger is in use)
    deadline: dict[str, Any] | None = None  # {"given", "at", "stopped_run"}
    actions: dict[str, int] = field(default_factory=dict)  # what the plan set out to do, by action
    rows: dict[str, int] = field(default_factory=dict)  # planned, skipped, submitted, downloaded, ...
    by_status: dict[str, int] = field(default_factory=dict)  # the manifest's rows by ledger status
    credits: dict[str, int] = field(default_factory=dict)  # this run: estimated, charged
    by_model: dict[str, Any] = field(default_factory=dict)  # the manifest's rows by model (by_model.py)
    balance: int | None = None  # the account's credits, when `plan` read them
    requests: dict[str, int] = field(default_factory=dict)  # total, rate_limited (429s)
    failed: list[dict[str, Any]] = field(default_factory=list)
    unfinished: list[dict[str, Any]] = field(default_factory=list)
    ledger: dict[str, Any] = field(default_factory=dict)  # jobs, by_status, credits: to date
    paths: dict[str, str | None] = field(default_factory=dict)  # ledger, log, report, videos
    notification: dict[str, Any] | None = None  # {"delivered", "attempts", "error"} after --notify
    warnings: list[str] = field(default_factory=list)  # a notification or metrics file that failed
    plan: Any = field(default=None, repr=False, compare=False)  # the Plan, for printing; not in JSON
    budget_left: tuple[int, bool] | None = None  # RunResult.budget_left, for the next command; not in JSON
    shard: dict[str, int] | None = None  # with --shard: {"index", "count", "rows" (this shard's), "of"}

    @property
    def exit_meaning(self) -> str:
        return EXIT_MEANINGS.get(self.exit_code, "unknown exit code")

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SUMMARY_VERSION,
            "command": self.command,
            "run_id": self.run_id,
            "manifest": self.manifest,
            "emulated": self.emulated,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "exit_code": self.exit_code,
            "exit_meaning": self.exit_meaning,
            "stop_reason": self.stop_reason,
            "error": self.error,
            "deadline": self.deadline,
            "actions": self.actions,
            "rows": self.rows,
            "by_status": self.by_status,
            "credits": self.credits,
            "by_model": self.by_model,
            "balance": self.balance,
            "requests": self.requests,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "ledger": self.ledger,
            "paths": self.paths,
            "notification": self.notification,
            "warnings": self.warnings,
            "shard": self.shard,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def text(self) -> str:
        """One line for a chat channel (Slack's `text`)."""
        what = f"videobatch {self.command}" + (f" {self.run_id}" if self.run_id else "")
        line = f"{what} on {Path(self.manifest).name}: exit {self.exit_code} ({self.exit_meaning})"
        why = self.stop_reason or self.error
        if why:
            line += f": {why.splitlines()[0]}"
        rows = self.rows
        if self.command == "run" and rows:
            line += (f". {rows.get('downloaded', 0)} downloaded, {rows.get('failed', 0)} failed, "
                     f"{rows.get('unfinished', 0)} unfinished; {self.credits.get('charged', 0)} credits charged")
        return line

    def notification_payload(self) -> dict[str, Any]:
        """A Slack-compatible `text` plus the summary's fields, row lists cut to a few."""
        document = self.to_dict()
        for name in ("failed", "unfinished"):
            rows = document[name]
            document[name] = rows[:NOTIFY_LIST_LIMIT]
            document[f"{name}_not_listed"] = max(0, len(rows) - NOTIFY_LIST_LIMIT)
        return {"text": self.text(), **document}


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


# --- building -------------------------------------------------------------------------------


def ledger_figures(ledger) -> dict[str, Any]:
    """The ledger to date, in `status --json`'s words: jobs, by_status, credits, by_model. `ledger`
    is a Ledger (aggregated as it streams, never held whole), a frame, or None."""
    # Lazy: every command imports this module at start (batch.py), before it needs polars, which
    # this import and store/schema.py (its frame schemas) load: `videobatch --help` starts without it.
    import polars as pl

    from pipeline.store.schema import STATUSES  # lazy: imports polars (above)
    from pipeline.reports.by_model import model_books  # lazy: imports polars (above)

    by_status = {status: 0 for status in STATUSES}
    jobs = estimated = charged = 0
    books = {}
    if ledger is not None:
        columns = ["status", "credits_estimated", "credits_charged", "model"]
        lazy = ledger.scan(columns) if hasattr(ledger, "scan") else ledger.lazy().select(columns)
        counts = lazy.group_by("status").agg(pl.len().alias("n"), pl.col("credits_estimated").sum().alias("e"),
                                             pl.col("credits_charged").sum().alias("c")).collect(engine="streaming")
        for status, n, e, c in counts.iter_rows():
            by_status[status] = n
            jobs, estimated, charged = jobs + n, estimated + int(e or 0), charged + int(c or 0)
        books = model_books(lazy)
    return {"jobs": jobs, "by_status": by_status, "credits": {"estimated": estimated, "charged": charged},
            "by_model": books}


def paths_of(ledger_path: Path, out_dir: Path | None, log_path: Path | None) -> dict[str, str | None]:
    """Absolute: a script reading the summary may run in another folder."""
    from pipeline.store.state import where_of  # lazy: the store loads polars and deltalake

    ledger_path = Path(ledger_path).absolute()
    where = where_of(ledger_path)  # a remote ledger: its URL, its local files in the state folder
    return {"ledger": where.url if where.remote else str(ledger_path),
            "state_dir": str(ledger_path.parent) if where.remote else None,
            "log": str(Path(log_path).absolute()) if log_path else None,
            "report": str(ledger_path.parent / "report.html"),
            "videos": str(Path(out_dir).absolute() / "videos") if out_dir else None}


def _unfinished_reason(status: str | None, job_id: str | None, intent: str | None, stop_reason: str | None) -> str:
    from pipeline.store.schema import COMPLETED, PENDING, PROCESSING, SUBMITTED  # lazy: imports polars (ledger_figures)
    from pipeline.run.transitions import SENT_NO_ANSWER  # lazy: imports polars and aiohttp

    if status in (SUBMITTED, PROCESSING):
        return f"still generating as job {job_id}: the next run follows it"
    if status == COMPLETED:
        return "generated, not downloaded yet: the next run downloads it"
    # A journaled intent (its Idempotency-Key) is durable before its request leaves: the run
    # stopped while the request was out, or an earlier one did. Either way a job may exist.
    said = SENT_NO_ANSWER if status == PENDING and intent else "not submitted"
    return said + (f": {stop_reason}" if stop_reason else "")


def run_summary(result, plan, ledger, *, manifest: Path, emulated: bool, deadline,
                ledger_path: Path, out_dir: Path, log_path: Path) -> BatchSummary:
    """A finished run: the runner's RunResult, its Plan, and the Ledger after it (only the plan's
    rows are read of it, and its totals aggregated).

    Columnar: a rerun of 100,000 finished rows must not pay a Python loop over them."""
    import polars as pl  # lazy: this module loads at every command's start (ledger_figures says why)

    from pipeline.plan.actions import SKIP  # lazy: imports polars
    from pipeline.store.schema import FINAL, PENDING, STATUSES  # lazy: imports polars
    from pipeline.reports.by_model import model_books  # lazy: imports polars

    now = ledger.rows(plan.rows["job_key"], ["status", "attempts", "job_id", "idempotency_key", "credits_charged"]
                      ).select("job_key", pl.col("status").alias("now_status"), pl.col("attempts").alias("now_attempts"),
                               pl.col("job_id").alias("now_job_id"), pl.col("idempotency_key").alias("now_intent"),
                               "credits_charged")
    rows = (plan.rows.select("job_key", "manifest", "row", "action", "model", "credits_estimated")
            .join(now, on="job_key", how="left")
            .with_columns(pl.col("now_status").fill_null(PENDING), pl.col("now_attempts").fill_null(0)))
    by_status = {status: 0 for status in STATUSES}
    for status, n in rows.group_by("now_status").len().iter_rows():
        by_status[status] = n

    def listed(part) -> list[dict[str, Any]]:
        return [{"job_key": r["job_key"], "manifest": r["manifest"], "row": r["row"], "status": r["now_status"],
                 "attempts": r["now_attempts"], "job_id": r["now_job_id"]} for r in part.iter_rows(named=True)]

    reasons = dict(result.failures)
    failed = [{**{k: v for k, v in r.items() if k != "job_id"}, "error": reasons[r["job_key"]] or None}
              for r in listed(rows.filter(pl.col("job_key").is_in(list(reasons))).sort("job_key"))]
    left_by_runner = dict(result.unfinished)
    still_open = rows.filter((pl.col("action") != SKIP) & ~pl.col("now_status").is_in(FINAL))
    intents = dict(zip(still_open["job_key"].to_list(), still_open["now_intent"].to_list()))
    unfinished = [{**r, "reason": left_by_runner.get(r["job_key"])
                   or _unfinished_reason(r["status"], r["job_id"], intents[r["job_key"]], result.stop_reason)}
                  for r in listed(still_open)]
    skipped = plan.counts.get(SKIP, 0)
    stopped_by_deadline = bool(result.stop_reason and result.stop_reason.startswith("deadline"))
    return BatchSummary(
        command="run", run_id=result.run_id, manifest=str(manifest), emulated=emulated,
        started_at=result.started_at, ended_at=result.ended_at, exit_code=result.exit_code,
        stop_reason=result.stop_reason,
        deadline=deadline_fields(deadline, stopped_by_deadline),
        actions=dict(plan.counts),
        rows={"planned": plan.rows.height, "skipped": skipped, "submitted": result.rows_submitted,
              "downloaded": result.rows_finished, "failed": result.rows_failed,
              "unfinished": len(unfinished), "expired": result.rows_expired},
        by_status=by_status,
        credits={"estimated": result.credits_estimated, "charged": result.credits_charged},
        by_model=model_books(rows.rename({"now_status": "status"})),
        requests={"total": result.requests, "rate_limited": result.rate_limited},
        failed=failed, unfinished=unfinished, ledger=ledger_figures(ledger),
        paths=paths_of(ledger_path, out_dir, log_path), plan=plan, budget_left=result.budget_left,
    )


def deadline_fields(deadline, stopped_run: bool = False) -> dict[str, Any] | None:
    if deadline is None:
        return None
    return {"given": deadline.given, "at": deadline.at.isoformat(timespec="seconds"), "stopped_run": stopped_run}


def plan_summary(plan, ledger, *, manifest: Path, emulated: bool, ledger_path: Path, started_at: datetime,
                 exit_code: int = EXIT_OK, balance: int | None = None, error: str | None = None) -> BatchSummary:
    from pipeline.plan.actions import SKIP  # lazy: imports polars, which a command's start must not (ledger_figures)
    from pipeline.reports.by_model import plan_books  # lazy: imports polars (as above)

    skipped = plan.counts.get(SKIP, 0)
    return BatchSummary(
        command="plan", manifest=str(manifest), emulated=emulated, exit_code=exit_code, error=error,
        started_at=started_at, ended_at=datetime.now(timezone.utc), actions=dict(plan.counts),
        rows={"planned": plan.rows.height, "skipped": skipped},
        credits={"estimated": plan.credits_to_spend, "charged": 0}, by_model=plan_books(plan.rows), balance=balance,
        ledger=ledger_figures(ledger), paths=paths_of(ledger_path, None, None), plan=plan,
    )


def refused_summary(command: str, manifest: Path, exit_code: int, error: str, *, started_at: datetime,
                    emulated: bool, ledger_path: Path, out_dir: Path | None, deadline=None,
                    run_id: str | None = None) -> BatchSummary:
    """A run that never started: bad input (exit 2) or a ledger in use (exit 3)."""
    from polars.exceptions import PolarsError  # lazy: polars, which a command's start must not load (ledger_figures)

    from pipeline.store.ledger import Ledger, StorageFault  # lazy: imports polars

    try:
        ledger = Ledger.open(ledger_path, readonly=True) if ledger_path.exists() else None
        figures = ledger_figures(ledger)
    except (StorageFault, PolarsError, OSError):  # a damaged ledger must not hide why the run was refused
        figures = ledger_figures(None)
    return BatchSummary(
        command=command, run_id=run_id, manifest=str(Path(manifest).resolve()), emulated=emulated,
        exit_code=exit_code, error=error, started_at=started_at, ended_at=datetime.now(timezone.utc),
        deadline=deadline_fields(deadline), ledger=figures,
        paths=paths_of(ledger_path, out_dir, None),
    )
