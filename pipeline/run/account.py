"""Decides whose jobs a ledger follows (its holder: the Apiframe account, user and team, behind a key).

It also does the I/O that settles the holder: GET /v2/me, the account file beside the ledger,
and in-flight jobs read back to prove whose they are.

A job is visible only to the account that made it: the spec's 404 reads "Job not found, or owned
by a different user". So a run with a key of another account would see every in-flight job of
this ledger as unknown. Such a run refuses to start, before any spending request, naming both
accounts. The holder of the in-flight jobs is kept beside the ledger (`<stem>.account.json`),
written before any run spends, so a run killed mid-way still leaves it behind; each run's
account also goes into the runs table. A missing or damaged account file is never taken as "no
holder": while anything is in flight, the runs table must name the account of the runs that last
changed those rows, and only that account's key may go on; otherwise the run refuses before any
spending request, naming the file and the account.

When neither the file nor the runs table can name the holder (a run killed before its runs row,
or jobs adopted by `reconcile`), this key may still prove it is theirs: a job is visible only to
the account that made it, so in-flight jobs that all read back with this key are this account's, and with them
every intent of this ledger in flight (one account at a time, above).

Two keys of one user and team are one account: the key id is recorded but does not decide.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import polars as pl

from pipeline.api.client import FIRST_CONTACT_TRIES, ApiError, AuthError, TransientError
from pipeline.config import DEFAULT_BASE_URL, KEY_VAR, URL_VAR
from pipeline.redact import redact
from pipeline.run.outcome import ExitCode
from pipeline.store.atomic import write_text_atomic
from pipeline.store.runs import read_runs, runs_path
from pipeline.store.schema import IN_FLIGHT, PENDING
from pipeline.run.tracker import read_job

if TYPE_CHECKING:
    from pipeline.api.client import ApiClient
    from pipeline.run.runlog import RunLog
    from pipeline.store.ledger import Ledger


@dataclass(frozen=True)
class Account:
    """An Apiframe account as GET /v2/me names it; the key id is kept but does not decide."""

    user_id: str | None
    team_id: str | None
    key_id: str | None = None

    def same_account(self, other: Account) -> bool:
        return (self.user_id, self.team_id) == (other.user_id, other.team_id)

    def __str__(self) -> str:
        return f"user {self.user_id or '?'}, team {self.team_id or '?'} (key id {self.key_id or '?'})"


def account_of(me: Any) -> Account | None:
    """The account in a GET /v2/me answer; None when it names neither a user nor a team."""
    if not isinstance(me, dict):
        return None

    def ident(section: str) -> str | None:
        part = me.get(section)
        value = part.get("id") if isinstance(part, dict) else None
        return str(value) if value not in (None, "") else None

    account = Account(ident("user"), ident("team"), ident("apiKey"))
    return account if account.user_id or account.team_id else None


def balance_of(me: Any) -> int | None:
    team = me.get("team") if isinstance(me, dict) else None
    credits = team.get("credits") if isinstance(team, dict) else None
    return credits if isinstance(credits, int) and not isinstance(credits, bool) else None


class NoContact(Exception):
    """The command's first request, with nothing sent yet that costs: the key was refused (exit 2)
    or the API could not be connected to at all (exit 4). Nothing was submitted."""

    def __init__(self, message: str, exit_code: ExitCode):
        super().__init__(message)
        self.exit_code = exit_code


def key_refused(exc: AuthError) -> NoContact:
    return NoContact(f"the API refused the key ({exc.status}): {KEY_VAR} is wrong, inactive or lacks permission; "
                     f"nothing was submitted. Set {KEY_VAR} (in the environment or .env) to a key from your "
                     f"Apiframe dashboard{exc.for_support}", ExitCode.BAD_INPUT)


def unreachable(base_url: str, exc: TransientError) -> NoContact:
    parts = urlsplit(base_url)
    shown = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() \
        if parts.hostname else base_url  # never a user:password@ a URL may carry
    return NoContact(f"could not connect to the API at {shown} ({exc.no_connection or exc}; {FIRST_CONTACT_TRIES} "
                     f"tries): nothing was submitted. Check {URL_VAR} (in the environment or .env; unset means "
                     f"{DEFAULT_BASE_URL}) and that this machine reaches it: network, proxy, firewall, DNS",
                     ExitCode.UNREACHABLE)


async def first_contact(client: ApiClient) -> Any:
    """GET /v2/me as a command's first request, with nothing of ours in flight: NoContact when the
    key is refused (exit 2) or the API cannot be connected to at all (exit 4), in seconds rather
    than after a long retry; an API that is reached but failing raises on as before."""
    try:
        return await client.me(first_contact=True)
    except AuthError as exc:
        raise key_refused(exc) from None
    except TransientError as exc:
        if exc.reached:
            raise
        raise unreachable(client.base_url, exc) from None


def account_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(f"{ledger_path.stem}.account.json")


class AccountFileError(Exception):
    """The account file is there but cannot be read or makes no sense: never taken as absent."""


def read_account_file(ledger_path: Path) -> Account | None:
    """The account in the account file; None only when there is no file. AccountFileError says what
    is wrong with one that cannot be read or parsed, or that names no account."""
    path = account_path(ledger_path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccountFileError(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
        holder = Account(data.get("user_id"), data.get("team_id"), data.get("key_id"))
    except (ValueError, AttributeError):
        raise AccountFileError(f"{path} is corrupt (not the JSON this program writes)") from None
    if not (holder.user_id or holder.team_id):
        raise AccountFileError(f"{path} is corrupt (it names no user and no team)")
    return holder


def write_account_file(ledger_path: Path, account: Account) -> None:
    """Atomically, and durably before the run's first spending request."""
    write_text_atomic(account_path(ledger_path), json.dumps(asdict(account)), mode=0o666)


def refusal(holder: Account | None, current: Account | None, in_flight: int) -> str | None:
    """Why this run may not start (None: it may). Only in-flight jobs tie a ledger to an account."""
    if not in_flight or holder is None:
        return None
    if current is None:
        return (f"{in_flight} jobs of this ledger are in flight under {holder}, and GET /v2/me did not say "
                "which account this key belongs to; nothing was sent. Run again when the API answers")
    if holder.same_account(current):
        return None
    return (f"this key belongs to {current}, but {in_flight} jobs of this ledger are in flight under "
            f"{holder}: their jobs are invisible to this key. Nothing was sent. Run with that account's "
            "key, or use another --ledger for this account")


def _in_flight_rows(ledger: Ledger, columns: list[str]) -> pl.LazyFrame:
    """Rows of the whole ledger (every manifest) with a job or an intent that may have made one.
    Read before the run writes anything, so a lazy scan is safe."""
    return ledger.scan(["status", "idempotency_key", *columns]).filter(
        pl.col("status").is_in(list(IN_FLIGHT))
        | ((pl.col("status") == PENDING) & pl.col("idempotency_key").is_not_null()))


def in_flight_anywhere(ledger: Ledger) -> int:
    return _in_flight_rows(ledger, []).select(pl.len()).collect().item()


def account_in_runs(ledger: Ledger, ledger_path: Path) -> tuple[Account | None, str]:
    """The account the runs table names for the runs that last changed the in-flight rows: only
    the holder's run can have changed them. (None, why) when it cannot name one: a run that left
    no row there (killed), no account recorded, several accounts, or a runs table it cannot read."""
    run_ids = _in_flight_rows(ledger, ["run_id"]).select("run_id").unique().collect()["run_id"].to_list()
    try:
        runs = read_runs(ledger_path)
    except Exception as exc:  # noqa: BLE001 - a damaged runs table names nobody; the caller refuses
        return None, f"{runs_path(ledger_path)} cannot be read ({type(exc).__name__})"
    runs = runs.filter(pl.col("run_id").is_in(run_ids))
    accounts = {Account(user, team) for user, team in zip(runs["account_user_id"], runs["account_team_id"])
                if user or team}
    missing = set(run_ids) - set(runs["run_id"].to_list())
    if missing or not accounts:
        return None, (f"the runs table has no account for run {sorted(map(str, missing or run_ids))[0]}, "
                      "which left jobs in flight")
    if len(accounts) > 1:
        return None, "the runs table names several accounts for the jobs in flight"
    return accounts.pop(), ""


PROOF_READS = 20  # in-flight jobs read back to prove this key's account made them (GETs, no spending)


async def unseen_by_this_key(client: ApiClient, ledger: Ledger) -> str | None:
    """Why the jobs in flight cannot be shown to belong to this key's account (None: they can).
    The spec's 404 reads "Job not found, or owned by a different user", so a job read back is one
    this account made; every job read must be, and an intent alone proves nothing."""
    job_ids = _in_flight_rows(ledger, ["job_id"]).select("job_id").collect()["job_id"]
    shown = job_ids.drop_nulls().unique().sort().head(PROOF_READS).to_list()
    if not shown:
        return "no job in flight has a job id yet to read back with this key"
    for job_id in shown:
        seen = await read_job(client, job_id)
        if seen.error is not None or seen.job is None:
            return f"job {job_id} does not read back with this key ({seen.error or 'no answer'})"
    return None


def unknown_account_refusal(problem: str, flying: int, named: Account | None, why: str,
                          current: Account | None) -> str | None:
    """With the account file missing or damaged while `flying` jobs are in flight: why this run may
    not spend (None: the runs table names `current` as their holder, and it may)."""
    if named is not None and current is not None and named.same_account(current):
        return None
    holder = f"the runs table names {named} as their account" if named else f"no account is known for them ({why})"
    key = f"this key belongs to {current}" if current else "GET /v2/me did not say which account this key belongs to"
    what = ("run with that account's key (the file is then written again)" if named
            else "restore the file from a backup: it names the account that made these jobs")
    return (f"{problem}, and {flying} jobs of this ledger are in flight: {holder}; {key}. Nothing was "
            f"sent. {what[0].upper()}{what[1:]}")


async def settle_account(client: ApiClient, ledger: Ledger, ledger_path: Path | None, in_flight: int,
                         spends: bool, log: RunLog) -> tuple[Account | None, str | None]:
    """GET /v2/me before any spending request: this key's account, and why the run may not start
    (None: it may). A refusal names both accounts; the account file is written before the run spends.
    NoContact: the key was refused, or (nothing in flight) the API could not be connected to.
    `in_flight`: the plan's rows with a job or intent to follow; `spends`: it has attempts to pay for."""
    if not in_flight and not spends:
        return None, None  # nothing to follow or pay for: a no-op rerun sends no request at all
    account = None
    try:  # the run's first request: with nothing in flight, an API not there at all fails fast
        account = account_of(await (client.me() if in_flight else first_contact(client)))
    except AuthError as exc:  # in flight: first_contact words its own
        raise key_refused(exc) from None
    except (ApiError, OSError) as exc:  # an API reached but failing (NoContact is neither): the run goes on
        log.event("account_unknown", reason=redact(str(exc)))
    if ledger_path is None:
        return account, None
    try:
        holder = read_account_file(ledger_path)
        problem = None if holder is not None else f"{account_path(ledger_path)} is missing"
    except AccountFileError as exc:
        holder, problem = None, str(exc)
    if problem is not None:
        # The account file is gone or damaged: the runs table must name the account of anything in
        # flight, and only that account's key may go on (and write the file again).
        flying = in_flight_anywhere(ledger)
        if flying:
            named, why = account_in_runs(ledger, ledger_path)
            if named is None and account is not None:
                try:
                    unseen = await unseen_by_this_key(client, ledger)
                except AuthError as exc:
                    return account, exc.stop_reason
                if unseen is None:  # every in-flight job read back: they are this account's
                    named = account
                    log.event("account_proven", holder=str(account), reason=why)
                else:
                    why = f"{why}; {unseen}"
            reason = unknown_account_refusal(problem, flying, named, why, account)
            if reason:
                log.event("account_refused", reason=reason)
                return account, reason
            holder = named
            log.event("account_restored", holder=str(named), reason=problem)
        elif account_path(ledger_path).exists():
            log.event("account_file_replaced", reason=problem)  # nothing in flight: it ties nothing
    if holder is not None and (account is None or not holder.same_account(account)):
        in_flight = in_flight_anywhere(ledger)  # other manifests' jobs in this ledger count too
    reason = refusal(holder, account, in_flight)
    if reason:
        log.event("account_refused", reason=reason)
        return account, reason
    if account is not None and (holder != account or problem is not None):
        write_account_file(ledger_path, account)  # durable before the first spending request
        if holder is not None and not holder.same_account(account):
            log.event("account_changed", previous=str(holder), now=str(account))
    return account, None
