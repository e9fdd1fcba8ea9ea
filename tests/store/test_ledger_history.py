"""The ledger as a Delta table: migration from the single-file ledger, commits that touch only the
partitions of the rows they change, one row per key, and the one-call reads docs/ledger.md
documents for Polars and pandas, run as written there."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timezone
from urllib.parse import unquote
from pathlib import Path

import polars as pl
import pytest

from pipeline.store import migrate, parts as ledger_store
from pipeline.store.ledger import SEQ_METADATA, Ledger, read_ledger
from pipeline.store.location import parse
from pipeline.store.schema import LEDGER_SCHEMA
from pipeline.store.table import LedgerTable, night_of

NOW = datetime(2026, 11, 24, 1, 2, 3, tzinfo=timezone.utc)


def write_previous_format(path, rows: int, folded_seq: int, journal: list[dict], drop: tuple = ()) -> pl.DataFrame:
    """A ledger as the previous version leaves it: one Parquet file whose metadata names the last
    journal seq it holds, and the journal beside it (lines up to that seq already folded in)."""
    frame = pl.DataFrame({"job_key": [f"old-{i}" for i in range(rows)], "status": ["DOWNLOADED"] * rows,
                          "credits_charged": [10 + i % 3 for i in range(rows)], "job_id": [f"j{i}" for i in range(rows)],
                          "submitted_at": [NOW] * rows})
    frame = frame.select(pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in LEDGER_SCHEMA
                         ).cast(LEDGER_SCHEMA).drop(*drop)
    frame.write_parquet(path, metadata={SEQ_METADATA: str(folded_seq)})
    path.with_name("ledger.journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in journal))
    return frame


JOURNAL = [
    {"s": 4, "k": "old-0", "f": {"status": "FAILED"}},  # already folded in: must not count twice
    {"s": 6, "k": "old-1", "f": {"credits_charged": 99}},
    {"s": 7, "k": "new-0", "f": {"status": "PENDING", "credits_charged": 0}},
    {"s": 8, "op": "rename", "from": "old-2", "to": "old-2@abcd"},
]


def test_previous_format_migrates_on_first_writable_open_without_losing_a_row_or_credit(tmp_path):
    path = tmp_path / "ledger.parquet"
    old = write_previous_format(path, 50, folded_seq=5, journal=JOURNAL, drop=("expired",))
    expected_credits = int(old["credits_charged"].sum()) - 11 + 99  # old-1 was 11, the journal says 99

    before = read_ledger(path)  # a reader takes the old file as it is and changes nothing
    assert path.is_file() and before.height == 51
    assert int(before["credits_charged"].sum()) == expected_credits

    with Ledger.open(path, run_id="first") as ledger:
        assert migrate.is_delta(path) and ledger_store.list_parts(path) == []  # a table now, no parts left
        assert ledger.get("old-0")["status"] == "DOWNLOADED"  # seq 4 was already in the file
        assert ledger.get("old-1")["credits_charged"] == 99 and "old-2" not in ledger
        assert ledger.credits_total() == expected_credits
    after = read_ledger(path)
    assert sorted(after["job_key"]) == sorted(before["job_key"]) and "old-2@abcd" in after["job_key"].to_list()
    assert after.sort("job_key").equals(before.sort("job_key"))
    assert not list(tmp_path.glob(".ledger.parquet*"))  # no staging folder, no old file left
    table = pl.read_delta(str(path))  # every old row in the partition of the night its job was sent
    assert table.filter(pl.col("job_key").str.starts_with("old-"))["night"].unique().to_list() == ["2026-11-24"]


def test_a_migration_cut_short_is_finished_by_the_next_open(tmp_path):
    path = tmp_path / "ledger.parquet"
    write_previous_format(path, 20, folded_seq=0, journal=[])
    staging = tmp_path / ".ledger.parquet.migrating"
    # Died after writing the part and moving the old file aside, before the folder took its name.
    ledger_store.write_part(staging, ledger_store.legacy_scan(path, 0).collect(), 0, 0)
    path.rename(tmp_path / ".ledger.parquet.v1")
    assert read_ledger(path).height == 20  # readers find the rows where the migration left them
    with Ledger.open(path, run_id="r") as ledger:
        assert len(ledger) == 20
    assert path.is_dir() and not staging.exists() and not (tmp_path / ".ledger.parquet.v1").exists()


def commit_actions(path, version: int) -> tuple[list[str], list[str], dict]:
    """A commit's files added and removed (paths in the table) and its commitInfo, read from its
    _delta_log entry."""
    added, removed, info = [], [], {}
    for line in (path / "_delta_log" / f"{version:020d}.json").read_text().splitlines():
        action = json.loads(line)
        if "add" in action:
            added.append(unquote(action["add"]["path"]))
        elif "remove" in action:
            removed.append(unquote(action["remove"]["path"]))
        info = action.get("commitInfo", info)
    return added, removed, info


def test_checkpoints_rewrite_only_their_partition_and_keep_one_row_per_key(tmp_path):
    """A checkpoint's MERGE adds and removes files only in the partitions of the rows it changed
    (tonight's, of its manifest): an older night and another manifest are never rewritten."""
    path = tmp_path / "ledger.parquet"
    old = pl.DataFrame({"job_key": [f"old-{i}" for i in range(50)], "status": "DOWNLOADED", "credits_charged": 5,
                        "manifest": "m.yaml", "night": "2026-11-24", "batch": "m.yaml", "_removed": False})
    LedgerTable(parse(str(path))).merge(old.select(  # an earlier night of the same manifest
        pl.col(c) if c in old.columns else pl.lit(None).alias(c) for c in [*LEDGER_SCHEMA, "night", "batch", "_removed"]))
    tonight = f"night={night_of()}/batch=m.yaml/"
    with Ledger.open(path, run_id="r") as ledger:
        for i in range(200):
            ledger.record(f"k{i}", status="PENDING", credits_charged=0, manifest="m.yaml")
            ledger.record(f"other-{i}", status="PENDING", manifest="other.yaml")
        ledger.checkpoint()
        for round_ in range(1, 12):  # a row changed in many checkpoints: one commit each
            ledger.record("k0", status="PROCESSING", attempts=round_)
            ledger.record(f"k{round_}", status="DOWNLOADED", credits_charged=10)
            ledger.checkpoint()
            added, removed, info = commit_actions(path, ledger.table.version)
            assert info["operation"] == "MERGE" and info["operationMetrics"]["num_source_rows"] == 2
            assert added and all(f.startswith(tonight) for f in added + removed), (added, removed)
        ledger.rename("k5", "k5@old")
        ledger.record("k5", status="PENDING", manifest="m.yaml")
        ledger.record("old-3", status="FAILED")  # a stored row keeps its partition: only that one is touched
        ledger.checkpoint()
        added, removed, _ = commit_actions(path, ledger.table.version)
        assert {f.split("/part-")[0] for f in added + removed} == {tonight.rstrip("/"), "night=2026-11-24/batch=m.yaml"}
    rows = read_ledger(path)
    assert rows.height == 451 and rows["job_key"].n_unique() == 451
    k0 = rows.filter(pl.col("job_key") == "k0").row(0, named=True)
    assert (k0["status"], k0["attempts"]) == ("PROCESSING", 11)
    assert int(rows["credits_charged"].sum()) == 110 + 250
    assert rows.filter(pl.col("job_key") == "old-3")["status"].to_list() == ["FAILED"]
    stored = pl.read_delta(str(path))  # the table itself: one row per key
    assert stored.height == stored["job_key"].n_unique() == 451


def test_async_checkpoint_runs_off_the_loop_and_loses_nothing_recorded_meanwhile(tmp_path):
    async def work() -> Ledger:
        ledger = Ledger.open(tmp_path / "ledger.parquet", run_id="r")
        for i in range(300):
            ledger.record(f"k{i}", status="SUBMITTED", job_id=f"j{i}")
            if i % 50 == 0:
                checkpoint = asyncio.ensure_future(ledger.checkpoint_async())
                await asyncio.sleep(0)
                ledger.record(f"k{i}", status="PROCESSING")  # while the part is being written
                await ledger.commit()
                await checkpoint
        await ledger.commit()
        return ledger

    ledger = asyncio.run(work())
    assert ledger.first_payer("j7") == "k7" and ledger.first_payer("nope") is None
    ledger.close()
    rows = read_ledger(tmp_path / "ledger.parquet")
    assert rows.height == 300
    assert rows.filter(pl.col("job_key").is_in([f"k{i}" for i in range(0, 300, 50)]))["status"].unique().to_list() \
        == ["PROCESSING"]


def versions_ledger(path) -> pl.DataFrame:
    with Ledger.open(path, run_id="r") as ledger:
        ledger.record("a", status="PENDING", credits_charged=0)
        ledger.record("b", status="DOWNLOADED", credits_charged=10)
        ledger.checkpoint()
        ledger.record("a", status="DOWNLOADED", credits_charged=15)  # a newer version of a
        ledger.rename("b", "b@old")  # b is removed: its newest version is a tombstone
        ledger.checkpoint()
    return read_ledger(path)


DOCUMENTED_READS = Path(__file__).parents[2] / "docs" / "ledger.md"


def documented_reads(path) -> list[tuple[str, str]]:
    """The code blocks of docs/ledger.md's "Reading the ledger from other tools", as (language,
    code), with the ledger's documented path replaced by this test's."""
    section = DOCUMENTED_READS.read_text().split("## Reading the ledger from other tools\n")[1].split("\n## ")[0]
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", section, re.M | re.S)
    return [(language, code.replace("outputs/ledger.parquet", str(path))) for language, code in blocks]


def _run_python(code: str):
    """A documented block run as a user would paste it; its `rows` is what it read."""
    namespace: dict = {}
    exec(compile(code, str(DOCUMENTED_READS), "exec"), namespace)
    return namespace["rows"]


def test_the_documented_one_call_reads_give_the_current_state(tmp_path):
    path = tmp_path / "ledger.parquet"
    expected = versions_ledger(path).sort("job_key")
    assert expected["job_key"].to_list() == ["a", "b@old"]
    # an earlier version still holds b and a's old state: the reads below must give the current one
    assert sorted(pl.read_delta(str(path), version=1)["job_key"]) == ["a", "b"]

    reads = documented_reads(path)
    assert [language for language, _ in reads] == ["python", "python"]  # Polars, pandas
    assert "import polars" in reads[0][1] and "to_pandas()" in reads[1][1]
    polars_rows = _run_python(reads[0][1])
    pytest.importorskip("pandas")
    pandas_rows = _run_python(reads[1][1])

    for rows in (polars_rows, pl.from_pandas(pandas_rows)):
        got = rows.select(list(LEDGER_SCHEMA)).sort("job_key")
        assert got.select("job_key", "status", "credits_charged").rows() == \
            expected.select("job_key", "status", "credits_charged").rows()
