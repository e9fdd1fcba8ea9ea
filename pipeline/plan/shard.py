"""Decides which of a manifest's rows one worker of `--shard I/N` plans and runs: the rows whose
job_key's sha256, read as a big-endian integer, is I-1 modulo N. The N shards of a manifest thus
split its rows with no row in two shards and none in neither, whatever machine computes them, and
a row keeps its shard as the manifest grows (N unchanged). An earlier version of an edited row
(`<id>@<hash>`) goes with its id. The key is the one the plan runs the row under (the ledger's, for
a row an older version named): every worker reads it the same way.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import polars as pl

from pipeline.plan.actions import count_actions
from pipeline.store.archive import MARK, base_key

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(ValueError):
    """A --shard that names no shard: bad input, said in one line."""


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as the user writes it
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, job_key: str) -> bool:
        digest = hashlib.sha256(base_key(job_key).encode()).digest()
        return int.from_bytes(digest, "big") % self.count == self.index - 1

    def mask(self, keys: pl.Series) -> pl.Series:
        return pl.Series([self.holds(key) for key in keys.to_list()], dtype=pl.Boolean)


def parse_shard(text: str | Shard | tuple[int, int] | None) -> Shard | None:
    """`--shard I/N` (1 <= I <= N) as a Shard; None without one."""
    if text is None or isinstance(text, Shard):
        return text
    if isinstance(text, tuple):
        text = f"{text[0]}/{text[1]}"
    match = _SHARD.match(str(text))
    if match is None:
        raise ShardError(f"--shard {text}: write it as I/N, this worker's number I of N workers (e.g. --shard 2/4)")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard {text}: I must be from 1 to N (N workers, numbered 1 to N), e.g. --shard 1/{max(count, 2)}")
    return Shard(index, count)


def shard_plan(plan, shard: Shard | None) -> dict | None:
    """Narrow a whole manifest's Plan, in place, to this shard's rows (an earlier version
    `<id>@<hash>` with its id); {"index", "count", "rows", "of"} of the manifest's rows, or None
    without a shard. Planned whole first, so what the plan says of the manifest and its ledger (rows
    it no longer lists) stays true of the manifest, not of a shard's slice of it."""
    if shard is None:
        return None
    keys = plan.rows["job_key"]
    current = ~keys.str.contains(MARK, literal=True)
    keep = shard.mask(keys)
    plan.rows = plan.rows.filter(keep)
    plan.counts = count_actions(plan.rows)
    if plan.shared is not None and plan.shared.height:
        plan.shared = plan.shared.filter(shard.mask(plan.shared["job_key"]))
    return {"index": shard.index, "count": shard.count, "rows": int((keep & current).sum()),
            "of": int(current.sum())}


def describe(info: dict | None) -> str | None:
    """The line a plan and a run summary say: `shard 2/4: 25 of 100 rows`."""
    if not info:
        return None
    return f"shard {info['index']}/{info['count']}: {info['rows']} of {info['of']} rows"
