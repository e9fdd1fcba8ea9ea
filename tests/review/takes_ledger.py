"""A finished night of comparison for the review page and the report: the same prompts across
models, aspect ratios and params, as a run leaves the ledger.

The rows are the manifest loader's own (a matrix and two rows sharing a prompt), so their keys,
models and params are the ones a run records; the run's outcome (credits charged against the
catalog's upper bound, generation times, the probed frame, a failed take, an earlier take) is
written with the store API, each video a real small clip of its take's frame and length.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

from benchmarks.workloads import part_frame
from pipeline.emulator.video import render_clip
from pipeline.manifest.load import load_manifest
from pipeline.store import parts as ledger_store
from pipeline.store.schema import DOWNLOADED, FAILED, LEDGER_SCHEMA
from tests.harness import write_manifest

LIGHTHOUSE = "A lighthouse beam sweeping over a stormy sea at night"
KEEPER = "A lighthouse keeper climbing a spiral staircase"
BOAT = "A paper boat in a puddle"
MODELS = ["grok-imagine-video", "veo-3.1-fast", "kling-3.0"]
# What each model's take came to: (credits_estimated, credits_charged, seconds to make it); grok's
# estimate is its documented price, the others' an upper bound from the catalog (costMax x 6 s).
OUTCOME = {"grok-imagine-video": (10, 10, 38), "veo-3.1-fast": (90, 60, 95), "kling-3.0": (42, 35, 141)}
FRAMES = {"16:9": (320, 180), "9:16": (180, 320), "1:1": (240, 240)}
FAILED_KEY = "lighthouse-kling-3.0-9x16"
EARLIER = "lighthouse-grok-imagine-video-16x9@1a2b3c4d"  # the grok take before a regeneration
NIGHT = datetime(2026, 12, 1, 22, 0, tzinfo=timezone.utc)


def jobs() -> list[dict]:
    return [
        {"id": "lighthouse", "prompt": LIGHTHOUSE, "duration": 6,
         "matrix": {"model": MODELS, "aspect_ratio": ["16:9", "9:16"]}},
        {"id": "keeper", "prompt": KEEPER, "model": "kling-3.0", "duration": 5, "aspect_ratio": "16:9",
         "params": {"mode": "pro", "negative_prompt": "blurry, low detail, washed-out colours, text overlays"}},
        {"id": "keeper-draft", "prompt": KEEPER, "duration": 6, "aspect_ratio": "9:16"},
        {"id": "boat", "prompt": BOAT, "aspect_ratio": "1:1"},
    ]


def _outcome(row: dict, i: int, videos: Path) -> dict:
    estimated, charged, took = OUTCOME[row["model"]]
    submitted = NIGHT + timedelta(minutes=i)
    done = {"status": DOWNLOADED, "attempts": 1, "credits_estimated": estimated, "credits_prior": 0,
            "credits_charged": charged, "submitted_at": submitted, "completed_at": submitted + timedelta(seconds=took),
            "idempotency_key": f"vb-{row['job_key']}-a1-0123456789abcdef", "job_id": f"job-{i}"}
    if row["job_key"] == FAILED_KEY:
        return done | {"status": FAILED, "credits_charged": 0, "completed_at": None,
                       "error": "the API says FAILED: the model refused this prompt (moderation)"}
    width, height = FRAMES[row["aspect_ratio"] or "16:9"]
    path = videos / f"{row['job_key']}.mp4"
    path.write_bytes(render_clip(i % 12, width, height, row["duration"]))
    done["downloaded_at"] = done["completed_at"] + timedelta(seconds=3)
    return done | {"output_path": str(path), "bytes": path.stat().st_size, "video_width": width,
                   "video_height": height, "video_seconds": float(row["duration"])}


def write_takes_ledger(folder: Path) -> Path:
    """The ledger (and its videos under folder/out) of the night; its runs table is empty, so a
    reader asks for `--run all`."""
    manifest = write_manifest(folder / "compare.yaml", jobs())
    videos = folder / "out"
    videos.mkdir(parents=True, exist_ok=True)
    rows = load_manifest(manifest).to_dicts()
    earlier = next(r for r in rows if r["job_key"] == EARLIER.split("@")[0]) | {"job_key": EARLIER}
    made = []
    for i, row in enumerate([*rows, earlier]):
        made.append(row | _outcome(row, i, videos))
    made[-1] |= {"submitted_at": NIGHT - timedelta(days=1), "completed_at": NIGHT - timedelta(days=1, seconds=-52),
                 "downloaded_at": NIGHT - timedelta(days=1, seconds=-55), "credits_charged": 10}
    frame = pl.DataFrame([{name: row.get(name) for name in LEDGER_SCHEMA} for row in made], schema=LEDGER_SCHEMA)
    ledger = folder / "ledger.parquet"
    ledger_store.write_part(ledger, part_frame(frame, 1), 1, 1)
    return ledger
