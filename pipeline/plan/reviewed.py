"""Decides how reviewers' verdicts change the next plan: `plan` and `run` call this instead of make_plan.

- A regenerate verdict on the attempt the ledger still holds is a REGENERATE row: priced, made
  once (the runner archives the earlier video as a version, as for an edited manifest row) and
  marked `from_review`. Once a run has made a new attempt, the verdict no longer matches the
  row's attempt, so it is done: it is never made twice.
- An edited prompt stands in for the manifest's prompt of that row, on this run and on every
  later one, as long as the manifest still asks for what the reviewer saw (its request hash is
  the verdict's `source_hash`). So the edited clip, once made, is skipped like any finished row,
  and the manifest file is never rewritten. Edit the manifest row itself and the manifest wins.
- Approve and reject change nothing: a rejected clip stays as it is until someone asks for a
  regeneration.
- The new attempt continues the row's attempt numbering (`attempts_before`): its Idempotency-Key
  is then new, so the API makes a new video instead of handing back the one being replaced.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.store.archive import base_key_col
from pipeline.store.verdicts import Verdict, edits, latest
from pipeline.plan.actions import REGENERATE, RESUME, TRACK, Plan, count_actions, keep_ledger_keys, plan_kept_keys

# A row's `from_review`: the action's own word ("regenerate"), FROM_EDIT, or both.
FROM_EDIT = "edited prompt"
# How `plan` shows a row's `from_review` beside its action.
LABELS = {REGENERATE.value: "review decision", f"{REGENERATE}, {FROM_EDIT}": "review decision, edited prompt",
          FROM_EDIT: "prompt edited in review"}


def make_reviewed_plan(manifest_rows: pl.DataFrame, ledger, verdicts: pl.DataFrame,
                       *, retry_failed: bool, manifest: Path, take_over: bool = False) -> Plan:
    """make_plan, with reviewers' verdicts applied; rows gain `from_review` and `attempts_before`."""
    # Before the verdicts are matched by key: a verdict names the key the ledger knows the row by.
    rows = keep_ledger_keys(manifest_rows, ledger).with_columns(manifest_hash=pl.col("request_hash"))
    standing = edits(verdicts)
    if standing.height:
        rows = rows.join(standing, on="job_key", how="left", maintain_order="left")
        use = (pl.col("edit_source") == pl.col("request_hash")).fill_null(False)
        rows = rows.with_columns(
            prompt=pl.when(use).then(pl.col("edit_prompt")).otherwise(pl.col("prompt")),
            request_hash=pl.when(use).then(pl.col("edit_hash")).otherwise(pl.col("request_hash")),
            review_edit=use,
        ).drop("edit_prompt", "edit_hash", "edit_source")
    else:
        rows = rows.with_columns(review_edit=pl.lit(False))
    plan = plan_kept_keys(rows, ledger, retry_failed=retry_failed, manifest=manifest, take_over=take_over)

    pending = pending_regenerations(ledger, verdicts)
    out = plan.rows.join(pending, on="job_key", how="left", maintain_order="left")
    regenerate = ((pl.col("pending_source") == pl.col("manifest_hash")).fill_null(False)
                  & ~pl.col("action").is_in([TRACK, RESUME]))  # never the case for a final row; belt and braces
    out = out.with_columns(
        action=pl.when(regenerate).then(pl.lit(REGENERATE)).otherwise(pl.col("action")),
        from_review=pl.when(regenerate & pl.col("review_edit")).then(pl.lit(f"{REGENERATE}, {FROM_EDIT}"))
        .when(regenerate).then(pl.lit(REGENERATE.value))
        .when(pl.col("review_edit")).then(pl.lit(FROM_EDIT))
        .otherwise(pl.lit(None, dtype=pl.String)),
        attempts_before=pl.col("attempts_before").fill_null(0),
    ).drop("pending_source", "manifest_hash", "review_edit")
    return Plan(manifest=plan.manifest, rows=out, orphans=plan.orphans, counts=count_actions(out),
                shared=plan.shared)


def pending_regenerations(ledger, verdicts: pl.DataFrame) -> pl.DataFrame:
    """job_key, pending_source, attempts_before for each regenerate verdict no run has acted on.

    Not acted on: the row still holds the reviewed attempt, or (a run stopped between archiving
    the old version and journaling the new attempt) the row is gone and an archived version holds
    it. attempts_before is the highest attempt number any version of the key has used.
    """
    schema = {"job_key": pl.String, "pending_source": pl.String, "attempts_before": pl.Int64}
    wanted = latest(verdicts).filter(pl.col("decision") == Verdict.REGENERATE)  # the log's field name
    if not wanted.height:
        return pl.DataFrame(schema=schema)
    keys = set(wanted["job_key"].to_list())
    columns = ["job_key", "idempotency_key", "attempts"]
    source = ledger.scan(columns) if hasattr(ledger, "scan") else ledger.lazy().select(columns)  # a Ledger or a frame
    versions = source.with_columns(base=base_key_col()).filter(
        pl.col("base").is_in(list(keys))).collect()
    current: dict[str, str | None] = {}
    archived: dict[str, set[str]] = {}
    most: dict[str, int] = {}
    for key, idem, attempts, base in versions.iter_rows():
        if key == base:
            current[key] = idem
        else:
            archived.setdefault(base, set()).add(idem)
        most[base] = max(most.get(base, 0), attempts or 0)
    found = []
    for key, reviewed, source in wanted.select("job_key", "reviewed", "source_hash").iter_rows():
        if key in current:
            acted_on = current[key] != reviewed
        else:
            acted_on = reviewed not in archived.get(key, set())
        if not acted_on:
            found.append((key, source, most.get(key, 0)))
    return pl.DataFrame(found, schema=schema, orient="row")
