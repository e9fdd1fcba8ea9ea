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
from typing import Any

from pipeline.store.atomic import write_text_atomic


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
