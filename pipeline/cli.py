"""videobatch: turn a manifest of prompts into grok-imagine-video clips, with a ledger of every credit.

Exit codes: 0 every row downloaded; 1 finished with FAILED or REJECTED rows; 2 bad manifest,
arguments or key, nothing submitted; 3 stopped early (credits, budget, deadline, interrupt, a
ledger in use): run again to continue; 4 the API could not be reached, nothing submitted.
Each run ends with the one next command ("next: ...").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import difflib
import functools
import getpass
import json
import os
import signal
import sys
import threading
from importlib import metadata
from pathlib import Path

from pipeline import __version__
from pipeline.config import (DEMO_TIME_SCALE, EMULATED_OUT, LEDGER_NAME, REAL_OUT, RECONCILE_PAGES,
                             load_api_config)
from pipeline.reports import next_step
from pipeline.run.outcome import EXIT_BAD_INPUT, EXIT_FAILED_ROWS, EXIT_OK, EXIT_STOPPED  # noqa: F401
from pipeline.store.atomic import write_text_atomic
from pipeline.store.faults import StorageFault

# Imported where they are used, not here: whatever loads polars, aiohttp or PyAV (the ledger, the
# reports, the review server, the emulator). `videobatch --help` stays quick, and `run` has its
# signal handlers in place (main) before the slow imports begin.


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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


TAKE_OVER_HELP = ("let this manifest take over the ids another manifest's rows hold in the ledger (it "
                  "replaces that manifest, moved or renamed): those rows are kept as earlier versions")


def installed_version() -> str:
    """The installed package's version; a checkout run without installing has only the source's."""
    try:
        return metadata.version("videobatch")
    except metadata.PackageNotFoundError:
        return __version__


class _Version(argparse.Action):
    """--version, read only when asked: the package metadata lookup scans sys.path."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"videobatch {installed_version()}")  # to standard output, as git, uv and pip do
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    # Lazy: the emulator loads aiohttp and PyAV, after main() has put the run's signal handlers in place.
    from pipeline.emulator import cli as emulator_cli

    parser = argparse.ArgumentParser(
        prog="videobatch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="`videobatch COMMAND --help` lists a command's options.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in (_add_plan, _add_run, _add_status, _add_report, _add_review, _add_export, _add_reconcile):
        add_command(sub)
    emulator_cli.add_arguments(sub.add_parser("emulator", help="serve the local Apiframe emulator"))
    return parser


def _add_plan(sub) -> None:
    plan = sub.add_parser("plan", help="price a manifest and show what a run would do; submits nothing")
    plan.add_argument("manifest", type=Path)
    plan.add_argument("--ledger", metavar="PATH_OR_URL", help=f"the ledger: a folder (default {REAL_OUT / LEDGER_NAME}) "
                                                             "or s3://, gs://, az:// URL (docs/storage.md)")
    _state_dir_argument(plan)
    plan.add_argument("--retry-failed", action="store_true", help="count FAILED rows as new attempts")
    plan.add_argument("--emulate", action="store_true", help=f"use the emulator's ledger ({EMULATED_OUT})")
    plan.add_argument("--all", action="store_true", help="list every row, not just the first 40")
    plan.add_argument("--max-credits", type=_non_negative_int,
                      help="price the run with this cap: the rows that fit, and the rows it would leave out")
    _refs_root_argument(plan)
    plan.add_argument("--take-over", action="store_true", help=TAKE_OVER_HELP)
    _shard_argument(plan)


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="submit, track and download every row the ledger has not finished")
    run.add_argument("manifest", type=Path)
    run.add_argument("--ledger", metavar="PATH_OR_URL",
                     help="the ledger: a folder (default <out>/ledger.parquet) or s3://, gs://, az:// URL (docs/storage.md)")
    _state_dir_argument(run)
    run.add_argument("--out", help=f"output folder or store URL s3://BUCKET/PREFIX (default {REAL_OUT}, "
                     f"or {EMULATED_OUT} with --emulate)")
    run.add_argument("--rpm", type=_non_negative_int, default=500,
                     help="API requests per minute, all routes together (default 500; 0 = no limit)")
    run.add_argument("--concurrency", type=_positive_int, default=1000,
                     help="jobs in flight at once (default 1000)")
    run.add_argument("--max-credits", type=_non_negative_int,
                     help="spend at most this many credits: the rows that fit, in manifest order, are made; "
                          "the rest are named at the end")
    run.add_argument("--retries", type=_non_negative_int, default=2,
                     help="new attempts for a FAILED generation (default 2)")
    run.add_argument("--retry-failed", action="store_true",
                     help="give rows that FAILED in earlier runs (or whose result expired) a new attempt")
    run.add_argument("--take-over", action="store_true", help=TAKE_OVER_HELP)
    run.add_argument("--emulate", action="store_true",
                     help="run against the built-in emulator (no credits spent, own ledger)")
    run.add_argument("--timeout", type=float, default=30.0,
                     help="seconds to wait for an API answer before retrying (default 30)")
    run.add_argument("--job-timeout", type=_positive_float, default=1800.0, metavar="SECONDS",
                     help="leave a job still generating this long after its submit for the next run "
                          "(default 1800); the run then ends with exit code 3")
    run.add_argument("--webhook-listen", type=_host_port, metavar="HOST:PORT",
                     help="receive Apiframe's signed webhooks here (hints; polling stays on)")
    run.add_argument("--webhook-url", metavar="URL",
                     help="the public URL that reaches --webhook-listen; sent with every submit")
    _shard_argument(run)
    _run_report_arguments(run)
    _run_test_arguments(run)


def _run_report_arguments(run: argparse.ArgumentParser) -> None:
    """Where a run reports: progress, deadline, summary, notice, metrics (and where references lie)."""
    run.add_argument("--progress-interval", type=float, default=10.0,
                     help="seconds between progress lines when not on a terminal (default 10)")
    run.add_argument("--deadline", metavar="TIME",
                     help="stop by then: no job is started that could not finish before it, and at it the "
                          "run stops (exit 3; the next run continues). 07:00 (local), 6h, 90m, or an ISO timestamp")
    run.add_argument("--summary-json", metavar="PATH",
                     help="write the run's summary as JSON to PATH (- for standard output; the usual "
                          "text then goes to standard error)")
    run.add_argument("--notify", metavar="URL",
                     help="POST a short JSON message (Slack-compatible `text` plus the summary) to URL when "
                          "the run ends, whatever the outcome; never printed, never changes the exit code")
    run.add_argument("--metrics-file", type=Path, metavar="PATH",
                     help="write Prometheus metrics of the run to PATH (atomically) for node_exporter's "
                          "textfile collector: last run, last success, credits, rows, requests")
    _refs_root_argument(run)


def _run_test_arguments(run: argparse.ArgumentParser) -> None:
    """Tuning for tests and demos, hidden from --help; and the emulator's dialects."""
    # Lazy: the emulator's dialects load aiohttp and PyAV, after main()'s signal handlers are in place.
    from pipeline.emulator.dialects import DIALECTS, emulator_dialects

    run.add_argument("--notify-retry-delay", type=float, default=1.0, help=argparse.SUPPRESS)
    run.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    run.add_argument("--rate-period", type=float, default=60.0, help=argparse.SUPPRESS)
    run.add_argument("--checkpoint-every", type=float, default=30.0, help=argparse.SUPPRESS)
    run.add_argument("--emulator-time-scale", type=float, default=DEMO_TIME_SCALE, help=argparse.SUPPRESS)
    run.add_argument("--emulator-credits", type=int, default=1_000_000, help=argparse.SUPPRESS)
    run.add_argument("--dialect", type=emulator_dialects, default=(), metavar="NAME[,NAME...]",
                     help="with --emulate: make the emulator answer like a variant of the real API "
                          f"({', '.join(DIALECTS)}, or all)")


def _add_status(sub) -> None:
    status = sub.add_parser("status", help="totals, last run and failures, from the ledger alone")
    _ledger_arguments(status)
    status.add_argument("--json", action="store_true", help="print JSON for scripts")


def _add_report(sub) -> None:
    report = sub.add_parser("report", help="write the HTML gallery of a ledger")
    _ledger_arguments(report)
    report.add_argument("--html", type=Path, help="page to write (default report.html beside the ledger)")
    report.add_argument("--run", default="last", metavar="ID|last|all",
                        help="whose rows: a run id, the last run (default), or all runs")
    report.add_argument("--manifest", type=Path, help="only rows that came from this manifest")
    report.add_argument("--pages", type=_positive_int, default=20, metavar="N",
                        help="pages of 500 cards to write at most (default 20); the page says what it leaves out")


def _add_review(sub) -> None:
    review = sub.add_parser("review", help="a local page to approve, reject or regenerate each clip")
    _scope_arguments(review)
    review.add_argument("--port", type=_non_negative_int, default=8800, help="port to serve on (default 8800; 0 = any free)")
    review.add_argument("--host", help="serve on this address instead of 127.0.0.1 (e.g. 0.0.0.0 for the team); "
                                       "then the page needs the token printed on the console")
    review.add_argument("--reviewer", help="name recorded with each decision (default: your login name)")
    review.add_argument("--out", type=Path, help="the run's output folder, if not the ledger's folder (videos are "
                                                 "served only from inside it)")


def _add_export(sub) -> None:
    export = sub.add_parser("export", help="copy (or hard-link) the approved clips, with a CSV and JSON sidecar")
    export.add_argument("--approved", type=Path, required=True, metavar="DEST", help="folder to put the approved clips in")
    _scope_arguments(export)


def _add_reconcile(sub) -> None:
    reconcile = sub.add_parser("reconcile", help="match the API's jobs to a manifest's rows and audit the ledger "
                                                 "against them; sends no paid request")
    reconcile.add_argument("manifest", type=Path)
    reconcile.add_argument("--ledger", metavar="PATH_OR_URL", help=f"the ledger (default {REAL_OUT / LEDGER_NAME}, "
                                                                   f"or {EMULATED_OUT / LEDGER_NAME} with --emulate)")
    _state_dir_argument(reconcile)
    reconcile.add_argument("--adopt", action="store_true",
                           help="take the matching jobs the ledger does not know into it, so the next run "
                                "downloads them instead of paying again")
    reconcile.add_argument("--emulate", action="store_true", help="the emulated ledger, against the built-in emulator's jobs")
    reconcile.add_argument("--max-pages", type=_positive_int, default=RECONCILE_PAGES, metavar="N",
                           help=f"job-list pages of 100 to read at most (default {RECONCILE_PAGES})")
    reconcile.add_argument("--rpm", type=_non_negative_int, default=500,
                           help="API requests per minute (default 500; 0 = no limit)")
    reconcile.add_argument("--json", action="store_true", help="print JSON for scripts")
    _refs_root_argument(reconcile)  # the manifest loads as `run` loads it, or its rows could not be matched


def _shard_argument(parser: argparse.ArgumentParser) -> None:
    # Checked by batch (plan/shard.py), so a bad value is one line naming the flag, as other bad input.
    parser.add_argument("--shard", metavar="I/N",
                        help="this worker's share of the manifest: the rows whose job_key hashes to I of N "
                             "(N workers, each with its own --shard 1/N ... N/N, split one manifest)")


def _refs_root_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--refs-root", type=Path, metavar="DIR",
                        help="local reference images may also lie under DIR (else only under the manifest's folder)")


def _ledger_arguments(parser: argparse.ArgumentParser) -> None:
    """The ledger a reading command reads: --ledger, else the emulator's with --emulate, else the default."""
    parser.add_argument("--ledger", metavar="PATH_OR_URL", help=f"the ledger (default {REAL_OUT / LEDGER_NAME}, "
                                                                f"or {EMULATED_OUT / LEDGER_NAME} with --emulate; "
                                                                "or an s3://, gs://, az:// URL)")
    _state_dir_argument(parser)
    parser.add_argument("--emulate", action="store_true",
                        help="the emulator's ledger, the one `run --emulate` and `make demo` write")


def _state_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="a remote ledger's local journal, lock and logs (default: one folder per ledger URL "
                             "under $XDG_STATE_HOME/videobatch, else ~/.local/state/videobatch)")


def _scope_arguments(parser: argparse.ArgumentParser) -> None:
    _ledger_arguments(parser)
    parser.add_argument("--run", default="last", metavar="ID|last|all",
                        help="the rows a run last changed: a run id, last (default) or all")
    parser.add_argument("--manifest", type=Path, help="only the rows of this manifest")


class ReaderGone:
    """A standard stream whose reader may leave early (`videobatch run ... | head -1`): the run
    must still finish and be recorded, so a broken pipe (EPIPE) never raises. Once the reader is
    gone the descriptor is pointed at /dev/null, and what is printed after goes nowhere."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        with contextlib.suppress(BrokenPipeError):
            self._stream.flush()  # what the buffer still holds goes to /dev/null, not to a second EPIPE at exit

    def __getattr__(self, name: str):  # isatty, fileno, encoding ...: the stream's own
        return getattr(self._stream, name)


def _error(message: str) -> None:
    print(f"videobatch: {message}", file=sys.stderr, flush=True)


def _reads_ledger(command):
    """For the commands that read an existing ledger (status, report, review, export): no ledger at
    --ledger, a --run or --manifest it has no run of (ScopeError), or a damaged decisions file is
    bad input, said in one line, with exit code 2; a damaged or unreadable ledger (StorageFault)
    is said in one line too, with exit code 3."""

    @functools.wraps(command)
    def checked(args: argparse.Namespace) -> int:
        # Lazy, as every import of the ledger: polars, which --help and the parser do without.
        from pipeline.store import ledger, scope, verdicts

        args.ledger_given = args.ledger or (EMULATED_OUT if args.emulate else REAL_OUT) / LEDGER_NAME
        try:
            args.ledger = ledger.anchor(args.ledger_given, args.state_dir)  # a remote ledger: its state folder
            found = ledger.exists(args.ledger)
        except (ValueError, StorageFault, OSError) as exc:  # a URL we cannot use, or a store we cannot reach
            _error(str(exc))
            return EXIT_BAD_INPUT if isinstance(exc, ValueError) else EXIT_STOPPED
        if not found:
            _error(_no_ledger(args))
            return EXIT_BAD_INPUT
        try:
            with ledger.reading_ledger(args.ledger):
                return command(args)
        except (scope.ScopeError, verdicts.VerdictsCorrupt) as exc:
            _error(str(exc))
            return EXIT_BAD_INPUT
        except StorageFault as exc:
            _error(str(exc))
            return EXIT_STOPPED

    return checked


LEDGERS_SHOWN = 5  # other ledgers a missing ledger's error names at most


def _no_ledger(args: argparse.Namespace) -> str:
    """A missing ledger, the ledgers that do exist here, and the one command to read one of them."""
    defaults = [REAL_OUT / LEDGER_NAME, EMULATED_OUT / LEDGER_NAME]
    found = [path for path in defaults if path.exists()]
    found += sorted(path for path in REAL_OUT.glob(f"*/{LEDGER_NAME}") if path not in defaults)
    said = f"no ledger at {args.ledger_given}"
    if not found:
        return (f"{said} (nor the emulator's at {EMULATED_OUT / LEDGER_NAME}): run a batch first "
                "(videobatch run MANIFEST, or videobatch run MANIFEST --emulate to try one), or pass --ledger PATH")
    options = [next_step.ledger_option(path, emulated=False) for path in found[:LEDGERS_SHOWN]]
    named = "; ".join(f"{path} ({option or 'the default'})" for path, option in zip(found, options))
    bare = [word for word in args.argv if word != "--emulate"]
    if "--ledger" in args.argv or any(word.startswith("--ledger=") for word in args.argv):
        return f"{said}: the ledgers here are {named}; or pass the --ledger PATH of another"
    first = options[0]
    command = next_step.command_line(bare, add=tuple(first.split(" ", 1)) if first else ())
    if found == [EMULATED_OUT / LEDGER_NAME]:
        return f"{said}; the emulator's ledger is at {found[0]} (make demo, run --emulate): use --emulate: {command}"
    return f"{said}; this folder has {named}: {command}"


# --- plan -----------------------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    # Lazy: batch (the library) and the plan's text load polars, which `--help` does without.
    from pipeline.batch import plan_batch
    from pipeline.reports import console

    summary = plan_batch(args.manifest, ledger=args.ledger, state_dir=args.state_dir, retry_failed=args.retry_failed,
                         emulate=args.emulate,
                         refs_root=args.refs_root, take_over=args.take_over, max_credits=args.max_credits,
                         shard=args.shard)
    if summary.plan is None:
        _error(summary.error)
        _next_step(next_step.after_plan(args.argv, summary.exit_code))
        return summary.exit_code
    plan = summary.plan
    if summary.shard:  # before the table: the rows it shows are this shard's
        print(shard_line(summary.shard))
    print(console.format_plan(plan, summary.paths["ledger"], show_all=args.all))
    if summary.error:
        _error(summary.error)
        _next_step(next_step.after_plan(args.argv, summary.exit_code))
        return summary.exit_code
    key_missing = not args.emulate and not load_api_config().api_key
    if summary.balance is not None:
        print(console.format_balance(summary.balance, plan.credits_to_spend))
    elif not args.emulate:
        why = "no APIFRAME_API_KEY set: the key is checked once it is" if key_missing \
            else "GET /v2/me did not say; see the account's dashboard"
        print(f"  balance: unknown ({why})")
    _next_step(next_step.after_plan(args.argv, summary.exit_code, key_missing=key_missing))
    return summary.exit_code


# --- run ------------------------------------------------------------------------------------


class Interrupts:
    """SIGINT/SIGTERM for the life of a run: the first asks the runner to stop cleanly, a second
    (or one outside the async part) quits at once. Quitting at once is safe: every submit's intent
    and job_id are already in the journal (the write-ahead log), and a checkpoint's Parquet part is
    renamed into the ledger folder whole or not at all; the next open replays the journal."""

    def __init__(self) -> None:
        self.count = 0
        self.runner = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lease = None  # the run lease (store/lease.py) while batch holds it

    def install(self, *, after_polars: bool = True) -> None:
        # Polars, on import, hooks SIGINT below Python and then turns a Ctrl-C that lands during
        # any of its queries into a KeyboardInterrupt (pola-rs/polars#20961): a first Ctrl-C
        # during a checkpoint would crash the run instead of stopping it. Installed after the
        # import, our handler replaces that hook. `after_polars=False` is the first install, at
        # start-up, before anything is imported: the run installs again once polars is in.
        if after_polars:
            import polars  # noqa: F401

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)

    def __call__(self, sig: int, frame) -> None:
        self.count += 1
        name = signal.Signals(sig).name
        if self.count > 1 or self.runner is None or self.loop is None:
            print(f"\n{name}: exiting now; run the same command again to continue", flush=True)
            self._release_lease()
            os._exit(EXIT_STOPPED)
        self.loop.call_soon_threadsafe(self.runner.interrupt, name)


    def _release_lease(self) -> None:
        """Quitting at once, the run lease is released first, as the kernel drops the ledger's flock:
        the next run need not wait for it to expire. Bounded: a store that does not answer within
        2 s leaves the lease to expire by itself."""
        lease, self.lease = self.lease, None
        if lease is not None:
            worker = threading.Thread(target=lease.release, daemon=True)
            worker.start()
            worker.join(timeout=2.0)


def cmd_run(args: argparse.Namespace, interrupts: Interrupts | None = None) -> int:
    to_stdout = args.summary_json == "-"
    interrupts = interrupts or Interrupts()
    interrupts.install()
    # Lazy: batch loads polars, aiohttp and the run; the signal handlers above are in place first.
    from pipeline.batch import BatchSettings, run_batch

    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(BatchSettings)}
    # With --summary-json -, standard output carries the JSON alone; the usual text goes to stderr.
    with contextlib.redirect_stdout(sys.stderr if to_stdout else sys.stdout):
        summary = run_batch(args.manifest, interrupts=interrupts, on_start=_announce, **settings)
        if summary.error:
            _error(summary.error)
        else:
            if summary.shard:
                print(shard_line(summary.shard))
            print(_console().format_summary(summary))
        for warning in summary.warnings:
            _error(warning)
        _next_step(_after_run(args, summary))
    if to_stdout:
        print(summary.to_json(), flush=True)
    elif args.summary_json:
        try:
            write_text_atomic(Path(args.summary_json), summary.to_json() + "\n")
        except OSError as exc:
            _error(f"could not write --summary-json {args.summary_json}: {exc}")
    return summary.exit_code


def _after_run(args: argparse.Namespace, summary) -> list[str]:
    failed = sum(1 for row in summary.failed if row.get("status") == "FAILED")
    return next_step.after_run(args.argv, summary.exit_code, failed=failed, rejected=len(summary.failed) - failed,
                               ledger=summary.paths.get("ledger"), emulated=args.emulate,
                               budget_left=summary.budget_left, state_dir=args.state_dir)


def _unknown_command(argv: list[str], commands: list[str]) -> int:
    """A typo'd command word (`videobatch reveiw`): the command it looks like, as the one next
    command, instead of argparse's usage block."""
    close = difflib.get_close_matches(argv[0], commands, n=1, cutoff=0.6)
    if close:
        _error(f"no command {argv[0]!r}; did you mean {close[0]!r}?")
        _next_step([f"next: {next_step.command_line(argv, command=close[0])}"])
    else:
        _error(f"no command {argv[0]!r}; the commands are {', '.join(commands)}")
        _next_step(["next: videobatch   (alone: what each command does)"])
    return EXIT_BAD_INPUT


def _next_step(lines: list[str]) -> None:
    """On standard output, after the text or the one error line (standard error stays that one line)."""
    for line in lines:
        print(line, flush=True)


def _announce(run_id: str, plan, where: str) -> None:
    print(_console().format_start(run_id, plan, where), flush=True)


def shard_line(info: dict) -> str:
    # Lazy: plan/shard.py loads polars, which --help does without.
    from pipeline.plan.shard import describe

    return describe(info)


def _console():
    # Lazy: the run's text reads its polars frames; interrupts.install() has loaded polars by then.
    from pipeline.reports import console

    return console


# --- status and report ----------------------------------------------------------------------


@_reads_ledger
def cmd_status(args: argparse.Namespace) -> int:
    # Lazy, as every import of the ledger: polars, which --help and the parser do without.
    from pipeline.store import ledger, runs, verdicts
    # Lazy: the status is a polars query.
    from pipeline.reports import status

    decisions = verdicts.read_verdicts(args.ledger)
    opened = ledger.Ledger.open(args.ledger, readonly=True)
    scan = opened.scan([*status.STATUS_COLUMNS, "idempotency_key", "request_hash"])
    summary = status.summarize(verdicts.with_review(scan, decisions) if decisions.height else scan,
                               runs.read_runs(args.ledger))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(status.format_status(summary))
    return EXIT_OK


@_reads_ledger
def cmd_report(args: argparse.Namespace) -> int:
    # Lazy: the gallery loads polars and PyAV.
    from pipeline.reports.gallery import write_report

    pages = write_report(args.ledger, args.html, run=args.run, manifest=args.manifest, max_pages=args.pages)
    print(f"report: {pages[0]}")
    if len(pages) > 1:
        print(f"  and {len(pages) - 1} more pages: {pages[1].name} ... {pages[-1].name}")
    return EXIT_OK


# --- review and export ----------------------------------------------------------------------


@_reads_ledger
def cmd_review(args: argparse.Namespace) -> int:
    # Lazy: the review server loads aiohttp and polars.
    from pipeline.review.server import ReviewConfig, ReviewServer, new_token, serve
    # Lazy: aiohttp, as the server above.
    from pipeline.http_server import stop_on_signals
    # Lazy, as every import of the ledger: polars, which --help and the parser do without.
    from pipeline.store.ledger import Ledger

    Ledger.open(args.ledger, readonly=True).close()  # a damaged ledger is said now, not as a page's error
    config = ReviewConfig(ledger=args.ledger, run=args.run, manifest=args.manifest, out_dir=args.out,
                          host=args.host, port=args.port, reviewer=args.reviewer or getpass.getuser(),
                          token=new_token() if args.host else None)
    ReviewServer(config)  # checks --run and --manifest (ScopeError) before anything is served

    async def main_loop() -> None:
        await serve(config, stop_on_signals())

    try:
        asyncio.run(main_loop())
    except OSError as exc:
        _error(f"cannot serve on {args.host or '127.0.0.1'}:{args.port}: {exc.strerror}; try another --port")
        return EXIT_BAD_INPUT
    return EXIT_OK


@_reads_ledger
def cmd_export(args: argparse.Namespace) -> int:
    # Lazy: the export reads the ledger with polars.
    from pipeline.review.export import export_approved

    done = export_approved(args.ledger, args.approved, run=args.run, manifest=args.manifest)
    scope = f" of run {done.run_id}" if done.run_id else ""
    print(f"exported {done.clips} approved clips{scope} to {done.dest} ({done.linked} hard-linked, {done.copied} copied)")
    print(f"  sidecar: {done.dest / 'approved.csv'} and {done.dest / 'approved.json'}")
    if done.outside:  # approved in earlier runs that this --run leaves out: said, never silently skipped
        print(f"  {done.outside} more approved in other runs, left out by --run {args.run}: add --run all "
              f"to export them too: {next_step.command_line(args.argv, drop_option='--run', add=('--run', 'all'))}")
    if not done.clips and not done.outside:  # an empty export is no result: the review comes first
        review = next_step.command_line(args.argv, command="review", drop_option="--approved")
        print(f"next: {review}   (no clip is approved yet: approve them there, then export again)")
    if done.missing:
        print(f"  {len(done.missing)} approved clips have no file on disk (run the batch again to download them): "
              + ", ".join(done.missing[:20]))
        return EXIT_FAILED_ROWS
    return EXIT_OK


# --- reconcile ------------------------------------------------------------------------------


def cmd_reconcile(args: argparse.Namespace) -> int:
    # Lazy: batch and reconcile's report module load polars and the API client (aiohttp).
    from pipeline.batch import reconcile_batch
    from pipeline.run.reconcile import format_report

    report = reconcile_batch(args.manifest, ledger=args.ledger, state_dir=args.state_dir, adopt=args.adopt,
                             emulate=args.emulate,
                             max_pages=args.max_pages, rpm=args.rpm, refs_root=args.refs_root)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    elif report.found is not None:
        print(format_report(report, adopt=args.adopt))
    if report.error:
        _error(report.error)
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # delta-rs and obstore log from Rust straight to stderr (every failed cloud-metadata probe, as a
    # warning of many lines); our own line says what failed. Set before they are imported.
    os.environ.setdefault("RUST_LOG", "error")
    interrupts = None
    if argv[:1] == ["run"]:
        # Before the imports, the manifest, the ledger and the emulator: a signal during start-up
        # ends the run as one during the run does (exit 3, one line), never in a traceback.
        interrupts = Interrupts()
        interrupts.install(after_polars=False)
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = ReaderGone(sys.stdout), ReaderGone(sys.stderr)
    try:
        return _command(argv, interrupts)
    finally:
        sys.stdout.flush()  # here, not at exit, where a reader gone would turn exit 0 into 120
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams


def _command(argv: list[str], interrupts: Interrupts | None) -> int:
    parser = build_parser()
    if not argv:
        # A bare `videobatch`: the commands, as --help lists them, yet exit 2 as for any call that
        # did nothing it was asked to, so a script whose command word went missing fails.
        parser.print_help()
        return EXIT_BAD_INPUT
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv[0].startswith("-") and argv[0] not in commands:
        return _unknown_command(argv, sorted(commands))
    args = parser.parse_args(argv)
    args.argv = argv  # the next command a run or plan suggests is built from the user's own
    if args.command == "emulator":
        # Lazy: aiohttp and PyAV, for this command only (build_parser has loaded them already).
        from pipeline.emulator import cli as emulator_cli

        return emulator_cli.run(args)
    if args.command == "run":
        return cmd_run(args, interrupts)
    handler = {"plan": cmd_plan, "status": cmd_status, "report": cmd_report,
               "review": cmd_review, "export": cmd_export, "reconcile": cmd_reconcile}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())