"""pipeline/plan/reviewed.py: how a reviewer's verdicts change the next plan.

A regenerate verdict is an Action.REGENERATE row, made once; an edited prompt stands in for the
manifest's until the manifest's own row changes. Real manifest, real Ledger, real verdict log.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.manifest.identity import job_key_for, legacy_slug
from pipeline.manifest.load import load_manifest
from pipeline.plan.actions import Action, Plan
from pipeline.plan.reviewed import LABELS, make_reviewed_plan, pending_regenerations
from pipeline.store.ledger import Ledger
from pipeline.store.schema import DOWNLOADED, FAILED
from pipeline.review.decide import make_verdict
from pipeline.store.verdicts import VerdictLog, read_verdicts

MANIFEST = "jobs:\n  - id: clip\n    prompt: a red fox in fresh snow\n    duration: 10\n"
EDITED = "a red fox asleep in fresh snow"
CREDITS = 15


def setup(tmp_path: Path, status: str = DOWNLOADED, attempts: int = 2) -> tuple[Path, Path]:
    """A manifest of one row and a ledger where that row's attempt `attempts` ended `status`."""
    manifest = tmp_path / "clips.yaml"
    manifest.write_text(MANIFEST)
    row = load_manifest(manifest).row(0, named=True)
    ledger_path = tmp_path / "ledger.parquet"
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"v" * 100)
    with Ledger.open(ledger_path, run_id="r1") as ledger:
        ledger.record("clip", **{name: row[name] for name in (
            "manifest", "row", "variation", "prompt", "duration", "aspect_ratio", "model", "metadata",
            "request_hash", "credits_estimated")}, status=status, attempts=attempts, job_id="job-1",
            idempotency_key=f"idem-{attempts}", output_path=str(video), bytes=100)
        ledger.commit_sync()
    return manifest, ledger_path


def verdict(ledger_path: Path, word: str, prompt: str | None = None) -> None:
    with Ledger.open(ledger_path, readonly=True) as ledger:
        row = ledger.get("clip")
    VerdictLog(ledger_path).append(make_verdict(row, "clip", word, prompt=prompt, reviewer="ann",
                                                decisions=read_verdicts(ledger_path)))


def plan(manifest: Path, ledger_path: Path) -> Plan:
    with Ledger.open(ledger_path, readonly=True) as ledger:
        return make_reviewed_plan(load_manifest(manifest), ledger, read_verdicts(ledger_path),
                                  retry_failed=False, manifest=manifest.resolve())


def the_row(planned: Plan) -> dict:
    assert planned.rows.height == 1
    return planned.rows.row(0, named=True)


def test_a_regenerate_verdict_is_a_regenerate_row_priced_and_numbered_after_the_old_attempts(tmp_path):
    manifest, ledger_path = setup(tmp_path, attempts=2)
    verdict(ledger_path, "regenerate")
    planned = plan(manifest, ledger_path)
    row = the_row(planned)
    assert row["action"] == Action.REGENERATE and row["from_review"] == "regenerate"
    assert LABELS[row["from_review"]] == "review decision"
    assert row["attempts_before"] == 2  # the next attempt is 3: a new Idempotency-Key, a new video
    assert planned.counts[Action.REGENERATE] == 1 and planned.credits_to_spend == CREDITS


def test_a_regenerate_verdict_with_an_edited_prompt_makes_the_edited_request(tmp_path):
    manifest, ledger_path = setup(tmp_path, status=FAILED)
    verdict(ledger_path, "regenerate", prompt=EDITED)
    edit = read_verdicts(ledger_path).row(0, named=True)
    row = the_row(plan(manifest, ledger_path))
    assert row["action"] == Action.REGENERATE and row["from_review"] == "regenerate, edited prompt"
    assert LABELS[row["from_review"]] == "review decision, edited prompt"
    assert (row["prompt"], row["request_hash"]) == (EDITED, edit["request_hash"])
    assert edit["source_hash"] == load_manifest(manifest)["request_hash"][0]


def test_once_made_the_regeneration_is_done_and_the_edit_stands(tmp_path):
    manifest, ledger_path = setup(tmp_path)
    verdict(ledger_path, "regenerate", prompt=EDITED)
    edit_hash = read_verdicts(ledger_path)["request_hash"][0]
    with Ledger.open(ledger_path, run_id="r2") as ledger:  # what the next run leaves: attempt 3, the edit, made
        ledger.record("clip", prompt=EDITED, request_hash=edit_hash, attempts=3, idempotency_key="idem-3",
                      status=DOWNLOADED)
        ledger.commit_sync()
    with Ledger.open(ledger_path, readonly=True) as ledger:
        assert pending_regenerations(ledger, read_verdicts(ledger_path)).height == 0
    row = the_row(plan(manifest, ledger_path))
    assert row["action"] == Action.SKIP and row["prompt"] == EDITED  # never made twice
    assert row["from_review"] == "edited prompt" and LABELS[row["from_review"]] == "prompt edited in review"


def test_an_edited_manifest_row_wins_over_the_edit(tmp_path):
    manifest, ledger_path = setup(tmp_path)
    verdict(ledger_path, "regenerate", prompt=EDITED)
    manifest.write_text(MANIFEST.replace("fresh snow", "deep snow"))
    row = the_row(plan(manifest, ledger_path))
    assert row["action"] == Action.NEW_VERSION and row["prompt"] == "a red fox in deep snow"
    assert row["from_review"] is None


def test_a_run_stopped_after_archiving_the_reviewed_attempt_still_regenerates(tmp_path):
    """The row was renamed to its archived name and the new attempt not yet journaled: the archived
    version holds the reviewed attempt, so the regeneration is still to make."""
    manifest, ledger_path = setup(tmp_path, attempts=4)
    verdict(ledger_path, "regenerate")
    with Ledger.open(ledger_path, run_id="r2") as ledger:
        ledger.rename("clip", "clip@12345678")
        ledger.commit_sync()
    with Ledger.open(ledger_path, readonly=True) as ledger:
        pending = pending_regenerations(ledger, read_verdicts(ledger_path))
    assert pending.to_dicts() == [{"job_key": "clip", "pending_source": load_manifest(manifest)["request_hash"][0],
                                   "attempts_before": 4}]
    row = the_row(plan(manifest, ledger_path))
    assert row["action"] == Action.REGENERATE and row["attempts_before"] == 4


def test_approve_and_reject_change_nothing(tmp_path):
    manifest, ledger_path = setup(tmp_path)
    verdict(ledger_path, "approve")
    verdict(ledger_path, "reject")
    row = the_row(plan(manifest, ledger_path))
    assert row["action"] == Action.SKIP and row["from_review"] is None and row["attempts_before"] == 0


def test_an_old_ledger_s_accented_row_stopped_after_archiving_still_regenerates_under_its_key(tmp_path):
    """A row keyed by the first releases' slug (`un-caf-paris-...`, plan/actions.keep_ledger_keys)
    whose reviewed attempt was archived by a run that then made nothing (left out by --max-credits,
    or stopped): the ledger knows the row only by its archived version. It keeps its old key and
    is still a REGENERATE, not a SUBMIT under the new slug (another key: a clip made apart from its
    versions and verdicts)."""
    manifest = tmp_path / "clips.yaml"
    manifest.write_text("jobs:\n  - prompt: Un café à Paris\n    duration: 10\n")
    row = load_manifest(manifest).row(0, named=True)
    old_key = job_key_for(None, 1, row["request_hash"], legacy_slug(row["prompt"]))
    assert old_key != row["job_key"]
    ledger_path = tmp_path / "ledger.parquet"
    with Ledger.open(ledger_path, run_id="r1") as ledger:
        ledger.record(old_key, **{name: row[name] for name in (
            "manifest", "row", "variation", "prompt", "duration", "aspect_ratio", "model", "metadata",
            "request_hash", "credits_estimated")}, status=DOWNLOADED, attempts=1, job_id="job-1",
            idempotency_key="idem-1", output_path=str(tmp_path / f"{old_key}.mp4"), bytes=100)
        ledger.commit_sync()
        stored = ledger.get(old_key)
    VerdictLog(ledger_path).append(make_verdict(stored, old_key, "regenerate", reviewer="ann",
                                                decisions=read_verdicts(ledger_path)))
    assert the_row(plan(manifest, ledger_path))["job_key"] == old_key  # before the archive: kept
    with Ledger.open(ledger_path, run_id="r2") as ledger:
        ledger.rename(old_key, f"{old_key}@12345678")
        ledger.commit_sync()
    after = the_row(plan(manifest, ledger_path))
    assert (after["job_key"], after["action"], after["attempts_before"]) == (old_key, Action.REGENERATE, 1)
