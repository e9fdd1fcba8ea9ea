"""Models, params and matrices (a898d72) left every key made before them as it was: a ledger and
manifests written by the code before (1177f48, `git archive`d and run as the user ran it) are
rerun by today's code, which submits nothing and pays nothing, and the ledger's rows keep their
keys, request hashes and files (issue 21, point 7).

The old ledger is written by the old code itself against the emulator on loopback; where the
repository lacks that commit (a shallow clone) the test is skipped, since only the old code can
say what it wrote. Every test ends by judging the books by the emulator's own records.

Covers: pipeline/manifest/identity.py pipeline/store/schema.py
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.emulator import Faults
from tests.harness import check_books, cli_env, kill_old_run_mid_batch, ledger, old_code, run_args, run_cli, run_old

BEFORE = "1177f48"  # the last commit before models had params
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

YAML = """\
defaults:
  duration: 10
  aspect_ratio: "9:16"
  campaign: winter
jobs:
  - prompt: A lighthouse beam sweeping over a stormy sea at night
  - id: keeper
    prompt: A lighthouse keeper climbing a spiral staircase
    model: grok-imagine-video
    duration: 6
    count: 2
  - prompt: Un café à Paris, la pluie sur les vitres
    aspect_ratio: "1:1"
    reference_images: [refs/cup.png]
    owner: ana
  - prompt: a red fox in the snow
    duration: 15
    aspect_ratio: "16:9"
"""
CSV = """\
prompt,duration,aspect_ratio,reference_images,owner
a koi pond under a bridge,6,16:9,refs/cup.png|refs/cup2.png,ben
an owl at dusk,10,,,
"""


def _project(folder: Path, name: str, text: str) -> Path:
    folder.mkdir()
    (folder / "refs").mkdir()
    (folder / "refs" / "cup.png").write_bytes(PNG)
    (folder / "refs" / "cup2.png").write_bytes(PNG + b"2")
    manifest = folder / name
    manifest.write_text(text)
    return manifest


@pytest.mark.parametrize("name, text, jobs", [("m.yaml", YAML, 5), ("m.csv", CSV, 2)])
def test_an_old_ledger_and_manifest_keep_their_keys_and_nothing_is_paid_again(emulator_thread, tmp_path, name,
                                                                              text, jobs):
    old = old_code(tmp_path, BEFORE)
    if old is None:
        pytest.skip(f"the repository lacks {BEFORE}: the old code cannot be run")
    emu = emulator_thread()
    project = tmp_path / "project"
    manifest = _project(project, name, text)
    made = run_old(old, *run_args(manifest, project), env=cli_env(emu.base_url), cwd=project)
    assert made.returncode == 0, made.stdout + made.stderr
    before = ledger(project)
    parts = sorted((project / "ledger.parquet").glob("part-*.parquet"))
    assert parts and all("params" not in pl.read_parquet_schema(part) for part in parts)  # the old layout
    assert before.height == jobs and before["params"].null_count() == jobs  # read as null today
    stats = emu.stats()
    assert len(stats["jobs"]) == jobs
    check_books(stats, before, in_flight_ok=False)

    planned = run_cli("plan", str(manifest), "--ledger", str(project / "ledger.parquet"),
                      env=cli_env(emu.base_url), cwd=project)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    # Every row found under its old key, downloaded; nothing to make.
    assert f"already downloaded: {jobs}; failed and left alone: 0" in planned.stdout, planned.stdout
    assert "to submit: 0 new," in planned.stdout and "a run would spend at most 0 credits" in planned.stdout

    again = run_cli(*run_args(manifest, project), env=cli_env(emu.base_url), cwd=project)
    assert again.returncode == 0, again.stdout + again.stderr
    after = ledger(project)
    assert sorted(after["job_key"]) == sorted(before["job_key"])
    kept = ("job_key", "request_hash", "job_id", "credits_charged", "sha256", "output_path", "model", "duration",
            "aspect_ratio")
    assert after.select(kept).sort("job_key").rows() == before.select(kept).sort("job_key").rows()
    assert after["params"].null_count() == after.height  # a row written without params has none
    stats = emu.stats()
    assert len(stats["jobs"]) == jobs and stats["credits"]["charged"] == before["credits_charged"].sum()
    check_books(stats, after, in_flight_ok=False)


def test_an_old_run_killed_mid_batch_is_finished_by_today_s_code_without_paying_twice(emulator_thread, tmp_path):
    """The old code is SIGKILLed while its submits are in the air (answers dropped after the job
    was made): intents and jobs under the old keys, some only in the journal. Today's code resumes
    each under its old key and Idempotency-Key, its body read back as the old code wrote it."""
    old = old_code(tmp_path, BEFORE)
    if old is None:
        pytest.skip(f"the repository lacks {BEFORE}: the old code cannot be run")
    rows = "".join(f"  - {{prompt: a gull over wave {n}, duration: {(6, 10, 15)[n % 3]}}}\n" for n in range(16))
    project = tmp_path / "project"
    manifest = _project(project, "m.yaml", "jobs:\n" + rows)
    emu = emulator_thread(time_scale=0.1, faults=Faults(seed=5, drop_after_create=0.5))
    kill_old_run_mid_batch(old, manifest, project, emu)
    done = run_cli(*run_args(manifest, project), env=cli_env(emu.base_url), cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = emu.stats()
    after = ledger(project)
    assert after.height == 16 and len(stats["jobs"]) == 16  # every cut-off submit settled, none made again
    check_books(stats, after, in_flight_ok=False)
