"""The measurements `make bench` takes, one function each, every figure from one run.

Time is compressed where the real thing takes hours: generation times, the rate-limit window and
the client's pacing all shrink by the same factor, so request counts and the ratio of makespan
to its lower bound are what they would be at full scale; seconds are reported scaled back up.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.processes import BENCH_KEY, EmulatorProcess, run_pipeline
from benchmarks.sdk_baseline import run_sdk_style
from benchmarks.workloads import rows, write_csv, write_finished_ledger, write_yaml

RPM = 500  # Apiframe's limit


def _generations(stats: dict[str, Any]) -> list[float]:
    """Every job's generation time in seconds, longest first."""
    spans = [datetime.fromisoformat(j["completed_at"].replace("Z", "+00:00"))
             - datetime.fromisoformat(j["created_at"].replace("Z", "+00:00"))
             for j in stats["jobs"] if j["completed_at"]]
    return sorted((s.total_seconds() for s in spans), reverse=True)


def tracking(work: Path, *, jobs: int, compress: float) -> dict[str, Any]:
    """(a) requests per job and makespan at 500 rpm, ours beside SDK-style polling; (e) 429s."""
    period, scale = 60.0 / compress, 1.0 / compress
    batch = rows(jobs)
    manifest = write_csv(work / "tracking.csv", batch)
    emulator = dict(time_scale=scale, rpm=RPM, rate_window=period)
    with EmulatorProcess(**emulator) as emu:
        run = run_pipeline(manifest, work / "tracking", emu.base_url, "--rpm", str(RPM),
                           "--rate-period", str(period), "--poll-interval", str(scale))
        ours = emu.stats()
    with EmulatorProcess(**emulator) as emu:
        sdk_run = asyncio.run(run_sdk_style(emu.base_url, BENCH_KEY, batch, rpm=RPM, rate_period=period,
                                            time_scale=scale))
        sdk = emu.stats()
    # The same batch against an API whose job list ignores ?status= (CONTRACT.md: unspecified).
    with EmulatorProcess(**emulator, dialects=("ignore-status-filter",)) as emu:
        unfiltered_run = run_pipeline(manifest, work / "tracking-unfiltered", emu.base_url, "--rpm", str(RPM),
                                      "--rate-period", str(period), "--poll-interval", str(scale))
        unfiltered = emu.stats()

    def figures(stats: dict[str, Any], makespan: float) -> dict[str, Any]:
        generations = _generations(stats)
        # The bound: every submit at the limit, plus the longest generation.
        bound = jobs / RPM * period + generations[0]
        # A tighter one: submitting the longest jobs first, no schedule ends before the k-th
        # submit plus the k-th longest generation, for every k.
        tight = max((k + 1) / RPM * period + g for k, g in enumerate(generations))
        requests = sum(stats["requests"].values())
        return {"requests": requests, "requests_per_job": requests / jobs,
                "makespan_s": makespan * compress, "lower_bound_s": bound * compress,
                "makespan_over_bound": makespan / bound, "tight_bound_s": tight * compress,
                "makespan_over_tight_bound": makespan / tight, "rate_limited": stats["rate_limited"],
                "requests_by_route": stats["requests"], "jobs_created": len(stats["jobs"])}

    return {"jobs": jobs, "compress": compress,
            "ours": figures(ours, run.span("submit", "download")),
            "sdk": figures(sdk, sdk_run["makespan_s"]),
            "ours_unfiltered": figures(unfiltered, unfiltered_run.span("submit", "download"))}


def dialects(work: Path, *, jobs: int, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """(f) one faulty batch under each emulator dialect, and all at once: its outcome, jobs the
    server made per row, the ledger's credits against the server's, and requests per job."""
    from pipeline.emulator.dialects import DIALECTS
    from pipeline.store.ledger import read_ledger

    batch = rows(jobs, "dialect")
    manifest = write_csv(work / "dialects.csv", batch)
    faults = ("--fault-drop", "0.1", "--fault-503", "0.05", "--fault-reset", "0.02", "--fault-truncate", "0.1",
              "--fault-fail", "0.05")
    results: dict[str, Any] = {"jobs": jobs, "faults": " ".join(faults)}
    for name in only or (*DIALECTS, "all"):
        chosen = tuple(DIALECTS) if name == "all" else (name,)
        folder = work / f"dialect-{name}"
        with EmulatorProcess(time_scale=0.02, rpm=0, rate_window=60.0, dialects=chosen, faults=faults) as emu:
            run = run_pipeline(manifest, folder, emu.base_url, "--rpm", "0", "--poll-interval", "0.05",
                               "--job-timeout", "5", exit_codes=(0, 1, 3))
            stats = emu.stats()
        ledger = read_ledger(folder / "ledger.parquet")
        statuses = ledger["status"].value_counts()
        results[name] = {
            "exit_code": run.usage.exit_code,
            "rows_by_status": dict(zip(statuses["status"].to_list(), statuses["count"].to_list())),
            "server_jobs_per_row": len(stats["jobs"]) / jobs,
            "failed_generations": sum(1 for j in stats["jobs"] if j["status"] == "FAILED"),
            "ledger_credits": int(ledger["credits_charged"].sum() or 0),
            "server_credits": stats["credits"]["charged"] - stats["credits"]["refunded"],
            "requests_per_job": sum(stats["requests"].values()) / jobs,
            "requests_by_route": stats["requests"],
            "cdn_key_leaks": stats.get("cdn_key_leaks", 0),
        }
    return results


def overhead(work: Path, *, jobs: int) -> dict[str, Any]:
    """(b) jobs per second and pipeline CPU per job on a zero-latency, unlimited emulator;
    (d) the share of the run spent writing the journal durably."""
    # One clip length and shape: the emulator encodes each distinct clip once, and that one-off
    # cost is not what this measures.
    batch = [dict(r, duration=6, aspect_ratio="16:9") for r in rows(jobs, "fast")]
    manifest = write_csv(work / "overhead.csv", batch)
    with EmulatorProcess(time_scale=0.0, rpm=0, rate_window=60.0) as emu:
        run = run_pipeline(manifest, work / "overhead", emu.base_url, "--rpm", "0", "--poll-interval", "0.02")
        stats = emu.stats()
    run_end = run.last("run_end")
    journal = run_end.get("ledger", {})
    busy = run.span("submit", "download") or run.usage.wall_s
    return {
        "jobs": jobs, "jobs_created": len(stats["jobs"]),
        "wall_s": run.usage.wall_s, "busy_s": busy, "jobs_per_s": jobs / busy,
        "pipeline_cpu_s": run.usage.cpu_s, "pipeline_cpu_ms_per_job": run.usage.cpu_s * 1000 / jobs,
        "verify_cpu_ms_per_job": run_end.get("verify_cpu_seconds", 0.0) * 1000 / jobs,
        "emulator_cpu_s": emu.usage.cpu_s, "emulator_cpu_ms_per_job": emu.usage.cpu_s * 1000 / jobs,
        "journal_records": journal.get("records"), "journal_fsyncs": journal.get("fsyncs"),
        "journal_seconds": journal.get("fsync_seconds"),
        # Write + fsync time, in a worker thread (the run goes on meanwhile), over the run's wall time.
        "journal_share": (journal.get("fsync_seconds") or 0.0) / run.usage.wall_s,
        "checkpoint_seconds": journal.get("checkpoint_seconds"),
    }


def resume(work: Path, *, n: int) -> dict[str, Any]:
    """(c) a rerun of an n-row manifest whose every row is DOWNLOADED: time to decide, peak memory."""
    batch = rows(n, "resume")
    results: dict[str, Any] = {"rows": n}
    for kind, write in (("csv", write_csv), ("yaml", write_yaml)):
        folder = work / f"resume-{kind}"
        manifest = write(work / f"resume.{kind}", batch)
        write_finished_ledger(manifest, folder / "ledger.parquet", folder / "videos")
        os.sync()  # the setup's 100,000 new files are written back now, not during the timed run
        with EmulatorProcess(time_scale=0.0, rpm=0, rate_window=60.0) as emu:
            run = run_pipeline(manifest, folder, emu.base_url)
            requests = sum(emu.stats()["requests"].values())
        results[kind] = {"wall_s": run.usage.wall_s, "peak_rss_mb": run.usage.peak_rss_mb,
                         "api_requests": requests}
    return results


def startup(work: Path) -> float:
    """Seconds to start Python and import what every command imports: the floor under each wall time."""
    import subprocess
    import sys

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipeline.cli, polars, aiohttp, av"], check=True, cwd=work)
    return time.perf_counter() - started
