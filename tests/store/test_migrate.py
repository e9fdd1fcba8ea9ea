"""Migration to the Delta table from both earlier formats, each WRITTEN BY THE OLD CODE (`git
archive`d and run in a subprocess): the single Parquet file (eb01a10, the commit before the parts,
bdfc3dc) and the folder of parts (674bcac, the commit before the table). A read-only open before
the migration reads the old format as it is; the first writable open makes the table with every row
and every credit the old code reads, and replays the journal's pending lines once. A crash at each
step (a real SIGKILL of the process migrating) is finished by the next open, nothing lost or doubled.

Where the repository lacks those commits (a shallow clone) the tests are skipped: only the old
code can say what it wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from pipeline.store import migrate, parts
from pipeline.store.highwater import read_highwater
from pipeline.store.ledger import Ledger, read_ledger
from tests.harness import REPO, old_code

SINGLE_FILE = "eb01a10"  # the ledger as one rewritten Parquet file
PARTS = "674bcac"  # the ledger as a folder of immutable parts
LEDGER_MODULE = {SINGLE_FILE: "pipeline.ledger", PARTS: "pipeline.store.ledger"}

# Run by the old code: rows over two checkpoints, then lines only in the journal (a new row, a
# stored row changed, a stored row renamed), fsynced, and the process dies without a checkpoint.
# What the old code itself then reads (a read-only open) is written to argv[2].
OLD_WRITER = textwrap.dedent("""
    import importlib, os, sys
    from datetime import datetime, timezone
    module = importlib.import_module(sys.argv[3])
    # the old code, not today's: the venv's editable install would serve a module the old tree lacks
    assert module.__file__.startswith(os.environ["PYTHONPATH"]), module.__file__
    Ledger = module.Ledger
    sent = datetime(2026, 11, 20, 23, 30, tzinfo=timezone.utc)
    ledger = Ledger.open(sys.argv[1], run_id="old-run")
    for i in range(40):
        ledger.record(f"job-{i}", manifest=f"manifests/{'a' if i % 2 else 'b'}.yaml", prompt=f"prompt {i}",
                      status="DOWNLOADED", job_id=f"id-{i}", attempts=1, credits_charged=10 + i % 7,
                      submitted_at=sent, output_path=f"outputs/videos/job-{i}.mp4", bytes=1000 + i)
        if i == 19:
            ledger.checkpoint()
    ledger.checkpoint()
    ledger.record("job-40", manifest="manifests/a.yaml", status="SUBMITTED", job_id="id-40", credits_charged=12)
    ledger.record("job-3", status="FAILED", credits_charged=99, error="expired")
    ledger.rename("job-5", "job-5@old")
    ledger.commit_sync()
    Ledger.open(sys.argv[1], readonly=True).frame().write_parquet(sys.argv[2])
    os._exit(0)  # killed: no checkpoint, the journal holds the last three lines
""")


def old_ledger(tmp_path: Path, commit: str) -> tuple[Path, pl.DataFrame]:
    """A ledger written by the code at `commit`, and the frame that code reads from it."""
    code = old_code(tmp_path, commit)
    if code is None:
        pytest.skip(f"the repository lacks {commit}: the old code cannot be run")
    project = tmp_path / "project"
    project.mkdir()
    path = project / "ledger.parquet"
    # cwd outside the repository: `python -c` puts the cwd first on sys.path, before PYTHONPATH
    made = subprocess.run([sys.executable, "-c", OLD_WRITER, str(path), str(tmp_path / "expected.parquet"),
                           LEDGER_MODULE[commit]],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return path, pl.read_parquet(tmp_path / "expected.parquet")


def same_rows(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Every row and value the old code reads (columns added since read as null and not compared)."""
    got = got.select(expected.columns).sort("job_key")
    expected = expected.sort("job_key")
    assert got["job_key"].to_list() == expected["job_key"].to_list()
    assert got.cast(expected.schema).equals(expected)


def check_migrated(path: Path, expected: pl.DataFrame) -> None:
    assert expected.height == 41 and "job-5@old" in expected["job_key"].to_list()  # the pending lines, as the old code reads them
    credits = int(expected["credits_charged"].sum())
    same_rows(read_ledger(path), expected)
    table = pl.read_delta(str(path))  # the table itself, without the journal: one row per key
    assert table.height == table["job_key"].n_unique() == 41
    assert int(table["credits_charged"].sum()) == credits
    assert migrate.is_delta(path) and not list(path.glob("part-*.parquet")) and not list(path.glob(".tmp-*"))
    assert path.with_name("ledger.journal.jsonl").read_bytes() == b""  # replayed, committed, trimmed
    # the old rows' partitions: the night they were sent (UTC) and their manifest
    assert sorted(table.filter(pl.col("job_key") != "job-40").select("night", "batch").unique().rows()) == \
        [("2026-11-20", "a.yaml"), ("2026-11-20", "b.yaml")]


@pytest.mark.parametrize("commit, layout", [(SINGLE_FILE, "file"), (PARTS, "parts")])
def test_an_old_ledger_is_read_as_it_is_then_migrated_by_the_first_writable_open(tmp_path, commit, layout):
    path, expected = old_ledger(tmp_path, commit)
    assert path.is_file() if layout == "file" else len(parts.list_parts(path)) == 2
    same_rows(read_ledger(path), expected)  # a reader takes the old format as it is, and changes nothing
    assert (path.is_file() if layout == "file" else not migrate.is_delta(path))
    with Ledger.open(path, run_id="new") as ledger:
        assert ledger.get("job-3")["credits_charged"] == 99 and "job-5" not in ledger  # the journal replayed
        assert ledger.credits_total() == int(expected["credits_charged"].sum())
    check_migrated(path, expected)
    mark = read_highwater(path)
    assert mark.version is not None and mark.seq == mark.journal_seq  # the mark of the table now
    with Ledger.open(path, run_id="again") as ledger:  # a second open changes nothing
        assert len(ledger) == 41
    check_migrated(path, expected)


# A writable open by today's code, SIGKILLed at one step of the migration (argv[2] names it).
KILLED = textwrap.dedent("""
    import os, signal, sys
    from pipeline.store import checkpoint, migrate
    from pipeline.store.ledger import Ledger

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[2] == "after-commit":  # the table's first commit made, the mark not written yet
        checkpoint.write_table_mark = die
    elif sys.argv[2] == "after-mark":  # the mark written, the parts not deleted yet
        migrate.remove_parts = die
    Ledger.open(sys.argv[1], run_id="killed")
    print("not killed")
""")


@pytest.mark.parametrize("step", ["after-commit", "after-mark"])
@pytest.mark.parametrize("commit", [SINGLE_FILE, PARTS])
def test_a_migration_killed_at_each_step_is_finished_by_the_next_open(tmp_path, commit, step):
    path, expected = old_ledger(tmp_path, commit)
    killed = subprocess.run([sys.executable, "-c", KILLED, str(path), step], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    # the table beside the parts (the single file became one part first: step 1)
    assert migrate.is_delta(path) and len(parts.list_parts(path)) == (1 if commit == SINGLE_FILE else 2)
    mark = read_highwater(path)  # the old code's (the single file's code wrote none), or the table's
    assert (mark is None or mark.version is None) == (step == "after-commit")
    journal = path.with_name("ledger.journal.jsonl").read_bytes()
    assert len(journal.splitlines()) == 3  # untouched: the pending lines are replayed by the next open
    same_rows(read_ledger(path), expected)  # readers meanwhile: the table and the journal, nothing twice
    with Ledger.open(path, run_id="next") as ledger:
        assert len(ledger) == 41 and ledger.credits_total() == int(expected["credits_charged"].sum())
    check_migrated(path, expected)
    said = [json.loads(json.loads(line)["commitInfo"].get("videobatch") or "{}")
            for entry in sorted((path / "_delta_log").glob("*.json"))
            for line in entry.read_text().splitlines() if "commitInfo" in json.loads(line)]
    migrations = [s for s in said if s.get("migrated_from")]
    assert len(migrations) == 1  # migrated once, not twice


def test_a_delta_write_that_died_before_its_commit_leaves_the_parts_the_ledger(tmp_path):
    """What a migration killed inside delta-rs's write leaves: data files and the _delta_log folder
    (its commit file still a temporary), no version. The parts are still the ledger: readers read
    them, and the next writable open migrates them; the dead write's files are named by no commit."""
    path, expected = old_ledger(tmp_path, PARTS)
    scratch = tmp_path / "scratch" / "ledger.parquet"
    shutil.copytree(path, scratch)
    shutil.copy(path.with_name("ledger.journal.jsonl"), scratch.with_name("ledger.journal.jsonl"))
    migrate.migrate(scratch, 0)  # the same write, finished, elsewhere: its data files are what a dead one leaves
    orphans = [f for f in scratch.rglob("*.parquet") if f.parent != scratch]
    assert orphans
    for orphan in orphans:
        target = path / orphan.relative_to(scratch)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(orphan, target)
    (path / "_delta_log").mkdir()
    (path / "_delta_log" / "_commit_0b1c2d3e.json.tmp").write_text("")  # a commit never renamed into place
    same_rows(read_ledger(path), expected)
    with Ledger.open(path, run_id="next") as ledger:
        assert len(ledger) == 41
    check_migrated(path, expected)
