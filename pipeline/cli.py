"""videobatch: turn a manifest of prompts into grok-imagine-video clips, with a ledger of every credit.

Thin on purpose: parse arguments, call the library, print, choose the exit code.
Exit codes: 0 every row downloaded; 1 finished with FAILED or REJECTED rows; 2 bad manifest or
arguments, nothing submitted; 3 stopped early (credits, budget, authentication, interrupt, a
ledger in use): run again to continue.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

EXIT_OK, EXIT_FAILED_ROWS, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 3
REAL_OUT = Path("outputs")
EMULATED_OUT = Path("outputs/emulator")  # emulated runs never share a ledger with real ones
LEDGER_NAME = "ledger.parquet"
DEMO_TIME_SCALE = 0.05  # the emulator's 30-150 s generations take 1.5-7.5 s in a demo


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videobatch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="price a manifest and show what a run would do; submits nothing")
    plan.add_argument("manifest", type=Path)
    plan.add_argument("--ledger", type=Path, help=f"ledger file (default {REAL_OUT / LEDGER_NAME})")
    plan.add_argument("--retry-failed", action="store_true", help="count FAILED rows as new attempts")
    plan.add_argument("--emulate", action="store_true", help=f"use the emulator's ledger ({EMULATED_OUT})")
    plan.add_argument("--all", action="store_true", help="list every row, not just the first 40")

    run = sub.add_parser("run", help="submit, track and download every row the ledger has not finished")
    run.add_argument("manifest", type=Path)
    run.add_argument("--ledger", type=Path, help="ledger file (default <out>/ledger.parquet)")
    run.add_argument("--out", type=Path, help=f"output folder (default {REAL_OUT}, or {EMULATED_OUT} with --emulate)")
    run.add_argument("--rpm", type=_non_negative_int, default=500,
                     help="API requests per minute, all routes together (default 500; 0 = no limit)")
    run.add_argument("--concurrency", type=_positive_int, default=1000,
                     help="jobs in flight at once (default 1000)")
    run.add_argument("--max-credits", type=_non_negative_int,
                     help="stop submitting before this run's spend would pass this many credits")
    run.add_argument("--retries", type=_non_negative_int, default=2,
                     help="new attempts for a FAILED generation (default 2)")
    run.add_argument("--retry-failed", action="store_true",
                     help="give rows that FAILED in earlier runs (or whose result expired) a new attempt")
    run.add_argument("--emulate", action="store_true",
                     help="run against the built-in emulator (no credits spent, own ledger)")
    run.add_argument("--timeout", type=float, default=30.0,
                     help="seconds to wait for an API answer before retrying (default 30)")
    run.add_argument("--webhook-listen", type=_host_port, metavar="HOST:PORT",
                     help="receive Apiframe's signed webhooks here (hints; polling stays on)")
    run.add_argument("--webhook-url", metavar="URL",
                     help="the public URL that reaches --webhook-listen; sent with every submit")
    run.add_argument("--progress-interval", type=float, default=10.0,
                     help="seconds between progress lines when not on a terminal (default 10)")
    run.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    run.add_argument("--rate-period", type=float, default=60.0, help=argparse.SUPPRESS)
    run.add_argument("--checkpoint-every", type=float, default=30.0, help=argparse.SUPPRESS)
    run.add_argument("--emulator-time-scale", type=float, default=DEMO_TIME_SCALE, help=argparse.SUPPRESS)
    run.add_argument("--emulator-credits", type=int, default=1_000_000, help=argparse.SUPPRESS)

    status = sub.add_parser("status", help="totals, last run and failures, from the ledger alone")
    status.add_argument("--ledger", type=Path, default=REAL_OUT / LEDGER_NAME)
    status.add_argument("--json", action="store_true", help="print JSON for scripts")

    report = sub.add_parser("report", help="write the HTML gallery of a ledger")
    report.add_argument("--ledger", type=Path, default=REAL_OUT / LEDGER_NAME)
    report.add_argument("--html", type=Path, help="page to write (default report.html beside the ledger)")
    report.add_argument("--run", default="last", metavar="ID|last|all",
                        help="whose rows: a run id, the last run (default), or all runs")
    report.add_argument("--manifest", type=Path, help="only rows that came from this manifest")
    report.add_argument("--pages", type=_positive_int, default=20, metavar="N",
                        help="pages of 500 cards to write at most (default 20); the page says what it leaves out")

    from pipeline.emulator import cli as emulator_cli

    emulator_cli.add_arguments(sub.add_parser("emulator", help="serve the local Apiframe emulator"))
    return parser


def _error(message: str) -> None:
    print(f"videobatch: {message}", file=sys.stderr, flush=True)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _load_rows(manifest: Path):
    from pipeline.manifest import ManifestError, load_manifest

    try:
        return load_manifest(manifest)
    except ManifestError as exc:
        _error(f"the manifest has problems; nothing was submitted\n{exc}")
        return None


# --- plan -----------------------------------------------------------------------------------


def print_plan(plan, ledger_path: Path, *, show_all: bool) -> None:
    from pipeline import plan as p

    rows = plan.rows
    c = plan.counts
    print(f"plan for {plan.manifest} (ledger {ledger_path})")
    shown = rows if show_all else rows.head(40)
    print(f"  {'row':>5}  {'job_key':<44} {'dur':>4} {'aspect':>6} {'credits':>7}  action")
    for r in shown.iter_rows(named=True):
        print(f"  {r['row']:>5}  {r['job_key'][:44]:<44} {r['duration']:>3}s {r['aspect_ratio']:>6} "
              f"{r['credits_estimated']:>7}  {r['action']}")
    if rows.height > shown.height:
        print(f"  ... {rows.height - shown.height} more rows (--all lists them)")
    print(f"  jobs in manifest: {rows.height}, {plan.credits_total} credits for all of them")
    print(f"  already downloaded: {c[p.SKIP]}; failed and left alone: {c[p.LEAVE_FAILED]}")
    print(f"  to track: {c[p.TRACK]}; to download again: {c[p.DOWNLOAD]}")
    print(f"  to submit: {c[p.SUBMIT]} new, {c[p.RESUME]} resumed with their original key, "
          f"{c[p.RETRY]} retried, {c[p.NEW_VERSION]} new versions of edited rows")
    print(f"  a run would spend at most {plan.credits_to_spend} credits")
    if plan.orphans:
        print(f"  note: the ledger has {plan.orphans} rows of this manifest that it no longer lists "
              "(edited or removed); they are kept, not touched")


async def _balance(config) -> int:
    from pipeline.client import ApiClient

    async with ApiClient(config.base_url, config.api_key) as client:
        me = await client.me()
    return int((me.get("team") or {}).get("credits") or 0)


def cmd_plan(args: argparse.Namespace) -> int:
    from pipeline.config import load_api_config
    from pipeline.client import ApiError
    from pipeline.ledger import Ledger
    from pipeline.plan import make_plan

    rows = _load_rows(args.manifest)
    if rows is None:
        return EXIT_BAD_INPUT
    ledger_path = args.ledger or ((EMULATED_OUT if args.emulate else REAL_OUT) / LEDGER_NAME)
    plan = make_plan(rows, Ledger.open(ledger_path, readonly=True), retry_failed=args.retry_failed,
                     manifest=Path(args.manifest).resolve())
    print_plan(plan, ledger_path, show_all=args.all)
    config = load_api_config()
    if config.api_key and not args.emulate:
        try:
            balance = asyncio.run(_balance(config))
        except ApiError as exc:
            _error(f"could not read the balance: {exc}")
            return EXIT_STOPPED
        verdict = "covers the plan" if balance >= plan.credits_to_spend else (
            f"SHORT by {plan.credits_to_spend - balance}: top up, or run with --max-credits {balance}")
        print(f"  balance: {balance} credits ({verdict})")
    elif not args.emulate:
        print("  balance: unknown (no APIFRAME_API_KEY set)")
    return EXIT_OK


# --- run ------------------------------------------------------------------------------------


class Interrupts:
    """SIGINT/SIGTERM for the life of a run: the first asks the runner to stop cleanly, a second
    (or one outside the async part) quits at once. Quitting at once is safe: every submit's intent
    and job_id are already in the journal, and the Parquet rewrite is atomic."""

    def __init__(self) -> None:
        self.count = 0
        self.runner = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)

    def __call__(self, sig: int, frame) -> None:
        self.count += 1
        name = signal.Signals(sig).name
        if self.count > 1 or self.runner is None or self.loop is None:
            print(f"\n{name}: exiting now; run the same command again to continue", flush=True)
            os._exit(EXIT_STOPPED)
        self.loop.call_soon_threadsafe(self.runner.interrupt, name)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_api_config
    from pipeline.ledger import Ledger, LedgerError, LedgerLocked
    from pipeline.plan import make_plan

    config = load_api_config()
    if bool(args.webhook_listen) != bool(args.webhook_url):
        _error("--webhook-listen and --webhook-url go together: the API must be told where to post")
        return EXIT_BAD_INPUT
    if not args.emulate and not config.api_key:
        _error("no API key: set APIFRAME_API_KEY in the environment or in .env, "
               "or add --emulate to try the batch on the built-in emulator (no credits spent)")
        return EXIT_BAD_INPUT
    out_dir = args.out or (EMULATED_OUT if args.emulate else REAL_OUT)
    ledger_path = args.ledger or out_dir / LEDGER_NAME
    rows = _load_rows(args.manifest)
    if rows is None:
        return EXIT_BAD_INPUT
    run_id = new_run_id()
    interrupts = Interrupts()
    interrupts.install()
    try:
        ledger = Ledger.open(ledger_path, run_id=run_id)
    except LedgerLocked as exc:
        _error(str(exc))
        return EXIT_STOPPED
    except LedgerError as exc:
        _error(str(exc))
        return EXIT_STOPPED
    with ledger:
        manifest = Path(args.manifest).resolve()
        plan = make_plan(rows, ledger, retry_failed=args.retry_failed, manifest=manifest)
        log_path = ledger_path.parent / "logs" / f"{run_id}.jsonl"
        mode = "emulator" if args.emulate else config.base_url
        print(f"run {run_id} on {mode}: {plan.rows.height} jobs, {plan.counts['skip']} already done, "
              f"up to {plan.credits_to_spend} credits to spend", flush=True)
        result = asyncio.run(_run_async(args, config, ledger, plan, out_dir, log_path, interrupts))
        ledger.append_run({
            "run_id": run_id, "manifest": str(manifest), "emulated": bool(args.emulate),
            "started_at": result.started_at, "ended_at": result.ended_at,
            "rows_planned": plan.rows.height, "rows_skipped": plan.counts["skip"],
            "rows_submitted": result.rows_submitted, "rows_finished": result.rows_finished,
            "rows_failed": result.rows_failed, "credits_estimated": result.credits_estimated,
            "credits_charged": result.credits_charged, "exit_code": result.exit_code,
            "log_path": str(log_path),
        })
        total = ledger.credits_total()
    print_summary(result, plan, ledger_path, out_dir, log_path, total)
    return result.exit_code


async def _run_async(args, config, ledger, plan, out_dir: Path, log_path: Path, interrupts: Interrupts):
    from contextlib import AsyncExitStack

    from pipeline.client import ApiClient, RequestGate
    from pipeline.runlog import RunLog
    from pipeline.runner import Runner, RunOptions

    options = RunOptions(
        out_dir=out_dir, rpm=args.rpm or None, rate_period=args.rate_period,
        concurrency=args.concurrency, max_credits=args.max_credits, retries=args.retries,
        poll_min_interval=args.poll_interval, checkpoint_every=args.checkpoint_every,
        webhook_url=args.webhook_url, webhook_listen=args.webhook_listen,
    )
    log = RunLog(log_path)
    async with AsyncExitStack() as stack:
        base_url, api_key = config.base_url, config.api_key
        if args.emulate:
            from pipeline.emulator import Emulator, EmulatorConfig

            api_key = "afk_emulated_" + secrets.token_hex(8)  # a throwaway key, never the user's
            emu = await stack.enter_async_context(Emulator(EmulatorConfig(
                api_key=api_key, credits=args.emulator_credits, time_scale=args.emulator_time_scale,
                rpm=0)))
            base_url = emu.base_url
        client = ApiClient(
            base_url, api_key, gate=RequestGate(options.rpm, options.rate_period), timeout=args.timeout,
            on_retry=lambda what, reason, delay: log.event("retry", what=what, reason=reason,
                                                          delay=round(delay, 3)),
        )
        await stack.enter_async_context(client)
        runner = Runner(ledger, client, plan, options, log, progress_interval=args.progress_interval)
        client.should_stop = lambda: runner.hard_stopped
        interrupts.runner, interrupts.loop = runner, asyncio.get_running_loop()
        try:
            result = await runner.run()
        finally:
            interrupts.runner = None
            # What the run cost in requests and durable writes: for operators, and for `make bench`.
            log.event("run_end", host=socket.gethostname(), requests=client.gate.requests,
                      rate_limited=client.rate_limited, tracking_requests=runner.tracker.requests,
                      missed_by_lists=runner.tracker.missed_by_lists,
                      verify_cpu_seconds=round(runner.verify_cpu_s, 3), ledger=dict(ledger.stats))
            log.close()
    return result


def print_summary(result, plan, ledger_path: Path, out_dir: Path, log_path: Path, total: int) -> None:
    print()
    print(f"run {result.run_id} ended with exit code {result.exit_code}"
          + (f": {result.stop_reason}" if result.stop_reason else ""))
    print(f"  rows: {result.rows_finished} downloaded now, {plan.counts['skip']} skipped (already done), "
          f"{result.rows_failed} failed or rejected, {result.rows_unfinished} unfinished")
    if result.rows_expired:
        print(f"  {result.rows_expired} results expired before download: "
              "run again with --retry-failed to generate them again")
    print(f"  credits: {result.credits_estimated} estimated and {result.credits_charged} charged this run; "
          f"{total} charged in this ledger to date")
    print(f"  requests: {result.requests} ({result.rate_limited} rate-limited)")
    for job_key, reason in result.failures[:20]:
        print(f"  FAILED {job_key}: {reason}")
    if len(result.failures) > 20:
        print(f"  ... {len(result.failures) - 20} more failures: videobatch status --ledger {ledger_path}")
    print(f"  videos: {out_dir / 'videos'}")
    print(f"  ledger: {ledger_path}   log: {log_path}")
    print(f"  report: videobatch report --ledger {ledger_path}  (writes {ledger_path.parent / 'report.html'})")
    if result.exit_code == EXIT_STOPPED:
        print("  stopped early: run the same command again to continue where it stopped")


# --- status and report ----------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.ledger import Ledger, read_runs
    from pipeline.status import STATUS_COLUMNS, format_status, summarize

    if not args.ledger.exists():
        _error(f"no ledger at {args.ledger}: run a batch first, or pass --ledger PATH")
        return EXIT_BAD_INPUT
    ledger = Ledger.open(args.ledger, readonly=True)
    summary = summarize(ledger.scan(STATUS_COLUMNS), read_runs(args.ledger))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_status(summary))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report
    from pipeline.scope import ScopeError

    if not args.ledger.exists():
        _error(f"no ledger at {args.ledger}: run a batch first, or pass --ledger PATH")
        return EXIT_BAD_INPUT
    try:
        pages = write_report(args.ledger, args.html, run=args.run, manifest=args.manifest, max_pages=args.pages)
    except ScopeError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    print(f"report: {pages[0]}")
    if len(pages) > 1:
        print(f"  and {len(pages) - 1} more pages: {pages[1].name} ... {pages[-1].name}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "emulator":
        from pipeline.emulator import cli as emulator_cli

        return emulator_cli.run(args)
    handler = {"plan": cmd_plan, "run": cmd_run, "status": cmd_status, "report": cmd_report}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
