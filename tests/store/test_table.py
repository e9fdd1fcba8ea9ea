"""The ledger's Delta table on real files: two processes merging into the same partition at once
both finish and lose no update (the conflicting commit retried); maintain() compacts a partition's
many small files without changing a row, and keeps the history: time travel to an older version
still reads it right after maintain."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import polars as pl

from pipeline.store.location import parse
from pipeline.store.table import COMPACT_AT, REMOVED, TABLE_SCHEMA, LedgerTable, batch_of, night_of
from tests.harness import REPO

NIGHT, BATCH = "2026-12-01", "nightly.yaml"


def frame(rows: list[dict]) -> pl.DataFrame:
    """Merge source rows (TABLE_SCHEMA + REMOVED), the columns not given null."""
    full = [{**dict.fromkeys(TABLE_SCHEMA), "night": NIGHT, "batch": BATCH, REMOVED: False, **row} for row in rows]
    return pl.DataFrame(full, schema={**TABLE_SCHEMA, REMOVED: pl.Boolean}, orient="row")


def test_partition_and_night_names():
    assert batch_of("manifests/spring ads.yaml") == "spring-ads.yaml" and batch_of(None) == "none"
    assert night_of(datetime(2026, 12, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))) == "2026-12-02"  # UTC


MERGER = textwrap.dedent("""
    import json, sys, time
    import polars as pl
    from pipeline.store.location import parse
    from pipeline.store.table import REMOVED, TABLE_SCHEMA, LedgerTable
    path, who, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    table = LedgerTable(parse(path))
    table.load()
    while time.time() < start:  # both processes begin together
        time.sleep(0.001)
    for i in range(count):
        rows = [{"job_key": f"{who}-{i}", "status": "DOWNLOADED", "credits_charged": 10},
                {"job_key": f"{who}-0", "status": "DOWNLOADED", "credits_charged": 10, "attempts": i + 1}]
        rows = [{**dict.fromkeys(TABLE_SCHEMA), "night": "2026-12-01", "batch": "nightly.yaml", REMOVED: False, **r}
                for r in rows[: 1 if i == 0 else 2]]
        table.merge(pl.DataFrame(rows, schema={**TABLE_SCHEMA, REMOVED: pl.Boolean}, orient="row"),
                    {"writer": who})
    print(json.dumps(table.stats), flush=True)
""")


def test_two_processes_merging_into_one_partition_both_finish_and_lose_no_update(tmp_path):
    path = tmp_path / "ledger.parquet"
    LedgerTable(parse(str(path))).create()
    count, start = 15, time.time() + 2
    procs = [subprocess.Popen([sys.executable, "-c", MERGER, str(path), who, str(count), str(start)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in ("left", "right")]
    stats = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
        stats.append(json.loads(out))
    assert [s["commits"] for s in stats] == [count, count]
    assert sum(s["conflicts"] for s in stats) >= 1, stats  # they did collide, and the loser retried
    table = LedgerTable(parse(str(path)))
    table.load()
    rows = table.scan(["job_key", "attempts", "credits_charged"]).collect()
    assert rows.height == rows["job_key"].n_unique() == 2 * count  # every insert, one row per key
    assert int(rows["credits_charged"].sum()) == 10 * 2 * count
    assert rows.filter(pl.col("job_key").is_in(["left-0", "right-0"]))["attempts"].to_list() == [count] * 2
    assert table.version == 2 * count  # one commit each, none lost, none doubled


def test_maintain_compacts_many_small_files_and_keeps_the_history(tmp_path):
    path = tmp_path / "ledger.parquet"
    table = LedgerTable(parse(str(path)))
    other = frame([{"job_key": "elsewhere", "status": "DOWNLOADED", "credits_charged": 3, "batch": "other.yaml"}])
    table.merge(other)
    for i in range(COMPACT_AT + 4):  # one small file per commit in the one partition
        table.merge(frame([{"job_key": f"k{i}", "status": "DOWNLOADED", "credits_charged": i}]))
    table.merge(frame([{"job_key": "k0", "status": "FAILED", "credits_charged": 0},  # a row changed
                       {"job_key": "k1", REMOVED: True}]))  # and one deleted
    before, version_before = table.scan(list(TABLE_SCHEMA)).collect().sort("job_key"), table.version
    in_partition = [f for f in table.files() if f"batch={BATCH}" in f]
    assert len(in_partition) > COMPACT_AT
    done = table.maintain({(NIGHT, BATCH), (NIGHT, "other.yaml")})
    assert done["compacted"] == 1  # the partition with many files, not the one with one
    after = [f for f in table.files() if f"batch={BATCH}" in f]
    assert len(after) <= 2 and table.version > version_before
    assert table.scan(list(TABLE_SCHEMA)).collect().sort("job_key").equals(before)  # not a row changed
    assert [h["operation"] for h in table.history()].count("OPTIMIZE") == 1
    assert done["vacuumed"] == 0  # nothing is 30 days old: the vacuum deleted nothing
    # ... though the compaction's inputs are no longer current: a vacuum keeping no history would delete them
    assert len(table._dt.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False)) > COMPACT_AT
    # 30 days of history kept: every file an older version needs is still there after the vacuum
    old = LedgerTable(parse(str(path)))
    assert old.load(version=3)
    assert sorted(old.scan(["job_key"]).collect()["job_key"]) == ["elsewhere", "k0", "k1"]
    assert old.lookup(["k0"], ["credits_charged"])["credits_charged"].to_list() == [0]
    assert pl.read_delta(str(path), version=version_before).sort("job_key").select(list(TABLE_SCHEMA)).equals(before)
