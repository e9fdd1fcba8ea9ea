"""Manifests and ledgers the benchmarks run on, written the way a user would write them."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import yaml

DURATIONS = (6, 10, 15)
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3")
COMPARED = ("grok-imagine-video", "veo-3.1-fast", "kling-3.0", "hailuo-02")  # models that all make a 6 s clip


def rows(n: int, prefix: str = "shot") -> list[dict]:
    """`n` distinct prompts, clip lengths in equal thirds, every aspect ratio."""
    return [{"prompt": f"{prefix} {i}: a paper boat drifts past lantern number {i} at dusk",
             "duration": DURATIONS[i % 3], "aspect_ratio": RATIOS[i % 7], "campaign": "bench"}
            for i in range(n)]


def write_csv(path: Path, jobs: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(jobs[0]))
        writer.writeheader()
        writer.writerows(jobs)
    return path


def write_yaml(path: Path, jobs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"jobs": jobs}, sort_keys=False, width=1000), encoding="utf-8")
    return path


def write_finished_ledger(manifest: Path, ledger: Path, videos: Path) -> int:
    """A ledger in which every row of `manifest` is DOWNLOADED, with its (empty) file on disk.

    Built from the manifest loader's own rows, so the job keys are the ones a run computes.
    Written straight into the Delta table as a finished run's checkpoints leave it (tonight's
    partition of this manifest, no journal): a new table, or one more commit beside the rows
    already there (a history, say).
    """
    from deltalake import write_deltalake

    from pipeline.manifest.load import load_manifest
    from pipeline.store.location import Location
    from pipeline.store.schema import DOWNLOADED
    from pipeline.store.table import PARTITIONS, TABLE_SCHEMA, LedgerTable, batch_of, night_of, write_new

    frame = load_manifest(manifest)
    videos.mkdir(parents=True, exist_ok=True)
    paths = [str(videos / f"{key}.mp4") for key in frame["job_key"]]
    for path in paths:
        open(path, "wb").close()
    frame = frame.with_columns(
        status=pl.lit(DOWNLOADED), output_path=pl.Series(paths), bytes=pl.lit(0), attempts=pl.lit(1),
        credits_charged=pl.col("credits_estimated"), credits_prior=pl.lit(0),
        idempotency_key=pl.format("vb-{}-a1-bench", pl.col("job_key")),  # as every finished attempt has one
        night=pl.lit(night_of()), batch=pl.lit(batch_of(str(manifest))),
    )
    frame = frame.select(
        pl.col(name) if name in frame.columns else pl.lit(None).alias(name) for name in TABLE_SCHEMA
    ).cast(TABLE_SCHEMA)
    where = Location(str(ledger), ledger)
    table = LedgerTable(where)
    if table.exists():
        write_deltalake(table.uri, frame.to_arrow(), mode="append", partition_by=list(PARTITIONS))
    else:
        write_new(where, frame, {"bench": "finished"})
    return frame.height


def part_frame(frame: pl.DataFrame, seq: int) -> pl.DataFrame:
    """Ledger rows as an old-format part's rows (store/parts.py): first versions, written at journal
    seq `seq`. The benchmarks write Delta tables now; tests that build a parts ledger use this."""
    from pipeline.store import parts as ledger_store

    return frame.with_columns(pl.lit(seq, pl.Int64).alias(ledger_store.SEQ), pl.lit(False).alias(ledger_store.REMOVED),
                              pl.lit(False).alias(ledger_store.SUPERSEDES))


def write_review_ledger(folder: Path, n: int, models: int = 1) -> Path:
    """A ledger of `n` DOWNLOADED clips with real, small, playable videos, for the review page.

    Built straight as a finished run leaves it (write_finished_ledger), then each empty file is
    replaced by one of the emulator's clips: a dozen encoded once and copied, not `n` jobs.
    With `models` > 1, n / models prompts each made by that many models (a matrix row each): the
    page's comparison boxes. Returns the ledger's path; its runs table is empty, so the page is
    opened with `--run all`.
    """
    from pipeline.emulator.video import VARIANTS, render_clip
    from pipeline.store.ledger import read_ledger

    ledger = folder / "ledger.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    if models > 1:
        manifest = write_yaml(folder / "review.yaml", [
            {"prompt": r["prompt"], "duration": 6, "matrix": {"model": list(COMPARED[:models])}}
            for r in rows(n // models, "review")])
    else:
        manifest = write_csv(folder / "review.csv", [dict(r, duration=6, aspect_ratio="16:9") for r in rows(n, "review")])
    write_finished_ledger(manifest, ledger, folder / "videos")
    clips = [render_clip(variant, 480, 270, 6) for variant in range(VARIANTS)]
    for i, path in enumerate(read_ledger(ledger)["output_path"]):
        Path(path).write_bytes(clips[i % VARIANTS])
    return ledger
