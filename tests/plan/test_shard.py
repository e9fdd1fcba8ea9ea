"""--shard I/N: which rows a worker takes (a table of values), and the CLI's one-line refusals.

Covers: pipeline/plan/shard.py
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from pipeline.plan.actions import Plan, count_actions
from pipeline.plan.shard import Shard, ShardError, describe, parse_shard, shard_plan
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


def plan_of(keys: list[str], shared: list[str] = ()) -> Plan:
    rows = pl.DataFrame({"job_key": keys, "action": ["submit"] * len(keys), "credits_estimated": [10] * len(keys)})
    held = pl.DataFrame({"job_key": list(shared), "row": list(range(len(shared))), "held_by": ["other.yaml"] * len(shared)},
                        schema={"job_key": pl.String, "row": pl.Int64, "held_by": pl.String})
    return Plan(manifest=Path("m.yaml"), rows=rows, orphans=3, counts=count_actions(rows), shared=held)


def test_the_shards_split_the_rows_once_each_by_the_keys_sha256():
    keys = [f"scene-{i}" for i in range(400)] + ["un-cafe-a-paris", "owl-v2"]
    taken: list[str] = []
    for index in range(1, 5):
        plan = plan_of(keys)
        info = shard_plan(plan, Shard(index, 4))
        mine = plan.rows["job_key"].to_list()
        assert info == {"index": index, "count": 4, "rows": len(mine), "of": len(keys)}
        assert 60 < len(mine) < 140  # sha256 spreads them: none of the four near empty or whole
        for key in mine:
            assert int.from_bytes(hashlib.sha256(key.encode()).digest(), "big") % 4 == index - 1
        assert plan.counts == count_actions(plan.rows) and plan.credits_to_spend == 10 * len(mine)
        assert plan.orphans == 3  # said of the whole manifest, planned whole
        taken += mine
    assert sorted(taken) == sorted(keys)  # every row once, none twice
    whole = plan_of(keys)
    assert shard_plan(whole, None) is None and whole.rows.height == len(keys)
    assert describe({"index": 2, "count": 4, "rows": 25, "of": 100}) == "shard 2/4: 25 of 100 rows"


def test_an_earlier_version_and_a_shared_id_go_with_their_id():
    shard = Shard(1, 2)
    mine = next(f"k{i}" for i in range(50) if shard.holds(f"k{i}"))
    theirs = next(f"k{i}" for i in range(50) if not shard.holds(f"k{i}"))
    plan = plan_of([mine, f"{mine}@aaaa", theirs, f"{theirs}@bbbb"], shared=[mine, theirs])
    info = shard_plan(plan, shard)
    assert plan.rows["job_key"].to_list() == [mine, f"{mine}@aaaa"]
    assert info["rows"] == 1 and info["of"] == 2  # the manifest's rows, not their earlier versions
    assert plan.shared["job_key"].to_list() == [mine]  # another shard's refusal is its own to say


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
