"""`make bench` section "history": the same work on a 1,000,000-row ledger and on an empty one.

The history (a year of nightly runs, benchmarks/history.py) is generated once and kept under
outputs/bench-history/, named by its size and layout, so later benches reuse it. It is a Delta
table in the product's layout (partitioned by night and batch, one manifest a night, written by
pipeline.store.table.write_new), so no command measured migrates it. Each measurement starts from
a fresh copy: the data files are hard-linked (Delta never changes a file in place: a commit adds
files and the log names those removed) and `_delta_log` is copied, so a copy costs milliseconds
and a run's commits stay in the copy.

Every ledger and manifest is built in a child process: a child started by a process that once
held a million rows would report that process's peak memory as its own (Linux carries the
high-water mark across exec), so the benchmark process itself stays small.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.history import runs_frame, table_frame
from benchmarks.processes import BENCH_KEY, EmulatorProcess, run_command
from benchmarks.workloads import rows, write_csv, write_finished_ledger

CACHE = Path("outputs/bench-history")
LAYOUT = "delta-v1"  # bump when the generated rows or the ledger layout change
RUN_JOBS = 10
REVIEW_LOOKUPS = 10  # video requests timed after the clip list: one per clip of the 10-job run


def cached_history(n: int) -> Path:
    """A folder holding `ledger.parquet` (a Delta table of n rows) and `runs.parquet`, generated on
    first need."""
    folder = CACHE / f"history-{n}-{LAYOUT}"
    if not (folder / "done").exists():
        print(f"   generating a {n}-row history ledger (once; kept in {folder}) ...", flush=True)
        _in_child("generate", str(n), str(folder))
    return folder


def _generate(n: int, folder: Path) -> None:
    from pipeline.store.location import Location
    from pipeline.store.table import write_new

    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    ledger = folder / "ledger.parquet"
    write_new(Location(str(ledger), ledger), table_frame(n), {"bench": "history", "rows": n})
    runs_frame(n).write_parquet(folder / "runs.parquet")
    (folder / "done").write_text(f"{time.perf_counter() - started:.1f} s\n")


def _finished(n: int, manifest: Path, ledger: Path, videos: Path) -> None:
    write_finished_ledger(write_csv(manifest, rows(n, "finished")), ledger, videos)


def _review(ledger: Path) -> None:
    """What `videobatch review` reads for a page: the clip list, then each clip's video lookup."""
    from pipeline.review.server import ReviewConfig, ReviewServer

    server = ReviewServer(ReviewConfig(ledger=ledger))
    clips = server.clips()["clips"]
    for clip in clips[:REVIEW_LOOKUPS]:
        server.book.row(clip["job_key"])
    print(f"{len(clips)} clips, {min(len(clips), REVIEW_LOOKUPS)} lookups")


def _in_child(*args: str) -> None:
    import subprocess

    subprocess.run([sys.executable, "-m", "benchmarks.history_section", *args], check=True)


def _fresh_copy(history: Path | None, target: Path) -> Path:
    """An independent ledger at target/ledger.parquet: the history's, or an empty one (no folder:
    the run creates the table, as a first run does)."""
    ledger = target / "ledger.parquet"
    target.mkdir(parents=True, exist_ok=True)
    if history is not None:
        copy_table(history / "ledger.parquet", ledger)
        shutil.copy2(history / "runs.parquet", target / "runs.parquet")
    return ledger


def copy_table(source: Path, target: Path) -> None:
    """A Delta table's copy: data files hard-linked (never changed in place), the log copied."""
    shutil.copytree(source / "_delta_log", target / "_delta_log")
    for data in source.rglob("*.parquet"):
        if "_delta_log" in data.parts:
            continue
        to = target / data.relative_to(source)
        to.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(data, to)
        except OSError:  # another file system: a real copy
            shutil.copy2(data, to)


def _env(base_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIFRAME_")}
    if base_url:
        env.update(APIFRAME_BASE_URL=base_url, APIFRAME_API_KEY=BENCH_KEY)
    return env


def _videobatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


def _figures(usage) -> dict[str, float]:
    # CPU time beside wall time: on a shared machine the wall time counts other processes' turns
    return {"wall_s": usage.wall_s, "cpu_s": usage.cpu_s, "peak_rss_mb": usage.peak_rss_mb}


def one_side(work: Path, history: Path | None, *, noop_rows: int, time_scale: float) -> dict[str, Any]:
    """Every measured command on one ledger (the history's or an empty one)."""
    out: dict[str, Any] = {}
    folder = work / "run"
    ledger = _fresh_copy(history, folder)
    manifest = write_csv(work / "tonight.csv", rows(RUN_JOBS, "tonight"))
    with EmulatorProcess(time_scale=time_scale, rpm=0, rate_window=60.0) as emu:
        usage, text = run_command(_videobatch(
            "run", str(manifest), "--ledger", str(ledger), "--out", str(folder), "--rpm", "0",
            "--poll-interval", "0.05", "--progress-interval", "5", "--checkpoint-every", "1"),
            _env(emu.base_url), folder)
    out["run"] = _figures(usage)
    logs = sorted((folder / "logs").glob("*.jsonl"))
    import json

    run_end = [json.loads(line) for line in logs[-1].read_text().splitlines() if '"run_end"' in line]
    out["run"]["ledger"] = run_end[-1].get("ledger", {}) if run_end else {}
    # plan, status and report read the ledger the run left (history + tonight's rows + its run).
    for name, args in (("plan", ("plan", str(manifest), "--ledger", str(ledger))),
                       ("status", ("status", "--ledger", str(ledger))),
                       ("report", ("report", "--ledger", str(ledger)))):
        usage, text = run_command(_videobatch(*args), _env(None), folder)
        out[name] = _figures(usage)
    # The morning: export (nothing approved yet, so this is its read of the scope) and the review
    # server's data path: the clip list, then one video lookup per clip for REVIEW_LOOKUPS clips.
    usage, text = run_command(_videobatch("export", "--approved", str(folder / "approved"), "--ledger", str(ledger)),
                              _env(None), folder)
    out["export"] = _figures(usage)
    here = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # it runs in the work folder
    usage, text = run_command([sys.executable, "-m", "benchmarks.history_section", "review", str(ledger)],
                              _env(None) | here, folder)
    out["review"] = _figures(usage) | {"clips": int(text.split()[0])}  # the run's clips, all read
    # The no-op rerun: a manifest whose every row is DOWNLOADED, beside the history.
    folder = work / "noop"
    ledger = _fresh_copy(history, folder)
    manifest = work / "finished.csv"
    _in_child("finished", str(noop_rows), str(manifest), str(ledger), str(folder / "videos"))
    os.sync()
    with EmulatorProcess(time_scale=0.0, rpm=0, rate_window=60.0) as emu:
        usage, text = run_command(_videobatch(
            "run", str(manifest), "--ledger", str(ledger), "--out", str(folder), "--progress-interval", "5"),
            _env(emu.base_url), folder)
        out["noop"] = _figures(usage) | {"api_requests": sum(emu.stats()["requests"].values())}
    return out


def history(work: Path, *, rows_in_history: int, noop_rows: int, time_scale: float) -> dict[str, Any]:
    source = cached_history(rows_in_history)
    result = {"rows": rows_in_history, "noop_rows": noop_rows, "run_jobs": RUN_JOBS,
              "history": one_side(work / "history", source, noop_rows=noop_rows, time_scale=time_scale),
              "empty": one_side(work / "empty", None, noop_rows=noop_rows, time_scale=time_scale)}
    for name in ("run", "noop", "plan", "status", "report", "export", "review"):
        h, e = result["history"][name], result["empty"][name]
        result.setdefault("ratio", {})[name] = {"wall": h["wall_s"] / e["wall_s"],
                                               "peak": h["peak_rss_mb"] / e["peak_rss_mb"]}
    return result


if __name__ == "__main__":  # the builders, run as children (see the module's docstring)
    if sys.argv[1] == "generate":
        _generate(int(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "finished":
        _finished(int(sys.argv[2]), *map(Path, sys.argv[3:6]))
    elif sys.argv[1] == "review":
        _review(Path(sys.argv[2]))
