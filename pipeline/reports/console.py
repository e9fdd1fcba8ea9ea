"""Formats what `videobatch plan` and `videobatch run` print for people: a plan, a run's start and end.

Decides nothing and prints nothing: each function turns a Plan or a BatchSummary into text, and
pipeline/cli.py prints it. The words are the ones scripts and people already read; --json and
--summary-json are summary.py's.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.models import DEFAULT_MODEL
from pipeline.models.pricing import estimate_is_bound
from pipeline.plan import actions as p
from pipeline.plan.reviewed import LABELS
from pipeline.reports.by_model import model_lines, only_grok, plan_books
from pipeline.reports.summary import BatchSummary
from pipeline.run.outcome import EXIT_BAD_INPUT, EXIT_UNREACHABLE
from pipeline.store.archive import is_archived_col

PLAN_ROWS_SHOWN = 40  # rows a plan lists without --all
SUMMARY_ROWS_SHOWN = 20  # failed or unfinished rows a run's end lists


def _credits(r: dict) -> str:
    """A row's estimate: grok's documented price as it is, a catalog price as the bound it is."""
    estimate = r["credits_estimated"]
    if estimate is None:
        return "unpriced"
    return f"up to {estimate}" if estimate_is_bound(r["model"]) else str(estimate)


def _plan_row(r: dict, with_model: bool) -> str:
    review = f" ({LABELS[r['from_review']]})" if r.get("from_review") else ""
    # "-": a model that takes no duration or aspect ratio (hailuo, midjourney-video...).
    duration = "-" if r["duration"] is None else f"{r['duration']}s"
    model = f" {r['model']:<24}" if with_model else ""
    return (f"  {r['row']:>5}  {r['job_key'][:44]:<44}{model} {duration:>4} {r['aspect_ratio'] or '-':>6} "
            f"{_credits(r):>9}  {r['action']}" + review)


def _by_model(books: dict) -> list[str]:
    """A line a model when more than grok-imagine-video is in play; none otherwise (as before models)."""
    if only_grok(books):
        return []
    return ['  by model (charged beside estimated; "up to": the catalog\'s upper bound):', *model_lines(books, "    ")]


def format_plan(plan: p.Plan, ledger_path: Path | str, *, show_all: bool) -> str:
    """The plan's rows (the first 40 unless `show_all`) and what a run would do and spend."""
    rows = plan.rows
    c = plan.counts
    shown = rows if show_all else rows.head(PLAN_ROWS_SHOWN)
    with_model = set(rows["model"].unique()) != {DEFAULT_MODEL}  # a grok-only plan reads as before
    lines = [f"plan for {plan.manifest} (ledger {ledger_path})",
             f"  {'row':>5}  {'job_key':<44}{' ' + 'model'.ljust(24) if with_model else ''} {'dur':>4} {'aspect':>6} "
             f"{'credits':>9}  action"]
    lines += [_plan_row(r, with_model) for r in shown.iter_rows(named=True)]
    if rows.height > shown.height:
        lines.append(f"  ... {rows.height - shown.height} more rows (--all lists them)")
    lines.append(f"  jobs in manifest: {rows.height}, {'up to ' * with_model}{plan.credits_total} credits for all of them")
    versions = rows.select(is_archived_col()).to_series().sum()
    if versions:  # pipeline.plan.actions.versions_to_follow
        lines.append(f"  of them, earlier versions of edited rows whose job is still followed: {versions}")
    lines.append(f"  already downloaded: {c[p.SKIP]}; failed and left alone: {c[p.LEAVE_FAILED]}")
    lines.append(f"  to track: {c[p.TRACK]}; to download again: {c[p.DOWNLOAD]}")
    lines.append(f"  to submit: {c[p.SUBMIT]} new, {c[p.RESUME]} resumed with their original key, "
                 f"{c[p.RETRY]} retried, {c[p.NEW_VERSION]} new versions of edited rows")
    if c[p.REGENERATE] or rows["from_review"].is_not_null().any():
        lines.append(f"  from review decisions, not the manifest: {c[p.REGENERATE]} to regenerate "
                     f"({rows.filter(rows['action'] == p.REGENERATE)['credits_estimated'].sum()} credits), "
                     f"{rows['from_review'].str.contains('edited').sum()} with a prompt edited in review")
    lines += _by_model(plan_books(rows))
    unpriced = rows.filter(rows["credits_estimated"].is_null() & rows["action"].is_in(list(p.SPENDING))).height
    if unpriced:  # the catalog could not be read, or does not list their model: said below
        lines.append(f"  a run would spend at most {plan.credits_to_spend} credits on the priced rows; "
                     f"{unpriced} rows have no price, and a run refuses them")
    else:
        lines.append(f"  a run would spend at most {plan.credits_to_spend} credits"
                     + (" (catalog prices read as upper bounds)" if with_model else ""))
    budget = plan.budget
    if budget is not None and budget.left:  # plan/budget.py words it; the run ends with the same names
        lines.append(f"  {budget.line(after_run=False)}")
    if plan.orphans:
        lines.append(f"  note: the ledger has {plan.orphans} rows of this manifest that it no longer lists "
                     "(edited or removed); they are kept, not touched")
    return "\n".join(lines)


def format_balance(balance: int, credits_to_spend: int) -> str:
    """The account's balance against what the plan would spend."""
    verdict = "covers the plan" if balance >= credits_to_spend else (
        f"SHORT by {credits_to_spend - balance}: top up, or run with --max-credits {balance}")
    return f"  balance: {balance} credits ({verdict})"


def format_start(run_id: str, plan: p.Plan, where: str) -> str:
    """The line a run prints once its plan is made, before its first request."""
    return (f"run {run_id} on {where}: {plan.rows.height} jobs, {plan.counts['skip']} already done, "
            f"up to {plan.credits_to_spend} credits to spend")


def _ledger_flags(paths: dict) -> str:
    """--ledger as the summary names it, with a remote ledger's state folder."""
    state = f" --state-dir {paths['state_dir']}" if paths.get("state_dir") else ""
    return f"--ledger {paths['ledger']}{state}"


def _listed(summary: BatchSummary) -> list[str]:
    """The first failed and unfinished rows, and where to read the rest."""
    lines = [f"  FAILED {row['job_key']}: {row['error'] or ''}" for row in summary.failed[:SUMMARY_ROWS_SHOWN]]
    if len(summary.failed) > SUMMARY_ROWS_SHOWN:
        lines.append(f"  ... {len(summary.failed) - SUMMARY_ROWS_SHOWN} more failures: "
                     f"videobatch status {_ledger_flags(summary.paths)}")
    if summary.exit_code in (EXIT_BAD_INPUT, EXIT_UNREACHABLE):
        return lines  # nothing was submitted: every row waits for the next run, for the one reason said above
    lines += [f"  UNFINISHED {row['job_key']}: {row['reason']}" for row in summary.unfinished[:SUMMARY_ROWS_SHOWN]]
    if len(summary.unfinished) > SUMMARY_ROWS_SHOWN:
        lines.append(f"  ... {len(summary.unfinished) - SUMMARY_ROWS_SHOWN} more unfinished rows: "
                     "--summary-json lists them all")
    return lines


def format_summary(summary: BatchSummary) -> str:
    """A run's end: its exit code and why, rows, credits, requests, failures, and where things are."""
    rows, credits, paths = summary.rows, summary.credits, summary.paths
    lines = ["", f"run {summary.run_id} ended with exit code {summary.exit_code}"
             + (f": {summary.stop_reason}" if summary.stop_reason else ""),
             f"  rows: {rows['downloaded']} downloaded now, {rows['skipped']} skipped (already done), "
             f"{rows['failed']} failed or rejected, {rows['unfinished']} unfinished"]
    if rows["expired"]:
        lines.append(f"  {rows['expired']} results expired before download: "
                     "run again with --retry-failed to generate them again")
    lines.append(f"  credits: {credits['estimated']} estimated and {credits['charged']} charged this run; "
                 f"{summary.ledger['credits']['charged']} charged in this ledger to date")
    lines += _by_model(summary.by_model)
    lines.append(f"  requests: {summary.requests['total']} ({summary.requests['rate_limited']} rate-limited)")
    lines += _listed(summary)
    lines.append(f"  videos: {paths['videos']}")
    lines.append(f"  ledger: {paths['ledger']}   log: {paths['log']}")
    lines.append(f"  report: videobatch report {_ledger_flags(paths)}  (writes {paths['report']})")
    return "\n".join(lines)  # the next command follows: pipeline/reports/next_step.py
