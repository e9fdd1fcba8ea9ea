"""--shard I/N: which rows a worker takes (a table of values), and the CLI's one-line refusals.

Covers: pipeline/plan/shard.py
"""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from pipeline.plan.actions import Plan, count_actions
from pipeline.plan.shard import Shard, ShardError, describe, parse_shard, shard_rows, shard_versions
from pipeline.run.outcome import EXIT_BAD_INPUT
from tests.harness import cli_env, free_port, prompts, run_cli, write_manifest


@pytest.mark.parametrize("text, expected", [("2/4", Shard(2, 4)), (" 1 / 1 ", Shard(1, 1)), ("4/4", Shard(4, 4)),
                                            ((3, 5), Shard(3, 5)), (None, None)])
def test_parse_takes_i_of_n(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "x", "1/0", "-1/4", "2/", "1.5/4", ""])
def test_parse_refuses_in_one_line_naming_the_flag(text):
    with pytest.raises(ShardError) as refused:
        parse_shard(text)
    assert str(refused.value).startswith("--shard ") and "\n" not in str(refused.value)


def test_the_shards_split_the_rows_once_each_by_the_keys_sha256():
    keys = [f"scene-{i}" for i in range(400)] + ["un-cafe-a-paris", "owl-v2"]
    rows = pl.DataFrame({"job_key": keys, "n": range(len(keys))})
    taken: list[str] = []
    for index in range(1, 5):
        mine, info = shard_rows(rows, Shard(index, 4))
        assert info == {"index": index, "count": 4, "rows": mine.height, "of": len(keys)}
        assert 60 < mine.height < 140  # sha256 spreads them: none of the four near empty or whole
        for key in mine["job_key"]:
            assert int.from_bytes(hashlib.sha256(key.encode()).digest(), "big") % 4 == index - 1
        taken += mine["job_key"].to_list()
    assert sorted(taken) == sorted(keys)  # every row once, none twice
    assert shard_rows(rows, None) == (rows, None)
    assert describe({"index": 2, "count": 4, "rows": 25, "of": 100}) == "shard 2/4: 25 of 100 rows"


def test_an_earlier_version_goes_with_its_id():
    shard = Shard(1, 2)
    mine = next(f"k{i}" for i in range(50) if shard.holds(f"k{i}"))
    theirs = next(f"k{i}" for i in range(50) if not shard.holds(f"k{i}"))
    rows = pl.DataFrame({"job_key": [mine, f"{mine}@aaaa", f"{theirs}@bbbb"], "action": ["new", "track", "track"],
                         "credits_estimated": [10, 0, 0]})
    plan = Plan(manifest=None, rows=rows, counts=count_actions(rows))
    shard_versions(plan, shard)
    assert plan.rows["job_key"].to_list() == [mine, f"{mine}@aaaa"]
    assert plan.counts == count_actions(plan.rows)


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("value", ["0/4", "5/4", "x"])
def test_the_cli_refuses_a_bad_shard_in_one_line(tmp_path, command, value):
    manifest = write_manifest(tmp_path / "m.yaml", prompts(2))
    done = run_cli(command, str(manifest), "--ledger", str(tmp_path / "l.parquet"), "--shard", value,
                   env=cli_env(f"http://127.0.0.1:{free_port()}"), cwd=tmp_path, timeout=60)
    assert done.returncode == EXIT_BAD_INPUT, done.stdout + done.stderr
    assert done.stderr.startswith(f"videobatch: --shard {value}:") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "l.parquet").exists()  # nothing opened, nothing leased
