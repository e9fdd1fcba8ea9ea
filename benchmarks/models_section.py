"""The mixed-model batch `make bench` runs (part m): ten models, each with its own parameters, a few
prompts each, at Apiframe's rate limit with time compressed as in part a.

What it measures: requests per job and the makespan against its lower bound, as part a does for
grok alone, and whether the books hold across models: one job per row, the ledger's credits equal
to the emulator's charges per model, and every charge within the catalog's "up to" estimate.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.processes import EmulatorProcess, run_command, run_pipeline
from benchmarks.sections import RPM, _generations
from benchmarks.workloads import write_yaml

# Ten models of ten families, each row valid for its model's schema (docs/models/).
MIXED_MODELS: dict[str, dict[str, Any]] = {
    "grok-imagine-video": {"duration": 10, "aspect_ratio": "16:9"},
    "veo-3.1-fast": {"duration": 8, "aspect_ratio": "16:9", "params": {"resolution": "1080p", "generate_audio": True}},
    "kling-3.0": {"duration": 5, "aspect_ratio": "9:16", "params": {"mode": "pro", "negative_prompt": "blurry"}},
    "sora-2": {"duration": 4, "aspect_ratio": "16:9", "params": {"resolution": "standard"}},
    "seedance-1-pro": {"duration": 5, "aspect_ratio": "1:1", "params": {"resolution": "720p", "seed": 7}},
    "hailuo-02": {"duration": 6, "params": {"resolution": "768p", "prompt_optimizer": False}},
    "luma-ray-2": {"duration": 5, "aspect_ratio": "4:3", "params": {"loop": True}},
    "wan-2.6": {"duration": 5, "params": {"resolution": "720p", "seed": 3}},
    "happyhorse-1.1": {"duration": 4, "aspect_ratio": "3:4", "params": {"resolution": "720p"}},
    "runway-gen4-turbo": {"duration": 5, "aspect_ratio": "21:9", "params": {"seed": 5}},
}


def mixed_rows(prompts: int) -> list[dict[str, Any]]:
    """Every prompt across every model: `prompts` x 10 rows, ids `<model>-<n>`."""
    return [{"id": f"{model}-{n}", "prompt": f"take {n}: a lighthouse keeper climbs toward lamp number {n}",
             "model": model, **fields}
            for n in range(prompts) for model, fields in MIXED_MODELS.items()]


def _books(folder: Path) -> dict[str, Any]:
    """`videobatch status --json`'s books by model, as a user reads them (status reads files only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIFRAME_")}
    command = [sys.executable, "-m", "pipeline", "status", "--ledger", str(folder / "ledger.parquet"), "--json"]
    _, text = run_command(command, env, folder)
    return json.loads(text)["by_model"]


def _batch(work: Path, name: str, batch: list[dict[str, Any]], compress: float) -> dict[str, Any]:
    """One batch at 500 rpm, time compressed: its requests, makespan against its bound, and books."""
    period, scale = 60.0 / compress, 1.0 / compress
    manifest = write_yaml(work / f"{name}.yaml", batch)
    folder = work / name
    with EmulatorProcess(time_scale=scale, rpm=RPM, rate_window=period) as emu:
        run = run_pipeline(manifest, folder, emu.base_url, "--rpm", str(RPM), "--rate-period", str(period),
                           "--poll-interval", str(scale))
        stats = emu.stats()
    jobs = len(batch)
    makespan = run.span("submit", "download")
    bound = jobs / RPM * period + _generations(stats)[0]  # part a's bound: every submit at the limit, the longest job
    books = _books(folder)
    requests = sum(stats["requests"].values())
    return {
        "jobs": jobs, "jobs_created": len(stats["jobs"]), "requests": requests, "requests_per_job": requests / jobs,
        "requests_by_route": stats["requests"], "list_calls_by_model_filter": stats.get("list_models", {}),
        "rate_limited": stats["rate_limited"],
        "makespan_s": makespan * compress, "lower_bound_s": bound * compress, "makespan_over_bound": makespan / bound,
        "by_model": {model: {"charged": figures["credits"]["charged"], "estimated": figures["credits"]["estimated"],
                             "server_charged": stats["credits_by_model"].get(model, 0),
                             "downloaded": figures["downloaded"], "jobs": figures["jobs"]}
                     for model, figures in books.items()},
    }


def mixed(work: Path, *, prompts: int, compress: float) -> dict[str, Any]:
    """(m) the mixed-model batch, then the same prompts all on grok-imagine-video: what mixing costs."""
    batch = mixed_rows(prompts)
    # The same number of rows, all grok: a prompt once per model it stood for (the same prompt
    # twice on one model would be the same video, refused).
    grok = [{"id": row["id"], "prompt": f"{row['prompt']}, as {row['model']} would", "model": "grok-imagine-video",
             **MIXED_MODELS["grok-imagine-video"]} for row in batch]
    return {"models": len(MIXED_MODELS), "prompts": prompts, "compress": compress,
            "mixed": _batch(work, "mixed", batch, compress), "grok_only": _batch(work, "grok-only", grok, compress)}


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def mixed_rows_of_table(m: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """Part m's lines of the bench table."""
    if not m:
        return []
    mine, grok = m["mixed"], m["grok_only"]
    books = mine["by_model"]
    same = all(f["charged"] == f["server_charged"] for f in books.values())
    within = all(f["charged"] <= f["estimated"] for f in books.values())
    once = mine["jobs_created"] == mine["jobs"] and all(f["downloaded"] == f["jobs"] for f in books.values())
    lists = mine["requests_by_route"].get("GET /v2/jobs", 0)
    rows = [
        (f"m. mixed-model batch, {m['models']} models x {m['prompts']} prompts at {RPM} rpm: requests per job",
         f"{mine['requests_per_job']:.3f}", f"same prompts all on grok: {grok['requests_per_job']:.3f}"),
        ("   job-list reads: all / with a model= filter",
         f"{lists} / {lists - mine['list_calls_by_model_filter'].get('', 0)}",
         f"grok: {grok['requests_by_route'].get('GET /v2/jobs', 0)}"),
        ("   makespan: videobatch / lower bound",
         f"{mine['makespan_s']:.0f} s / {mine['lower_bound_s']:.0f} s = {mine['makespan_over_bound']:.3f}",
         f"<= 1.10 {_verdict(mine['makespan_over_bound'] <= 1.10)}"),
        ("   makespan, same prompts all on grok: videobatch / lower bound",
         f"{grok['makespan_s']:.0f} s / {grok['lower_bound_s']:.0f} s = {grok['makespan_over_bound']:.3f}", ""),
        (f"   (time compressed {m['compress']:g}x; seconds shown at full scale; 429s: {mine['rate_limited']})", "", ""),
        ("   jobs made / rows, every row downloaded", f"{mine['jobs_created']} / {mine['jobs']}", _verdict(once)),
        ("   credits: ledger = emulator per model, each charge <= its estimate",
         f"{sum(f['charged'] for f in books.values())} of up to {sum(f['estimated'] for f in books.values())}",
         _verdict(same and within)),
    ]
    rows += [(f"     {model}", f"{f['charged']} = {f['server_charged']} of up to {f['estimated']} cr", "")
             for model, f in books.items()]
    return rows
