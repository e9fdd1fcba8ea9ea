"""Whose jobs a ledger follows: the Apiframe account (user and team) behind the key.

A job is visible only to the account that made it: the spec's 404 reads "Job not found, or owned
by a different user". So a run with a key of another account would see every in-flight job of
this ledger as unknown. Such a run refuses to start, before any spending request, naming both
accounts. The owner of the in-flight jobs is kept beside the ledger (`<stem>.account.json`),
written before any run spends, so a run killed mid-way still leaves it behind; each run's
account also goes into the runs table.

Two keys of one user and team are one account: the key id is recorded but does not decide.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.api.client import ApiError, AuthError
from pipeline.redact import redact
from pipeline.store.atomic import write_text_atomic
from pipeline.store.schema import IN_FLIGHT, PENDING

if TYPE_CHECKING:
    from pipeline.api.client import ApiClient
    from pipeline.runlog import RunLog
    from pipeline.store.ledger import Ledger


@dataclass(frozen=True)
class Account:
    user_id: str | None
    team_id: str | None
    key_id: str | None = None

    def same_owner(self, other: Account) -> bool:
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


def owner_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(f"{ledger_path.stem}.account.json")


def read_owner(ledger_path: Path) -> Account | None:
    try:
        data = json.loads(owner_path(ledger_path).read_text())
        return Account(data.get("user_id"), data.get("team_id"), data.get("key_id"))
    except (OSError, ValueError, AttributeError):
        return None


def write_owner(ledger_path: Path, account: Account) -> None:
    """Atomically, and durably before the run's first spending request."""
    write_text_atomic(owner_path(ledger_path), json.dumps(asdict(account)), mode=0o666)


def refusal(owner: Account | None, current: Account | None, in_flight: int) -> str | None:
    """Why this run may not start (None: it may). Only in-flight jobs tie a ledger to an account."""
    if not in_flight or owner is None:
        return None
    if current is None:
        return (f"{in_flight} jobs of this ledger are in flight under {owner}, and GET /v2/me did not say "
                "which account this key belongs to; nothing was sent. Run again when the API answers")
    if owner.same_owner(current):
        return None
    return (f"this key belongs to {current}, but {in_flight} jobs of this ledger are in flight under "
            f"{owner}: their jobs are invisible to this key. Nothing was sent. Run with that account's "
            "key, or use another --ledger for this account")


def in_flight_anywhere(ledger: Ledger) -> int:
    """Rows of the whole ledger (every manifest) with a job or an intent that may have made one.
    Read before the run writes anything, so a lazy scan is safe."""
    rows = ledger.scan(["status", "idempotency_key"]).filter(
        pl.col("status").is_in(list(IN_FLIGHT))
        | ((pl.col("status") == PENDING) & pl.col("idempotency_key").is_not_null()))
    return rows.select(pl.len()).collect().item()


async def settle_account(client: ApiClient, ledger: Ledger, ledger_path: Path | None, in_flight: int,
                         spends: bool, log: RunLog) -> tuple[Account | None, str | None]:
    """GET /v2/me before any spending request: this key's account, and why the run may not start
    (None: it may). A refusal names both accounts; the owner file is written before the run spends.
    `in_flight`: the plan's rows with a job or intent to follow; `spends`: it has attempts to pay for."""
    if not in_flight and not spends:
        return None, None  # nothing to follow or pay for: a no-op rerun sends no request at all
    account = None
    try:
        account = account_of(await client.me())
    except AuthError as exc:
        return None, exc.stop_reason
    except (ApiError, OSError) as exc:
        log.event("account_unknown", reason=redact(str(exc)))
    if ledger_path is None:
        return account, None
    owner = read_owner(ledger_path)
    if owner is not None and (account is None or not owner.same_owner(account)):
        in_flight = in_flight_anywhere(ledger)  # other manifests' jobs in this ledger count too
    reason = refusal(owner, account, in_flight)
    if reason:
        log.event("account_refused", reason=reason)
        return account, reason
    if account is not None and owner != account:
        write_owner(ledger_path, account)  # durable before the first spending request
        if owner is not None and not owner.same_owner(account):
            log.event("account_changed", previous=str(owner), now=str(account))
    return account, None
