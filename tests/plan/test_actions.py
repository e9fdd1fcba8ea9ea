"""Every cell of pipeline/plan/actions.py's table: what the ledger holds for a row x what the run is
asked -> the row's Action and what the plan says it may spend.

Each case writes a real manifest, a real Ledger (journaled, then opened read-only as `plan` and
`run` open it) and, where it matters, a real video file and a real review verdict; then it plans.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.manifest.load import load_manifest
from pipeline.manifest.identity import job_key_for, legacy_slug
from pipeline.plan.actions import ACTIONS, SPENDING, Action, Plan, keep_ledger_keys, make_plan
from pipeline.plan.reviewed import make_reviewed_plan
from pipeline.store.ledger import Ledger
from pipeline.store.schema import COMPLETED, DOWNLOADED, FAILED, PENDING, PROCESSING, REJECTED, SUBMITTED
from pipeline.review.decide import make_verdict
from pipeline.store.verdicts import VerdictLog, read_verdicts

JOB = "7f1c1e49-5f36-4b0e-9d4e-0c2f7a9d3b11"
KEY = "idem-clip-1"
CLIP_BYTES = 1000
CREDITS = 15  # a 10-second clip (pipeline/models.py)
MANIFEST = "jobs:\n  - id: clip\n    prompt: a red fox in fresh snow\n    duration: 10\n"

# What the row's ledger holds: a status, and whether its job_id, Idempotency-Key and video file exist.
NEW = None


def state(status: str, *, job_id: bool = False, key: bool = False, file: str | None = None,
          changed: bool = False) -> dict:
    """file: None (no output recorded), "there" (the recorded file, at its recorded size), "gone"
    (recorded, not on disk) or "resized" (there, but not the recorded size). changed: the manifest
    now asks for another request than the ledger row's."""
    return {"status": status, "job_id": job_id, "key": key, "file": file, "changed": changed}


# (name, ledger row, --retry-failed, review verdict, expected action)
CASES = [
    ("new row", NEW, False, None, Action.SUBMIT),
    ("new row, --retry-failed", NEW, True, None, Action.SUBMIT),
    ("downloaded, file there", state(DOWNLOADED, job_id=True, key=True, file="there"), False, None, Action.SKIP),
    ("downloaded, file there at another size: the name is trusted", state(DOWNLOADED, job_id=True, key=True,
                                                                             file="resized"), False, None, Action.SKIP),
    ("downloaded, file gone", state(DOWNLOADED, job_id=True, key=True, file="gone"), False, None, Action.DOWNLOAD),
    ("downloaded, no output recorded", state(DOWNLOADED, job_id=True, key=True), False, None, Action.DOWNLOAD),
    ("completed", state(COMPLETED, job_id=True, key=True), False, None, Action.DOWNLOAD),
    ("completed, --retry-failed", state(COMPLETED, job_id=True, key=True), True, None, Action.DOWNLOAD),
    ("submitted with a job id", state(SUBMITTED, job_id=True, key=True), False, None, Action.TRACK),
    ("processing with a job id", state(PROCESSING, job_id=True, key=True), False, None, Action.TRACK),
    ("submitted without a job id", state(SUBMITTED, key=True), False, None, Action.SUBMIT),
    ("pending with a journaled intent", state(PENDING, key=True), False, None, Action.RESUME),
    ("pending with an intent, --retry-failed", state(PENDING, key=True), True, None, Action.RESUME),
    ("pending without an intent", state(PENDING), False, None, Action.SUBMIT),
    ("failed", state(FAILED, job_id=True, key=True), False, None, Action.LEAVE_FAILED),
    ("failed, --retry-failed", state(FAILED, job_id=True, key=True), True, None, Action.RETRY),
    ("rejected", state(REJECTED, key=True), False, None, Action.LEAVE_FAILED),
    ("rejected, --retry-failed: never retried", state(REJECTED, key=True), True, None, Action.LEAVE_FAILED),
    ("changed request, downloaded", state(DOWNLOADED, job_id=True, key=True, file="there", changed=True), False,
     None, Action.NEW_VERSION),
    ("changed request, in flight", state(PROCESSING, job_id=True, key=True, changed=True), False, None,
     Action.NEW_VERSION),
    ("changed request, pending intent", state(PENDING, key=True, changed=True), False, None, Action.NEW_VERSION),
    ("changed request, failed", state(FAILED, job_id=True, key=True, changed=True), False, None,
     Action.NEW_VERSION),
    ("downloaded, approved", state(DOWNLOADED, job_id=True, key=True, file="there"), False, "approve", Action.SKIP),
    ("downloaded, rejected in review: stays", state(DOWNLOADED, job_id=True, key=True, file="there"), False,
     "reject", Action.SKIP),
    ("downloaded, regenerate verdict", state(DOWNLOADED, job_id=True, key=True, file="there"), False,
     "regenerate", Action.REGENERATE),
    ("failed, regenerate verdict", state(FAILED, job_id=True, key=True), False, "regenerate", Action.REGENERATE),
    ("rejected by the API, regenerate verdict", state(REJECTED, key=True), False, "regenerate",
     Action.REGENERATE),
    ("regenerate verdict, then the manifest row changed: the manifest wins",
     state(DOWNLOADED, job_id=True, key=True, file="there"), False, "regenerate then edit", Action.NEW_VERSION),
]


def write_ledger(tmp_path: Path, manifest: Path, row: dict, ledger_row: dict | None) -> Path:
    path = tmp_path / "ledger.parquet"
    with Ledger.open(path, run_id="r1") as ledger:
        if ledger_row is not None:
            fields = {name: row[name] for name in ("manifest", "row", "variation", "prompt", "duration",
                                                   "aspect_ratio", "model", "metadata", "credits_estimated")}
            fields |= {"status": ledger_row["status"], "attempts": 1, "credits_prior": 0,
                       "request_hash": "0" * 64 if ledger_row["changed"] else row["request_hash"]}
            if ledger_row["job_id"]:
                fields |= {"job_id": JOB, "credits_charged": CREDITS}
            if ledger_row["key"]:
                fields |= {"idempotency_key": KEY, "request_body": '{"model":"grok-imagine-video"}'}
            if ledger_row["file"]:
                video = tmp_path / "out" / "clip.mp4"
                video.parent.mkdir(exist_ok=True)
                if ledger_row["file"] != "gone":
                    video.write_bytes(b"v" * (CLIP_BYTES + (ledger_row["file"] == "resized")))
                fields |= {"output_path": str(video), "bytes": CLIP_BYTES}
            ledger.record("clip", **fields)
        ledger.commit_sync()
    return path


def give_verdict(ledger_path: Path, word: str) -> None:
    with Ledger.open(ledger_path, readonly=True) as ledger:
        row = ledger.get("clip")
    record = make_verdict(row, "clip", word, reviewer="ann", decisions=read_verdicts(ledger_path))
    VerdictLog(ledger_path).append(record)


def plan_case(tmp_path: Path, ledger_row: dict | None, retry_failed: bool, verdict: str | None) -> Plan:
    manifest = tmp_path / "clips.yaml"
    manifest.write_text(MANIFEST)
    rows = load_manifest(manifest)
    ledger_path = write_ledger(tmp_path, manifest, rows.row(0, named=True), ledger_row)
    if verdict is not None:
        give_verdict(ledger_path, verdict.split()[0])
    if verdict == "regenerate then edit":
        manifest.write_text(MANIFEST.replace("fresh snow", "deep snow"))
        rows = load_manifest(manifest)
    with Ledger.open(ledger_path, readonly=True) as ledger:
        if verdict is None:
            plan = make_plan(rows, ledger, retry_failed=retry_failed, manifest=manifest.resolve())
            reviewed = make_reviewed_plan(rows, ledger, read_verdicts(ledger_path), retry_failed=retry_failed,
                                          manifest=manifest.resolve())
            assert reviewed.rows["action"].to_list() == plan.rows["action"].to_list()  # no verdict: the same
            return plan
        return make_reviewed_plan(rows, ledger, read_verdicts(ledger_path), retry_failed=retry_failed,
                                  manifest=manifest.resolve())


@pytest.mark.parametrize("name, ledger_row, retry_failed, verdict, action", CASES, ids=[c[0] for c in CASES])
def test_a_rows_action_and_what_it_may_spend(tmp_path, name, ledger_row, retry_failed, verdict, action):
    plan = plan_case(tmp_path, ledger_row, retry_failed, verdict)
    assert plan.rows.height == 1 and plan.rows["action"][0] == action
    assert plan.counts[action] == 1 and sum(plan.counts.values()) == 1
    assert plan.credits_total == CREDITS
    # Only an action that may create a job may spend: then one attempt's price, else nothing.
    assert plan.credits_to_spend == (CREDITS if action in SPENDING else 0)
    ran = plan.to_run(longest_first=True)["job_key"].to_list()
    assert ran == ([] if action in (Action.SKIP, Action.LEAVE_FAILED) else ["clip"])


def test_the_table_reaches_every_action():
    assert {case[-1] for case in CASES} == set(ACTIONS) == set(Action)


def test_what_may_spend():
    assert set(SPENDING) == {Action.RESUME, Action.SUBMIT, Action.RETRY, Action.NEW_VERSION, Action.REGENERATE}


# -- earlier versions (`<key>@<hash>`) that may hold a paid job: followed, never made again --

VERSIONS = [
    ("in flight", {"status": PROCESSING, "job_id": JOB, "idempotency_key": KEY}, Action.TRACK),
    ("finished, not downloaded", {"status": COMPLETED, "job_id": JOB, "idempotency_key": KEY}, Action.DOWNLOAD),
    ("journaled intent", {"status": PENDING, "idempotency_key": KEY}, Action.RESUME),
    ("pending without an intent", {"status": PENDING}, None),
    ("downloaded", {"status": DOWNLOADED, "job_id": JOB, "idempotency_key": KEY}, None),
    ("failed", {"status": FAILED, "job_id": JOB, "idempotency_key": KEY}, None),
]


@pytest.mark.parametrize("name, fields, action", VERSIONS, ids=[v[0] for v in VERSIONS])
def test_an_earlier_version_is_followed_only_while_it_may_hold_a_paid_job(tmp_path, name, fields, action):
    manifest = tmp_path / "clips.yaml"
    manifest.write_text(MANIFEST)
    rows = load_manifest(manifest)
    row = rows.row(0, named=True)
    path = tmp_path / "ledger.parquet"
    with Ledger.open(path, run_id="r1") as ledger:
        ledger.record("clip@00000000", manifest=row["manifest"], row=1, variation=1, prompt="an older prompt",
                      duration=10, aspect_ratio="16:9", model=row["model"], metadata="{}", request_hash="0" * 64,
                      credits_estimated=CREDITS, attempts=1, **fields)
        ledger.commit_sync()
    with Ledger.open(path, readonly=True) as ledger:
        plan = make_plan(rows, ledger, retry_failed=True, manifest=manifest.resolve())
    actions = dict(plan.rows.select("job_key", "action").iter_rows())
    assert actions.pop("clip") == Action.SUBMIT
    assert actions == ({} if action is None else {"clip@00000000": action})
    # A version followed is never a new attempt: it spends only what its intent may already have.
    assert plan.credits_to_spend == CREDITS + (CREDITS if action is Action.RESUME else 0)


# -- a row whose id another manifest holds with another request --


@pytest.mark.parametrize("take_over", [False, True])
def test_an_id_another_manifest_holds_is_shared_unless_taken_over(tmp_path, take_over):
    manifest = tmp_path / "clips.yaml"
    manifest.write_text(MANIFEST)
    rows = load_manifest(manifest)
    path = tmp_path / "ledger.parquet"
    other = str(tmp_path / "other.yaml")
    with Ledger.open(path, run_id="r1") as ledger:
        ledger.record("clip", manifest=other, status=DOWNLOADED, request_hash="0" * 64, idempotency_key=KEY)
        ledger.record("gone", manifest=str(manifest.resolve()), status=FAILED, request_hash="1" * 64)
        ledger.commit_sync()
    with Ledger.open(path, readonly=True) as ledger:
        plan = make_plan(rows, ledger, retry_failed=False, manifest=manifest.resolve(), take_over=take_over)
    assert plan.rows["action"].to_list() == [Action.NEW_VERSION]
    assert plan.orphans == 1  # `gone`: a row of this manifest it no longer lists
    if take_over:
        assert plan.shared.height == 0 and plan.shared_ids_refusal(path) is None
    else:
        assert plan.shared.to_dicts() == [{"job_key": "clip", "row": 1, "held_by": other}]
        assert "1 ids (clip) are rows of" in plan.shared_ids_refusal(path)


def test_a_frame_plans_as_the_ledger_does(tmp_path):
    """make_plan takes a ledger frame as well as a Ledger, and plans the same from either."""
    manifest = tmp_path / "clips.yaml"
    manifest.write_text(MANIFEST)
    rows = load_manifest(manifest)
    path = write_ledger(tmp_path, manifest, rows.row(0, named=True), state(FAILED, job_id=True, key=True))
    with Ledger.open(path, readonly=True) as ledger:
        from_ledger = make_plan(rows, ledger, retry_failed=True, manifest=manifest.resolve())
        frame = ledger.frame()
    from_frame = make_plan(rows, frame, retry_failed=True, manifest=manifest.resolve())
    assert from_frame.rows["action"].to_list() == from_ledger.rows["action"].to_list() == [Action.RETRY]
    assert isinstance(from_frame.rows, pl.DataFrame) and from_frame.counts == from_ledger.counts


# -- accented rows of a ledger made before slugs transliterated: the key the ledger knows wins --

ACCENTED = "jobs:\n  - prompt: Un café à Paris\n    duration: 10\n  - prompt: a red fox\n    duration: 10\n" \
           "  - id: cafe\n    prompt: Un café à Lyon\n    duration: 10\n"


def _keys(rows: pl.DataFrame) -> tuple[str, str]:
    """(the new key, the key the first release made) of the accented row."""
    row = rows.row(0, named=True)
    return row["job_key"], job_key_for(None, 1, row["request_hash"], legacy_slug(row["prompt"]))


def _hold(path: Path, rows: pl.DataFrame, keys: list[str], **fields) -> None:
    row = rows.row(0, named=True)
    with Ledger.open(path, run_id="r1") as ledger:
        for key in keys:
            ledger.record(key, **{name: row[name] for name in ("manifest", "row", "variation", "prompt", "duration",
                                                              "aspect_ratio", "model", "metadata",
                                                              "credits_estimated", "request_hash")},
                          status=DOWNLOADED, attempts=1, credits_prior=0, job_id=JOB, credits_charged=CREDITS,
                          idempotency_key=f"vb-{key}-a1-{'0' * 16}", **fields)
        ledger.commit_sync()


@pytest.mark.parametrize("held, kept", [
    ("old", "old"),  # made by the first release: keeps its key, and so its video and its one payment
    ("new", "new"),
    ("both", "new"),  # the new key is in the ledger already: it is the row's
    ("neither", "new"),  # a row never made gets the new key
])
def test_an_accented_row_keeps_the_key_its_ledger_knows(tmp_path, held, kept):
    manifest = tmp_path / "clips.yaml"
    manifest.write_text(ACCENTED)
    rows = load_manifest(manifest)
    new, old = _keys(rows)
    assert (new.rsplit("-", 1)[0], old.rsplit("-", 1)[0]) == ("un-cafe-a-paris", "un-caf-paris")
    path = tmp_path / "ledger.parquet"
    _hold(path, rows, {"old": [old], "new": [new], "both": [old, new], "neither": []}[held])
    with Ledger.open(path, readonly=True) as ledger:
        plan = make_plan(rows, ledger, retry_failed=False, manifest=manifest.resolve())
        assert keep_ledger_keys(rows, ledger.frame())["job_key"].to_list() == plan.rows["job_key"].to_list()
    expected = {"old": old, "new": new}[kept]
    assert plan.rows["job_key"].to_list() == [expected, *rows["job_key"].to_list()[1:]]  # ASCII, id: as they were
    assert plan.rows["action"][0] == (Action.SUBMIT if held == "neither" else Action.DOWNLOAD)  # no file here
    assert plan.orphans == (1 if held == "both" else 0)  # the old row, once the new one is the manifest's


def test_a_prompt_edited_in_review_on_an_old_key_stays_that_row_s_edit(tmp_path):
    # The first release made the row under its old key, a reviewer edited its prompt, and the edit
    # was made: the ledger row holds the edited request. The verdict names the old key, so the row
    # must keep it before the verdicts are matched, or it would look changed and be made again.
    manifest = tmp_path / "clips.yaml"
    manifest.write_text(ACCENTED)
    rows = load_manifest(manifest)
    _, old = _keys(rows)
    path = tmp_path / "ledger.parquet"
    _hold(path, rows, [old])
    with Ledger.open(path, readonly=True) as ledger:
        record = make_verdict(ledger.get(old), old, "regenerate", prompt="Un café à Lyon, la nuit",
                              reviewer="ann", decisions=read_verdicts(path))
    VerdictLog(path).append(record)
    with Ledger.open(path, run_id="r2") as ledger:  # the regeneration, made
        ledger.record(old, prompt=record["prompt"], request_hash=record["request_hash"], attempts=2,
                      idempotency_key=f"vb-{old}-a2-{'1' * 16}")
        ledger.commit_sync()
    with Ledger.open(path, readonly=True) as ledger:
        plan = make_reviewed_plan(rows, ledger, read_verdicts(path), retry_failed=False,
                                  manifest=manifest.resolve())
    first = plan.rows.row(0, named=True)
    assert (first["job_key"], first["action"], first["from_review"]) == (old, Action.DOWNLOAD, "edited prompt")
    assert plan.credits_to_spend == 2 * CREDITS  # the two other rows, never made: only they are to make
