"""Slugs now transliterate accents (`un-cafe-a-paris`), yet a ledger made before keeps its keys:
a rerun of the same manifest submits nothing and pays nothing.

The old ledger is made by the code of the last commit before the change (69f2a66, `git archive`d
into a folder and run as the user ran it); where the repository lacks that commit (a shallow
clone), by today's code with its slug set back to `legacy_slug`. Every test ends by judging the
books by the emulator's own records (harness.check_books).

Covers: pipeline/plan/actions.py pipeline/manifest/identity.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.emulator import EmulatorConfig, EmulatorThread, Faults
from pipeline.manifest.identity import legacy_slug, slug
from pipeline.review.decide import make_verdict
from pipeline.store.ledger import Ledger
from pipeline.store.verdicts import VerdictLog, read_verdicts
from tests.harness import (
    REPO,
    TEST_KEY,
    check_books,
    cli_env,
    kill_old_run_mid_batch,
    ledger,
    old_code,
    run_args,
    run_cli,
    run_old,
    write_manifest,
)

BEFORE = "69f2a66"  # the last commit whose slug dropped accented letters
# The current code, its slug set back to the old one: only where BEFORE cannot be had.
_LEGACY_MAIN = ("import sys, runpy, pipeline.manifest.identity as i, pipeline.manifest.load as l; "
                "l.slug = i.legacy_slug; sys.argv[0] = 'videobatch'; runpy.run_module('pipeline', run_name='__main__')")

ACCENTED = [
    {"prompt": "Un café à Paris, la pluie sur les vitres", "duration": 6},
    {"prompt": "Crème brûlée sous un chalumeau", "duration": 6, "aspect_ratio": "1:1"},
    {"prompt": "Straße im Regen, Łódź bei Nacht", "duration": 6, "count": 2},
    {"prompt": "a red fox in the snow", "duration": 6},  # ASCII: the same key either way
    {"id": "facade", "prompt": "Façade au crépuscule", "duration": 6},  # an id: no slug in its key
]
ADDED = [{"prompt": "Église de Saint-Étienne à l'aube", "duration": 6}]


def _old_code(tmp: Path, maker: str) -> Path | None:
    """A folder holding the `pipeline` package as it was at BEFORE, or None without that commit
    (or when the test asks for the fallback)."""
    return old_code(tmp, BEFORE) if maker == BEFORE else None


def _run_old(tmp: Path, *args: str, env: dict[str, str], maker: str = BEFORE) -> subprocess.CompletedProcess:
    """`videobatch ARGS` as the code before the change ran it."""
    old = _old_code(tmp, maker)
    if old is not None:
        return run_old(old, *args, env=env, cwd=tmp)
    return subprocess.run([sys.executable, "-c", _LEGACY_MAIN, *args], env={**env, "PYTHONPATH": str(REPO)},
                          cwd=tmp, capture_output=True, text=True, timeout=120)


def _new_env(base_url: str) -> dict[str, str]:
    return cli_env(base_url, PYTHONPATH=str(REPO))


# The old ledger made by the old code itself, and by the fallback (which must make the same keys).
@pytest.mark.parametrize("maker", [BEFORE, "legacy_slug"])
def test_an_old_ledger_s_accented_rows_keep_their_keys_and_nothing_is_paid_again(emulator_thread, tmp_path, maker):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", ACCENTED)
    old = _run_old(tmp_path, *run_args(manifest, tmp_path), env=cli_env(emu.base_url), maker=maker)
    assert old.returncode == 0, old.stdout + old.stderr
    before = ledger(tmp_path)
    old_keys = set(before["job_key"])
    # The old code's keys: the id, and legacy slugs (`un-caf-paris-...`), which today's slug no longer makes.
    slugs = {legacy_slug(row["prompt"]) for row in ACCENTED if "id" not in row}
    assert {key.rsplit("-", 1)[0] for key in old_keys if key != "facade"} == slugs and "facade" in old_keys
    assert "un-caf-paris-la-pluie-sur-les" in slugs
    assert len(slugs - {slug(row["prompt"]) for row in ACCENTED}) == 3  # three rows' keys would change
    jobs_before, charged_before = len(emu.stats()["jobs"]), emu.stats()["credits"]["charged"]
    assert jobs_before == 6  # five rows, one of them two variations

    plan = run_cli("plan", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"),
                   env=_new_env(emu.base_url), cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    for key in old_keys:  # each row under its old key, and nothing to make
        assert re.search(rf"\b{re.escape(key)}\b.*\bskip$", plan.stdout, re.MULTILINE), plan.stdout

    again = run_cli(*run_args(manifest, tmp_path), env=_new_env(emu.base_url), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    after = ledger(tmp_path)
    assert set(after["job_key"]) == old_keys
    stats = emu.stats()
    assert (len(stats["jobs"]), stats["credits"]["charged"]) == (jobs_before, charged_before)  # nothing paid again
    check_books(stats, after, in_flight_ok=False)
    # The videos stay under their names: nothing was fetched again, nothing renamed.
    assert sorted(Path(p).name for p in after["output_path"]) == sorted(f"{k}.mp4" for k in old_keys)

    # A row added since gets the new slug; the old rows keep theirs, in the same ledger.
    write_manifest(manifest, ACCENTED + ADDED)
    added = run_cli(*run_args(manifest, tmp_path), env=_new_env(emu.base_url), cwd=tmp_path)
    assert added.returncode == 0, added.stdout + added.stderr
    grown = ledger(tmp_path)
    [new_key] = set(grown["job_key"]) - old_keys
    assert new_key.startswith("eglise-de-saint-etienne-a-l-aube-"), new_key
    stats = emu.stats()
    assert len(stats["jobs"]) == jobs_before + 1
    check_books(stats, grown, in_flight_ok=False)


def test_a_fresh_ledger_gets_transliterated_keys_and_file_names(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", ACCENTED[:1])
    done = run_cli(*run_args(manifest, tmp_path), env=_new_env(emu.base_url), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = ledger(tmp_path)
    [key] = rows["job_key"].to_list()
    assert re.fullmatch(r"un-cafe-a-paris-la-pluie-sur-les-[0-9a-f]{12}", key), key
    assert Path(rows["output_path"][0]).name == f"{key}.mp4" and Path(rows["output_path"][0]).is_file()
    check_books(emu.stats(), rows, in_flight_ok=False)


def test_reconcile_over_an_old_ledger_finds_every_row_and_adopts_nothing(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", ACCENTED[:3])
    old = _run_old(tmp_path, *run_args(manifest, tmp_path), env=cli_env(emu.base_url))
    assert old.returncode == 0, old.stdout + old.stderr
    found = run_cli("reconcile", str(manifest), "--ledger", str(tmp_path / "ledger.parquet"), "--json",
                    env=_new_env(emu.base_url), cwd=tmp_path)
    assert found.returncode == 0, found.stdout + found.stderr
    report = json.loads(found.stdout)["found"]
    assert (report["rows"], report["matched_rows"], report["books_agree"], report["adopt"]) == (4, 4, True, [])
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)


def test_an_old_row_s_regeneration_left_out_by_max_credits_is_made_later_under_its_old_key(emulator_thread, tmp_path):
    """A reviewer asks to regenerate an old ledger's accented row; a run under a --max-credits too
    small for it archives the reviewed clip and leaves the new attempt out. The next run still
    knows the row by its old key (only the archived version holds it now): one new paid attempt
    under that key, next to its versions and verdicts, and no clip under the new slug."""
    emu = emulator_thread()
    manifest = write_manifest(tmp_path / "m.yaml", ACCENTED[:1])
    old = _run_old(tmp_path, *run_args(manifest, tmp_path), env=cli_env(emu.base_url))
    assert old.returncode == 0, old.stdout + old.stderr
    [old_key] = ledger(tmp_path)["job_key"].to_list()
    ledger_path = tmp_path / "ledger.parquet"
    with Ledger.open(ledger_path, readonly=True) as book:
        reviewed = book.get(old_key)
    VerdictLog(ledger_path).append(make_verdict(reviewed, old_key, "regenerate", reviewer="ann",
                                                decisions=read_verdicts(ledger_path)))

    capped = run_cli(*run_args(manifest, tmp_path, "--max-credits", "5"), env=_new_env(emu.base_url), cwd=tmp_path)
    assert capped.returncode == 3, capped.stdout + capped.stderr  # left out, for the next run
    assert len(emu.stats()["jobs"]) == 1
    again = run_cli(*run_args(manifest, tmp_path), env=_new_env(emu.base_url), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = ledger(tmp_path)
    assert sorted(rows["job_key"]) == [old_key, f"{old_key}@{reviewed['request_hash'][:8]}"]  # no new-slug key
    current = rows.filter(pl.col("job_key") == old_key).row(0, named=True)
    assert current["attempts"] == 2 and current["status"] == "DOWNLOADED"
    stats = emu.stats()
    assert len(stats["jobs"]) == 2  # the old clip and its one regeneration
    check_books(stats, rows, in_flight_ok=False)
    again = run_cli(*run_args(manifest, tmp_path), env=_new_env(emu.base_url), cwd=tmp_path)
    assert again.returncode == 0 and len(emu.stats()["jobs"]) == 2, again.stdout + again.stderr  # made once


def test_an_old_run_killed_mid_batch_is_finished_by_today_s_code_under_the_old_keys(tmp_path):
    """The old code is SIGKILLed while its accented rows' submits are in the air (answers dropped
    after the job was made): intents under old keys, some only in the journal. Today's code
    resumes each under its old key and Idempotency-Key: no second job, no row under a new slug."""
    rows = [{"prompt": f"Crème brûlée n° {n}, à la française", "duration": 6} for n in range(16)]
    manifest = write_manifest(tmp_path / "m.yaml", rows)
    old = _old_code(tmp_path, BEFORE)
    if old is None:
        pytest.skip(f"the repository lacks {BEFORE}: the old code cannot be run")
    config = EmulatorConfig(api_key=TEST_KEY, credits=100_000, time_scale=0.1, rpm=0,
                            faults=Faults(seed=5, drop_after_create=0.5))
    with EmulatorThread(config) as emu:
        kill_old_run_mid_batch(old, manifest, tmp_path, emu)
        time.sleep(0.3)
        legacy = {legacy_slug(row["prompt"]) for row in rows}
        assert all(slug(row["prompt"]) not in legacy for row in rows)  # every key would change
        done = run_cli(*run_args(manifest, tmp_path), env=_new_env(emu.base_url), cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        stats = emu.stats()
    after = ledger(tmp_path)
    assert {key.rsplit("-", 1)[0] for key in after["job_key"]} == legacy and after.height == len(rows)
    assert len(stats["jobs"]) == len(rows)  # one job per row: every cut-off submit was settled, not made again
    check_books(stats, after, in_flight_ok=False)
