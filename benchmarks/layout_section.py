"""`make bench` section "layout": why the ledger is partitioned by night and batch, measured.

The same 1,000,000-row history (benchmarks/history.py) as three Delta tables: partitioned by
(night, batch), the product's layout; by batch only; not partitioned. On a fresh copy of each, a
checkpoint's MERGE of 20 changed rows of tonight's partition (the history's last night), through
the product's own LedgerTable.merge, in a child process of its own: the merge's seconds, the
process's peak memory, and the files and rows the commit rewrote (its operationMetrics in
DeltaTable.history()). The two other layouts are derived from the cached history once and kept
beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.history_section import CACHE, LAYOUT, cached_history, copy_table
from benchmarks.processes import run_command

CHANGED = 20
LAYOUTS = {"night, batch": ["night", "batch"], "batch": ["batch"], "none": []}


def _derived(history: Path, name: str) -> Path:
    """The history's table re-written with the partitions of layout `name` (made once, in a child)."""
    if name == "night, batch":
        return history / "ledger.parquet"
    folder = CACHE / f"{history.name}-by-{name}"
    if not (folder / "done").exists():
        print(f"   writing the history partitioned by {name} (once; kept in {folder}) ...", flush=True)
        _child("derive", str((history / "ledger.parquet").absolute()), str(folder.absolute()), name,
               cwd=history.parent)
    return folder / "ledger.parquet"


def _child(*args: str, cwd: Path) -> tuple[Any, str]:
    """A builder or a measured merge in a process of its own (its output file lands in `cwd`)."""
    here = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return run_command([sys.executable, "-m", "benchmarks.layout_section", *args], dict(os.environ) | here, cwd)


def _derive(source: Path, folder: Path, name: str) -> None:
    import polars as pl
    from deltalake import write_deltalake

    from pipeline.store.table import CONFIGURATION

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data = pl.read_delta(str(source.absolute())).to_arrow()
    write_deltalake(str((folder / "ledger.parquet").absolute()), data, mode="error",
                    partition_by=LAYOUTS[name] or None, configuration=CONFIGURATION, name="videobatch ledger")
    (folder / "done").write_text("ok\n")


def _prepare(table: Path, out: Path) -> None:
    """CHANGED rows of the history's last night, as a checkpoint would merge them: finished again."""
    import polars as pl

    from pipeline.store.table import REMOVED

    scan = pl.scan_delta(str(table.absolute()))
    last = scan.select(pl.col("night").max()).collect().item()
    rows = scan.filter(pl.col("night") == last).head(CHANGED).collect()
    rows = rows.with_columns(status=pl.lit("DOWNLOADED"), error=pl.lit(None, pl.String),
                             attempts=pl.col("attempts") + 1, updated_at=pl.col("updated_at").dt.offset_by("1h"),
                             **{REMOVED: pl.lit(False)})
    rows.write_parquet(out)


def _merge(table: Path, changed: Path) -> None:
    import polars as pl

    from pipeline.store.location import Location
    from pipeline.store.table import LedgerTable

    frame = pl.read_parquet(changed)
    ledger = LedgerTable(Location(str(table), table))
    ledger.load()
    files = len(ledger.files())  # before the merge: "of all" the table held
    started = time.perf_counter()
    ledger.merge(frame, {"bench": "layout"})
    seconds = time.perf_counter() - started
    metrics = ledger.history(1)[0].get("operationMetrics", {})
    print(json.dumps({"merge_s": seconds, "metrics": metrics, "files": files}))


def layouts(work: Path, *, rows_in_history: int) -> dict[str, Any]:
    history = cached_history(rows_in_history)
    work.mkdir(parents=True, exist_ok=True)
    changed = work / "changed.parquet"
    _child("prepare", str((history / "ledger.parquet").absolute()), str(changed), cwd=work)
    out: dict[str, Any] = {"rows": rows_in_history, "changed": CHANGED, "layout_version": LAYOUT, "by_layout": {}}
    for name in LAYOUTS:
        source = _derived(history, name)
        copy = work / f"layout-{LAYOUTS[name] and '-'.join(LAYOUTS[name]) or 'none'}" / "ledger.parquet"
        copy_table(source, copy)
        usage, text = _child("merge", str(copy), str(changed), cwd=work)
        said = json.loads(text.strip().splitlines()[-1])
        m = said["metrics"]
        out["by_layout"][name] = {
            "merge_s": said["merge_s"], "wall_s": usage.wall_s, "peak_rss_mb": usage.peak_rss_mb,
            "files_in_table": said["files"], "files_removed": m.get("num_target_files_removed"),
            "files_added": m.get("num_target_files_added"), "rows_copied": m.get("num_target_rows_copied"),
            "rows_updated": m.get("num_target_rows_updated"), "rows_inserted": m.get("num_target_rows_inserted"),
            "metrics": m}
    return out


def table_rows(r: dict | None) -> list[tuple[str, str, str]]:
    if not r:
        return []
    rows = [(f"l. MERGE of {r['changed']} changed rows into tonight's partition, {r['rows']} rows of history, "
             "by layout", "merge s, peak MB, files rewritten (of all), rows rewritten", "")]
    for name, f in r["by_layout"].items():
        rewritten = (f["rows_copied"] or 0) + (f["rows_updated"] or 0)
        rows.append((f"   partitioned by {name}" if name != "none" else "   not partitioned",
                     f"{f['merge_s']:.2f} s, {f['peak_rss_mb']:.0f} MB, {f['files_removed']} of "
                     f"{f['files_in_table']} files, {rewritten} rows", ""))
    return rows


def markdown(r: dict) -> str:
    """The same figures as a table for docs/benchmarks.md."""
    lines = ["| layout | MERGE seconds | peak MB (process) | files rewritten (of all) | rows rewritten |",
             "|---|---|---|---|---|"]
    for name, f in r["by_layout"].items():
        rewritten = (f["rows_copied"] or 0) + (f["rows_updated"] or 0)
        lines.append(f"| {name} | {f['merge_s']:.2f} | {f['peak_rss_mb']:.0f} | {f['files_removed']} of "
                     f"{f['files_in_table']} | {rewritten:,} |")
    return "\n".join(lines)


if __name__ == "__main__":  # the children (see the module's docstring)
    if sys.argv[1] == "derive":
        _derive(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "prepare":
        _prepare(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "merge":
        _merge(Path(sys.argv[2]), Path(sys.argv[3]))
