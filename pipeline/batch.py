"""Plan or run a batch in-process and get its summary: what `videobatch plan` and `videobatch run`
do, for orchestrators (Airflow, Dagster, a script) that call the library instead of a subprocess.

    summary = run_batch("manifests/nightly.yaml", max_credits=2000, deadline="07:00")
    summary.exit_code, summary.rows, summary.to_dict()   # the --summary-json document

Options are the CLI's flags with underscores (`--max-credits` is `max_credits`); see
BatchSettings. Bad input does not raise: it comes back as exit code 2 with `summary.error`, as the
CLI would exit. Nothing is printed here but the runner's progress lines; the CLI prints.
"""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import polars as pl

from pipeline.api.client import ApiClient, ApiError, AuthError, RequestGate
from pipeline.config import (DEMO_TIME_SCALE, EMULATED_OUT, LEDGER_NAME, REAL_OUT, RECONCILE_PAGES, RECONCILE_READS,
                             ApiConfig, load_api_config)
from pipeline.manifest.load import ManifestError, load_manifest
from pipeline.plan.actions import keep_ledger_keys
from pipeline.plan.shard import ShardError, parse_shard, shard_plan
from pipeline.plan.prices import needs_catalog
from pipeline.plan.reviewed import make_reviewed_plan
from pipeline.reports.metrics import write_metrics
from pipeline.reports.notify import NotifyUrlError, check_url, notify
from pipeline.reports.summary import BatchSummary, plan_summary, refused_summary, run_summary
from pipeline.run.account import NoContact, balance_of, first_contact, settle_account
from pipeline.run.catalog import CatalogRefusal, price_from_catalog
from pipeline.run.deadline import Deadline, DeadlineError, parse_deadline
from pipeline.run.outcome import EXIT_BAD_INPUT, EXIT_OK, EXIT_STOPPED, RunResult
from pipeline.run.payers import JobPayers
from pipeline.run.reconcile import (LEDGER_COLUMNS, JobCollector, ReconcileReport, RequestIndex, exit_code,
                                    reconcile, unlisted_in_flight)
from pipeline.run.runlog import RunLog
from pipeline.run.tracker import read_job, read_job_list
from pipeline.run.transitions import ReadError
from pipeline.store.faults import StorageFault, disk_fault
from pipeline.store.lease import Lease, LeaseHeld, lease_folder, lease_name
from pipeline.store.ledger import Ledger, LedgerCorrupt, anchor, reading_ledger, where_of
from pipeline.store.location import Location, LocationError, parse
from pipeline.store.runs import read_runs
from pipeline.store.verdicts import VerdictsCorrupt, read_verdicts


@dataclass
class BatchSettings:
    """The options of `videobatch run`, named as its flags."""
    ledger: Path | str | None = None  # default <out>/ledger.parquet; or an s3://, gs://, az:// URL
    state_dir: Path | str | None = None  # a remote ledger's journal, lock and logs (default per user and URL)
    out: Path | str | None = None  # default outputs/, or outputs/emulator/ with emulate; or a store URL
    emulate: bool = False
    rpm: int = 500  # 0: no limit
    concurrency: int = 1000
    max_credits: int | None = None
    retries: int = 2
    retry_failed: bool = False
    take_over: bool = False  # this manifest takes over ids another manifest holds in the ledger
    timeout: float = 30.0
    webhook_listen: tuple[str, int] | None = None
    webhook_url: str | None = None
    deadline: Any = None  # "07:00", "6h", an ISO timestamp, or a pipeline.run.deadline.Deadline
    notify: str | None = None  # URL to POST the summary to when the run ends
    metrics_file: Path | str | None = None  # Prometheus textfile to write when the run ends
    progress_interval: float = 10.0
    poll_interval: float = 1.0
    rate_period: float = 60.0
    checkpoint_every: float = 30.0
    emulator_time_scale: float = DEMO_TIME_SCALE
    emulator_credits: int = 1_000_000
    job_timeout: float | None = 1800.0  # seconds a job may generate before it is left for the next run
    dialect: tuple[str, ...] = ()  # with emulate: the emulator answers like these variants of the API
    refs_root: Path | str | None = None  # local reference images may also lie under it, not only in the manifest's folder
    notify_retry_delay: float = 1.0  # first wait before a notification is sent again
    shard: Any = None  # "I/N" (or a plan.shard.Shard): only this worker's share of the rows


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- plan -----------------------------------------------------------------------------------


async def _balance(config) -> int | None:
    """The team's credits from GET /v2/me; None when the answer does not say (never a guessed 0).
    NoContact when the key is refused or the API cannot be connected to: the plan says so."""
    async with ApiClient(config.base_url, config.api_key) as client:
        return balance_of(await first_contact(client))


async def _plan_prices(plan, config, ledger_path: Path, emulate: bool) -> None:
    """The plan's catalog prices, read as a run reads them (from the built-in emulator's catalog
    with --emulate), and kept beside the ledger when its folder exists."""
    if not needs_catalog(plan):
        return
    async with AsyncExitStack() as stack:
        base_url, api_key = config.base_url, config.api_key
        if emulate:
            base_url, api_key = await _start_emulator(stack, ledger_path, state=False)
        client = await stack.enter_async_context(ApiClient(base_url, api_key, public=True))
        await price_from_catalog(client, plan, ledger_path, keep=ledger_path.parent.is_dir())


def plan_batch(manifest: Path | str, *, ledger: Path | str | None = None, state_dir: Path | str | None = None,
               retry_failed: bool = False,
               emulate: bool = False, check_balance: bool = True, refs_root: Path | str | None = None,
               take_over: bool = False, max_credits: int | None = None, shard: Any = None) -> BatchSummary:
    """Price a manifest against its ledger and (with an API key) the account's balance; submits
    nothing. `summary.plan` holds the row-by-row Plan (with `max_credits`, its budget: the rows
    a run would leave out; with `shard` "I/N", only that worker's rows)."""
    started = _now()
    manifest = Path(manifest)
    try:
        ledger_path = anchor(ledger or (EMULATED_OUT if emulate else REAL_OUT) / LEDGER_NAME, state_dir)
    except LocationError as exc:
        return refused_summary("plan", manifest, EXIT_BAD_INPUT, str(exc), started_at=started, emulated=emulate,
                               ledger_path=Path(str(ledger)), out_dir=None)
    try:
        shard = parse_shard(shard)
        rows = load_manifest(manifest, refs_root=refs_root)
    except (ManifestError, ShardError) as exc:
        message = str(exc) if isinstance(exc, ShardError) else f"the manifest has problems; nothing was submitted\n{exc}"
        return refused_summary("plan", manifest, EXIT_BAD_INPUT, message,
                               started_at=started, emulated=emulate, ledger_path=ledger_path, out_dir=None)
    try:
        decisions = read_verdicts(ledger_path)
    except VerdictsCorrupt as exc:
        return refused_summary("plan", manifest, EXIT_BAD_INPUT, str(exc), started_at=started, emulated=emulate,
                               ledger_path=ledger_path, out_dir=None)
    try:
        ledger = Ledger.open(ledger_path, readonly=True)  # read as the plan needs it, never whole
        read_runs(ledger_path)  # a run would refuse a damaged runs table: the plan says so first
        with reading_ledger(ledger_path):
            plan = make_reviewed_plan(rows, ledger, decisions, retry_failed=retry_failed,
                                      manifest=manifest.resolve(), take_over=take_over)
        shard_info = shard_plan(plan, shard)  # planned whole, then this worker's rows
        plan.max_credits = max_credits
    except StorageFault as exc:  # a damaged or unreadable ledger: named, never planned as empty
        return refused_summary("plan", manifest, EXIT_STOPPED, str(exc), started_at=started, emulated=emulate,
                               ledger_path=ledger_path, out_dir=None)
    refusal = plan.shared_ids_refusal(ledger_path)
    if refusal:
        return refused_summary("plan", manifest, EXIT_BAD_INPUT, refusal, started_at=started, emulated=emulate,
                               ledger_path=ledger_path, out_dir=None)
    balance, code, error = None, EXIT_OK, None
    config = load_api_config()
    try:
        asyncio.run(_plan_prices(plan, config, ledger_path, emulate))
    except CatalogRefusal as exc:  # said with the plan; rows of the models it names show no estimate
        code, error = exc.exit_code, str(exc)
    if check_balance and config.api_key and not emulate:
        try:
            balance = asyncio.run(_balance(config))
        except NoContact as exc:  # a wrong key is a configuration error (2), no API at all is 4
            code, error = exc.exit_code, str(exc)
        except ApiError as exc:
            code, error = EXIT_STOPPED, f"could not read the balance: {exc}"
    summary = plan_summary(plan, ledger, manifest=manifest.resolve(), emulated=emulate, ledger_path=ledger_path,
                           started_at=started, exit_code=code, balance=balance, error=error)
    summary.shard = shard_info
    return summary


# --- run ------------------------------------------------------------------------------------


def run_batch(manifest: Path | str, *, interrupts: Any = None,
              on_start: Callable[[str, Any, str], None] | None = None, **options: Any) -> BatchSummary:
    """Submit, track and download every row the ledger has not finished, then notify and write
    metrics if asked. Returns the run's summary whatever the outcome.

    `interrupts`: an object whose `runner` and `loop` attributes are set while the runner runs
    (`runner` to the run's stop flags, run/control.py's Control: the CLI's signal handler calls
    its `interrupt(name)` on `loop` to stop cleanly). `on_start(run_id, plan, where)` is
    called once the plan is made, before anything is submitted.
    """
    settings = BatchSettings(**options)
    summary = _run(Path(manifest), settings, interrupts, on_start)
    _after(summary, settings)
    return summary


def _settings_refusal(settings: BatchSettings, config: ApiConfig) -> str | None:
    """Why these options cannot run (exit 2), before the manifest is even read."""
    if bool(settings.webhook_listen) != bool(settings.webhook_url):
        return "--webhook-listen and --webhook-url go together: the API must be told where to post"
    if settings.dialect and not settings.emulate:
        return "--dialect shapes the built-in emulator: add --emulate (the real API speaks for itself)"
    if not settings.emulate and not config.api_key:
        return ("no API key: set APIFRAME_API_KEY in the environment or in .env, "
                "or add --emulate to try the batch on the built-in emulator (no credits spent)")
    return None


def _run(manifest: Path, settings: BatchSettings, interrupts, on_start) -> BatchSummary:
    started = _now()
    config = load_api_config()
    out, bad_out = _videos_out(settings)
    # A remote --out holds videos only: the ledger's default and the run's state stay local (s3videos).
    out_dir = out.path if out is not None and not out.remote else _default_out(settings)
    deadline = None
    try:
        ledger_path = anchor(settings.ledger or out_dir / LEDGER_NAME, settings.state_dir)
    except LocationError as exc:
        return refused_summary("run", manifest, EXIT_BAD_INPUT, str(exc), started_at=started, emulated=settings.emulate,
                               ledger_path=Path(str(settings.ledger)), out_dir=out_dir)

    def refused(code: int, message: str, run_id: str | None = None) -> BatchSummary:
        return refused_summary("run", manifest, code, message, started_at=started, emulated=settings.emulate,
                               ledger_path=ledger_path, out_dir=out_dir, deadline=deadline, run_id=run_id)

    try:
        if settings.notify:
            check_url(settings.notify)  # registers it as a secret before anything could print it
        if settings.deadline is not None:
            deadline = settings.deadline if isinstance(settings.deadline, Deadline) else parse_deadline(settings.deadline)
        shard = parse_shard(settings.shard)
    except (DeadlineError, NotifyUrlError, ShardError) as exc:
        return refused(EXIT_BAD_INPUT, str(exc))
    message = bad_out or _settings_refusal(settings, config)
    if message:
        return refused(EXIT_BAD_INPUT, message)
    try:
        rows = load_manifest(manifest, refs_root=settings.refs_root)
    except ManifestError as exc:
        return refused(EXIT_BAD_INPUT, f"the manifest has problems; nothing was submitted\n{exc}")
    try:
        decisions = read_verdicts(ledger_path)
    except VerdictsCorrupt as exc:
        return refused(EXIT_BAD_INPUT, str(exc))
    run_id = new_run_id()
    # --- the run lease (store/lease.py): one run of this manifest (shard) at a time, on any machine ---
    lease = run_lease(ledger_path, manifest, shard, run_id)
    try:
        lease.acquire()  # before the ledger is opened writable; nothing is submitted without it
    except (LeaseHeld, StorageFault) as exc:
        return refused(EXIT_STOPPED, str(exc))
    if interrupts is not None:  # a Ctrl-C that quits at once (cli.Interrupts) releases it too
        interrupts.lease = lease
    try:
        summary = _run_leased(manifest, settings, config, run_id, lease, ledger_path, rows, decisions, deadline,
                              out_dir, interrupts, on_start, refused)
    finally:
        if interrupts is not None:
            interrupts.lease = None
        lease.release()  # also after a failure or a first Ctrl-C; a lease left behind expires by itself
    if out is not None and out.remote and summary.paths.get("videos"):
        summary.paths["videos"] = out.url
    return summary


def run_lease(ledger_path: Path | str, manifest: Path, shard, run_id: str) -> Lease:
    """The lease a run (or reconcile --adopt) of `manifest` takes on `ledger_path`."""
    what = manifest.name + (f" (shard {shard})" if shard else "")
    return Lease(lease_folder(where_of(Path(ledger_path))), lease_name(manifest, shard and (shard.index, shard.count)),
                 run_id=run_id, what=what)


def _run_leased(manifest: Path, settings: BatchSettings, config: ApiConfig, run_id: str, lease: Lease,
                ledger_path: Path, rows, decisions, deadline, out_dir: Path, interrupts, on_start,
                refused) -> BatchSummary:
    """With the lease held: open the ledger writable, plan, run, close."""
    try:
        ledger = Ledger.open(ledger_path, run_id=run_id)
    except StorageFault as exc:  # in use by another run (LedgerLocked), damaged, or not writable
        return refused(EXIT_STOPPED, str(exc))
    try:
        summary = _run_planned(manifest.resolve(), settings, config, ledger, rows, decisions, deadline,
                               out_dir, interrupts, on_start, refused, lease)
    finally:
        try:
            with reading_ledger(ledger_path):  # its last checkpoint reads the rows it changed
                ledger.close()
        except StorageFault as exc:
            ledger.fault = ledger.fault or exc  # the journal keeps every line for the rerun
    if ledger.fault is not None:  # our own storage failed: a stop to resume, said in one line
        summary.exit_code, summary.stop_reason = EXIT_STOPPED, str(ledger.fault)
    return summary


# -- videos in an object store (--out URL; s3videos) --

def _default_out(settings: BatchSettings) -> Path:
    return Path(EMULATED_OUT if settings.emulate else REAL_OUT)


def _videos_out(settings: BatchSettings) -> tuple[Location | None, str | None]:
    """Where the videos go (a local folder or a store prefix), or why --out names no place."""
    try:
        return parse(str(settings.out or _default_out(settings)), "--out"), None
    except LocationError as exc:
        return None, str(exc)


def _staging(settings: BatchSettings, ledger_path: Path) -> tuple[Path, str | None]:
    """(the folder videos are downloaded and verified in, the store prefix they then go to):
    for a remote --out, `<ledger folder>/staging/`, then `<out>/videos/<key>.mp4`; else --out itself."""
    out, _ = _videos_out(settings)
    if out is not None and out.remote:
        return ledger_path.parent / "staging", out.url
    return (out.path if out is not None else _default_out(settings)), None


def _run_planned(manifest: Path, settings: BatchSettings, config: ApiConfig, ledger: Ledger, rows, decisions,
                 deadline, out_dir: Path, interrupts, on_start, refused, lease: Lease | None = None) -> BatchSummary:
    """With the ledger open: the plan, the run, its row in the runs table, and its summary."""
    ledger_path, run_id = ledger.path, ledger.run_id
    try:
        with reading_ledger(ledger_path):
            plan = make_reviewed_plan(rows, ledger, decisions, retry_failed=settings.retry_failed,
                                      manifest=manifest, take_over=settings.take_over)
        shard_info = shard_plan(plan, parse_shard(settings.shard))  # planned whole, then this worker's rows
        plan.max_credits = settings.max_credits  # what it spends, and in what order (plan/budget.py)
    except StorageFault as exc:  # a damaged part, before any request: one line, never a traceback
        return refused(EXIT_STOPPED, str(exc), run_id)
    refusal = plan.shared_ids_refusal(ledger_path)
    if refusal:  # before any request: the ids are another manifest's
        return refused(EXIT_BAD_INPUT, refusal, run_id)
    log_path = ledger_path.parent / "logs" / f"{run_id}.jsonl"
    started = None if on_start is None else (
        lambda: on_start(run_id, plan, "emulator" if settings.emulate else config.base_url))
    if started is not None and not needs_catalog(plan):  # priced already: said before the API is reached
        started()
        started = None
    try:
        result = asyncio.run(_run_async(settings, config, ledger, plan, out_dir, log_path, interrupts, deadline,
                                        on_start=started, lease=lease))
    except CatalogRefusal as exc:  # before any request that costs
        return refused(exc.exit_code, str(exc), run_id)
    try:
        ledger.append_run(result.to_runs_row(plan, emulated=bool(settings.emulate), log_path=log_path))
    except StorageFault:
        pass  # ledger.fault says it below; the journal holds every row for the rerun
    summary = run_summary(result, plan, ledger, manifest=manifest, emulated=bool(settings.emulate),
                          deadline=deadline, ledger_path=ledger_path, out_dir=out_dir, log_path=log_path)
    summary.shard = shard_info
    return summary


async def _run_async(args, config, ledger, plan, out_dir: Path, log_path: Path, interrupts,
                     deadline=None, on_start: Callable[[], None] | None = None, lease: Lease | None = None) -> RunResult:
    # Lazy: the runner loads PyAV (the downloads' check), which `plan` and `reconcile` never need.
    from pipeline.run.runner import Runner, RunOptions

    out_dir, out_url = _staging(args, ledger.path)
    options = RunOptions(
        out_dir=out_dir, out_url=out_url, rpm=args.rpm or None, rate_period=args.rate_period,
        concurrency=args.concurrency, max_credits=args.max_credits, retries=args.retries,
        poll_min_interval=args.poll_interval, checkpoint_every=args.checkpoint_every,
        webhook_url=args.webhook_url, webhook_listen=args.webhook_listen, deadline=deadline,
        job_timeout=args.job_timeout, ledger_path=ledger.path,
    )
    log = RunLog(log_path)
    async with AsyncExitStack() as stack:
        base_url, api_key = config.base_url, config.api_key
        if args.emulate:
            base_url, api_key = await _start_emulator(stack, ledger.path, credits=args.emulator_credits,
                                                      time_scale=args.emulator_time_scale, dialects=args.dialect)
        client = ApiClient(
            base_url, api_key, gate=RequestGate(options.rpm, options.rate_period), timeout=args.timeout,
            on_retry=lambda what, reason, delay: log.event("retry", what=what, reason=reason,
                                                          delay=round(delay, 3)),
        )
        await stack.enter_async_context(client)
        try:
            await price_from_catalog(client, plan, ledger.path)  # the plan's bounds, before it is shown or run
        except CatalogRefusal:
            log.close()
            raise
        if on_start is not None:
            on_start()
        runner = Runner(ledger, client, plan, options, log, progress_interval=args.progress_interval)
        control = runner.control
        client.should_stop = control.stopped
        if interrupts is not None:  # the CLI's signal handler calls its `runner.interrupt(name)`
            interrupts.runner, interrupts.loop = control, asyncio.get_running_loop()
        timers = control.arm_deadline(deadline, lambda: not plan.to_run(longest_first=False).is_empty())
        log_fault, lost = None, []
        # The run lease renewed every TTL/3 for the whole run; lost, the run stops (journal kept).
        keeper = None if lease is None else asyncio.create_task(lease.keep(
            lambda exc: (lost.append(exc), control.note_internal_error(None, exc, "run lease"))))
        try:
            result = await runner.run()
        finally:
            if keeper is not None:
                keeper.cancel()
            for timer in timers:
                timer.cancel()
            if interrupts is not None:
                interrupts.runner = None
            runner.log_run_end()
            try:
                log.close()
            except OSError as exc:  # the run log shares the ledger's disk: its tail is lost, say so
                log_fault = disk_fault(exc, log_path)
    if log_fault is not None or lost:
        result.exit_code, result.stop_reason = EXIT_STOPPED, result.stop_reason or str(log_fault or lost[0])
    return result


def emulator_state_path(ledger_path: Path) -> Path:
    """The built-in emulator's memory of an emulated ledger's jobs."""
    return ledger_path.parent / "emulator-state.jsonl"


async def _start_emulator(stack, ledger_path: Path, *, credits: int = 1_000_000, time_scale: float = DEMO_TIME_SCALE,
                          dialects: tuple[str, ...] = (), state: bool = True) -> tuple[str, str]:
    """The built-in emulator for an emulated ledger, stopped with `stack`: (base URL, API key)."""
    # Lazy: the emulator (its server, PyAV to make videos) is loaded only for --emulate.
    from pipeline.emulator import Emulator, EmulatorConfig

    api_key = "afk_emulated_" + secrets.token_hex(8)  # a throwaway key, never the user's
    # Its state lives beside the emulated ledger, so an interrupted demo resumes like a real
    # batch: the jobs it made are still there, under the same account.
    emu = await stack.enter_async_context(Emulator(EmulatorConfig(
        api_key=api_key, credits=credits, time_scale=time_scale, rpm=0, dialects=tuple(dialects),
        state_path=emulator_state_path(ledger_path) if state else None)))
    return emu.base_url, api_key


# --- after the run --------------------------------------------------------------------------


def _after(summary: BatchSummary, settings: BatchSettings) -> None:
    """Metrics first (local and quick), then the notification (may wait on a slow server)."""
    if settings.metrics_file:

        try:
            write_metrics(Path(settings.metrics_file), summary)
        except OSError as exc:
            summary.warnings.append(f"could not write --metrics-file {settings.metrics_file}: {exc}")
    if settings.notify:
        _notify(summary, settings)


def _notify(summary: BatchSummary, settings: BatchSettings) -> None:
    try:
        check_url(settings.notify)
    except NotifyUrlError:
        return  # already the run's error (exit 2): there is nowhere to send it
    log = RunLog(Path(summary.paths["log"])) if summary.paths.get("log") else None
    try:
        delivery = notify(settings.notify, summary.notification_payload(), first_delay=settings.notify_retry_delay,
                          on_attempt=lambda n, error: log and log.event("notify", attempt=n, error=error))
    finally:
        if log is not None:
            try:
                log.close()
            except OSError as exc:  # the run log's disk is full: the notification still counts
                summary.warnings.append(f"could not log the notification's attempts in {log.path}: {exc.strerror}")
    summary.notification = delivery.as_dict()
    if not delivery.delivered:
        summary.warnings.append(f"the notification was not delivered after {delivery.attempts} attempts "
                                f"({delivery.error}); the exit code is the run's")


# --- reconcile ------------------------------------------------------------------------------


def reconcile_batch(manifest: Path | str, *, ledger: Path | str | None = None, state_dir: Path | str | None = None,
                    adopt: bool = False,
                    emulate: bool = False, max_pages: int = RECONCILE_PAGES, rpm: int = 500,
                    refs_root: Path | str | None = None):
    """Match the API's jobs to a manifest's rows and compare them with the ledger; with `adopt`,
    take the matching jobs the ledger does not know into it. Only GETs: nothing is paid for.
    Returns a reconcile.ReconcileReport (`exit_code`, `error`, `found`, `after`, `as_dict()`)."""
    manifest = Path(manifest)
    given = ledger or (EMULATED_OUT if emulate else REAL_OUT) / LEDGER_NAME
    config = load_api_config()
    report = ReconcileReport(str(manifest), str(given), "the built-in emulator" if emulate else config.base_url,
                             exit_code=EXIT_OK, max_pages=max_pages)

    def refused(code: int, message: str) -> ReconcileReport:
        report.exit_code, report.error = code, message
        return report

    try:
        ledger_path = anchor(given, state_dir)
    except LocationError as exc:
        return refused(EXIT_BAD_INPUT, str(exc))

    if not emulate and not config.api_key:
        return refused(EXIT_BAD_INPUT, "no API key: set APIFRAME_API_KEY in the environment or in .env, or add "
                       "--emulate to reconcile the emulated ledger with the built-in emulator's jobs")
    if emulate and not emulator_state_path(ledger_path).exists():
        return refused(EXIT_BAD_INPUT, f"no emulator state at {emulator_state_path(ledger_path)}: no emulated run "
                       f"has used the ledger {ledger_path}; pass the --ledger of one")
    try:
        rows = load_manifest(manifest, refs_root=refs_root)
    except ManifestError as exc:
        return refused(EXIT_BAD_INPUT, f"the manifest has problems; nothing was compared\n{exc}")
    run_id = f"reconcile-{new_run_id()}"
    lease = run_lease(ledger_path, manifest, None, run_id) if adopt else None  # --adopt writes: leased as a run
    try:
        if lease is not None:
            lease.acquire()
        book = Ledger.open(ledger_path, run_id=run_id, readonly=not adopt)
    except (LeaseHeld, StorageFault, OSError) as exc:  # in use by a run (its lease, LedgerLocked), unreadable, or not writable
        if lease is not None:
            lease.release()
        return refused(EXIT_STOPPED, f"{exc}; nothing was adopted" if adopt else str(exc))
    try:
        with reading_ledger(ledger_path), book:  # book.close() checkpoints: inside, so it is named too
            rows = keep_ledger_keys(rows, book)  # an accented row of an older ledger keeps its key
            asyncio.run(_reconcile_async(report, rows, book, config, adopt=adopt, emulate=emulate, rpm=rpm))
    except NoContact as exc:  # the first request: a refused key (2) or no API reached (4)
        return refused(exc.exit_code, str(exc).replace("nothing was submitted", "nothing was compared"))
    except LedgerCorrupt as exc:  # a damaged part: named; running again would not help
        return refused(EXIT_STOPPED, f"{exc}; nothing was adopted" if adopt else str(exc))
    except (OSError, StorageFault) as exc:  # the ledger could not be written: nothing adopted is lost
        return refused(EXIT_STOPPED, f"could not write the ledger {ledger_path}: "
                       f"{getattr(exc, 'strerror', None) or exc}; run the same command again")
    finally:
        if lease is not None:
            lease.release()
    if report.error is None:

        report.exit_code = exit_code(report)
    return report


def _ledger_rows(ledger, rows, job_ids) -> dict[str, dict[str, Any]]:
    """What the ledger holds of a manifest's keys, of its archived versions, and of every row that
    records one of `job_ids`: one scan."""
    frame = ledger.scan(LEDGER_COLUMNS).filter(
        pl.col("job_key").is_in(rows["job_key"].implode()) | (pl.col("manifest") == rows["manifest"][0])
        | pl.col("job_id").is_in(pl.Series(sorted(job_ids), dtype=pl.String).implode())).collect()
    return {row["job_key"]: row for row in frame.iter_rows(named=True)}


async def _reconcile_async(report, rows, ledger, config, *, adopt: bool, emulate: bool, rpm: int) -> None:
    async with AsyncExitStack() as stack:
        base_url, api_key = config.base_url, config.api_key
        if emulate:
            base_url, api_key = await _start_emulator(stack, ledger.path)
        client = await stack.enter_async_context(ApiClient(base_url, api_key, gate=RequestGate(rpm or None)))
        # A refused key or no API at all is said at once (exit 2 or 4), not after each page's retries.
        await first_contact(client)
        collector = JobCollector(RequestIndex(rows))
        report.list_complete = True
        for model in sorted(set(rows["model"])):
            read = await read_job_list(client, model=model, max_pages=report.max_pages, on_page=collector.add_page)
            report.pages += read.pages
            report.jobs_listed += read.jobs
            report.list_complete &= read.complete
            report.list_stopped = report.list_stopped or read.stopped
            if read.oldest is not None and not read.complete:  # the shallowest reach is what was read for sure
                report.list_oldest = read.oldest if report.list_oldest is None else max(report.list_oldest, read.oldest)
        report.uncomparable = collector.uncomparable
        manifest_text = rows["manifest"][0]
        known = _ledger_rows(ledger, rows, collector.matched)
        # In-flight jobs the pages did not show (older than the pages read, or gone): read one by one.
        not_shown: dict[str, str] = {}
        unread: dict[str, str] = {}
        unlisted = unlisted_in_flight(collector, known, manifest_text)
        for job_id in unlisted[RECONCILE_READS:]:
            unread[job_id] = f"not read: over the {RECONCILE_READS} jobs read one by one"
        for job_id in unlisted[:RECONCILE_READS]:
            try:
                seen = await read_job(client, job_id)
            except AuthError as exc:
                unread[job_id] = exc.stop_reason
                continue
            if seen.job is not None:
                collector.add(seen.job)
            elif seen.error is ReadError.NOT_FOUND:
                not_shown[job_id] = "the API does not know this job (404): it was never made, or under another account's key"
            else:
                unread[job_id] = f"could not be read: {seen.detail}"
        report.unread = len(unread)
        known = _ledger_rows(ledger, rows, collector.matched)

        def books():
            return reconcile(collector, known, manifest=manifest_text, not_shown=not_shown, unread=unread,
                             list_complete=report.list_complete, list_oldest=report.list_oldest,
                             clock_offset=client.clock_offset)

        report.found = books()
        if adopt and report.found.adoptions:
            if await _adopt(report, ledger, client):
                known = _ledger_rows(ledger, rows, collector.matched)
                report.after = books()


async def _adopt(report, ledger, client) -> bool:
    """Record the adoptions under the ledger's lock, journaled like any change, once the key is
    known to be of the account that owns this ledger's jobs (the adopted jobs are this key's)."""
    adoptions = report.found.adoptions
    log = RunLog(ledger.path.parent / "logs" / f"{ledger.run_id}.jsonl")
    try:
        try:
            _, refused = await settle_account(client, ledger, ledger.path, len(adoptions), False, log)
        except NoContact as exc:
            report.exit_code, report.error = exc.exit_code, f"{exc}; nothing was adopted"
            return False
        if refused:
            report.exit_code, report.error = EXIT_STOPPED, f"{refused}; nothing was adopted"
            return False
        payers = JobPayers(ledger)
        for job_key, fields in adoptions:
            if payers.taken_by_other(fields["job_id"], job_key):
                continue  # never a job another row records (invariant 7); the report says it is known
            ledger.record(job_key, **fields)
            payers.claim(fields["job_id"], job_key)
            log.event("adopted", job_key=job_key, job_id=fields["job_id"], status=fields["status"],
                      credits_charged=fields["credits_charged"])
            report.adopted += 1
        await ledger.commit()
    finally:
        log.close()
    return True
