"""Does the I/O of pricing a plan from the catalog: `GET /v2/models?modality=video` read once per
plan or run, before anything is sent, kept beside the ledger (store/catalog.py), and its upper
bounds filled into the plan (plan/prices.py). A plan whose spending rows it cannot price is
refused, naming the models: a run never spends without an upper bound."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from pipeline.api.client import ApiClient, ApiError, AuthError, TransientError
from pipeline.models.pricing import read_catalog
from pipeline.plan.actions import Plan
from pipeline.plan.prices import needs_catalog, price_plan
from pipeline.redact import redact
from pipeline.run.account import key_refused, unreachable
from pipeline.run.outcome import ExitCode
from pipeline.store.catalog import keep_catalog


class CatalogRefusal(Exception):
    """Nothing was sent: the catalog could not be read, or does not price a model the plan
    would pay for. `exit_code` says which (2: the manifest or key, 3: try again, 4: no API)."""

    def __init__(self, message: str, exit_code: ExitCode):
        super().__init__(message)
        self.exit_code = exit_code


async def price_from_catalog(client: ApiClient, plan: Plan, ledger_path: Path, *, keep: bool = True) -> None:
    """Price the plan's rows of catalog-priced models (nothing to do for a grok-only plan)."""
    if not needs_catalog(plan):
        return
    try:
        answer = await client.catalog(first_contact=True)
    except AuthError as exc:
        raise CatalogRefusal(str(key_refused(exc)), ExitCode.BAD_INPUT) from None
    except TransientError as exc:
        if not exc.reached:
            refusal = unreachable(client.base_url, exc)
            raise CatalogRefusal(str(refusal), refusal.exit_code) from None
        raise CatalogRefusal(_unread(exc), ExitCode.STOPPED) from None
    except ApiError as exc:
        raise CatalogRefusal(_unread(exc), ExitCode.STOPPED) from None
    if keep:
        try:
            keep_catalog(ledger_path, answer, datetime.now(timezone.utc))
        except OSError:
            pass  # a trace only: the prices that count were just read, and the ledger's disk says its own faults
    unpriced = price_plan(plan, read_catalog(answer))
    if unpriced:
        raise CatalogRefusal(
            f"the model catalog (GET /v2/models?modality=video) gives no price for {', '.join(unpriced)}: "
            "without an upper bound its cost could pass --max-credits and the balance, so nothing was "
            "submitted. Remove those rows (or change their model) in the manifest, or run again once "
            "the catalog prices them", ExitCode.BAD_INPUT)


def _unread(exc: Exception) -> str:
    return (f"could not read the model catalog (GET /v2/models?modality=video): {redact(str(exc))}; nothing was "
            "submitted, since rows of catalog-priced models cannot be priced without it. Run the same "
            "command again in a few minutes")
