"""A year of nightly runs as a ledger: `n` realistic rows in LEDGER_SCHEMA, built with Polars.

Vectorised (no Python loop over rows), so a million rows take seconds. Rows look like what the
runner writes: a manifest per night of about 2,700 rows, prompts of 60-240 characters, the exact
request body, Apiframe-like job ids, sha256 digests, output paths, and a spread of states (mostly
DOWNLOADED, some FAILED and REJECTED, a few archived older versions under `<key>@<hash>`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from pipeline.store import archive
from pipeline.store.schema import LEDGER_SCHEMA, conform

ROWS_PER_NIGHT = 2700
DURATIONS = (6, 10, 15)
CREDITS = {6: 10, 10: 15, 15: 25}
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3")
SUBJECTS = ("a paper boat", "a red fox", "a lighthouse keeper", "neon koi fish", "an old tram",
            "a hot-air balloon", "a glass teapot", "a street musician", "a snow leopard", "a kite")
ACTIONS = ("drifts past", "circles around", "paints", "swims through", "rattles along",
           "rises over", "pours into", "plays beside", "stalks across", "dances above")
PLACES = ("a rain puddle at dawn", "a night-time city street", "the harbour in a storm",
          "a field of sunflowers", "a quiet library", "a frozen lake", "a busy night market",
          "a canyon at golden hour", "a sunlit kitchen", "the rooftops of an old town")
STYLES = ("macro lens, shallow depth of field", "35mm film, soft grain", "aerial drone shot",
          "slow motion, volumetric light", "handheld camera, documentary feel", "")
START = datetime(2025, 11, 24, 1, 0, tzinfo=timezone.utc)


def _pick(options: tuple, index: pl.Expr) -> pl.Expr:
    return pl.lit(pl.Series(list(options))).gather(index % len(options))


def history_frame(n: int, *, manifest_folder: str = "/srv/batches") -> pl.DataFrame:
    """`n` ledger rows: night i holds rows i*2700 .. i*2700+2699 of manifest night-<i>.csv."""
    i = pl.int_range(0, n, dtype=pl.Int64)
    night = i // ROWS_PER_NIGHT
    row = i % ROWS_PER_NIGHT + 1
    h = pl.concat_str(pl.lit("vb"), i.cast(pl.String)).hash(7)  # a stable pseudo-random draw per row
    draw = (h % 1000).cast(pl.Int64)
    duration = _pick(DURATIONS, i)
    ratio = _pick(RATIOS, i // 3)
    prompt = pl.concat_str(
        _pick(SUBJECTS, h // 7), pl.lit(" "), _pick(ACTIONS, h // 11), pl.lit(" "), _pick(PLACES, h // 13),
        pl.lit(", shot "), i.cast(pl.String), pl.lit(" of the spring campaign; "), _pick(STYLES, h // 17))
    request_hash = pl.concat_str(pl.lit("h"), i.cast(pl.String)).hash(11).cast(pl.String).str.pad_start(20, "0")
    digest = pl.concat_str(request_hash, request_hash, request_hash, pl.lit("0000")).str.slice(0, 64)
    archived = draw < 4  # 0.4 %: an older version kept after its prompt was edited
    key = pl.concat_str(pl.lit("shot-"), i.cast(pl.String), pl.lit("-"), request_hash.str.slice(0, 8))
    job_key = pl.when(archived).then(pl.concat_str(key, pl.lit(archive.MARK), request_hash.str.slice(8, 8))).otherwise(key)
    status = (pl.when(draw < 30).then(pl.lit("FAILED")).when(draw < 38).then(pl.lit("REJECTED"))
              .otherwise(pl.lit("DOWNLOADED")))
    ok = status == "DOWNLOADED"
    failed = status == "FAILED"
    job_id = pl.concat_str(pl.lit("job_"), h.cast(pl.String).str.pad_start(20, "0"))
    attempts = pl.when(failed).then(pl.lit(3)).when(draw % 50 == 0).then(pl.lit(2)).otherwise(pl.lit(1))
    credits = duration.replace_strict(CREDITS, return_dtype=pl.Int64)
    submitted = pl.lit(START) + pl.duration(days=night, seconds=row * 13 % 3600)
    body = pl.concat_str(pl.lit('{"aspect_ratio":"'), ratio, pl.lit('","duration":'), duration.cast(pl.String),
                         pl.lit(',"model":"grok-imagine-video","prompt":"'), prompt, pl.lit('"}'))
    frame = pl.select(
        job_key=job_key,
        manifest=pl.concat_str(pl.lit(f"{manifest_folder}/night-"), night.cast(pl.String), pl.lit(".csv")),
        row=row, variation=pl.lit(1, pl.Int64), prompt=prompt, duration=duration, aspect_ratio=ratio,
        reference_images=pl.when(draw % 5 == 0).then(
            pl.concat_list(pl.concat_str(pl.lit("https://cdn.example.com/refs/"), (h % 500).cast(pl.String),
                                         pl.lit(".jpg")))).otherwise(pl.lit([], pl.List(pl.String))),
        model=pl.lit("grok-imagine-video"),
        metadata=pl.concat_str(pl.lit('{"campaign":"spring","night":'), night.cast(pl.String), pl.lit("}")),
        request_hash=digest, status=status, job_id=job_id, attempts=attempts,
        idempotency_key=pl.concat_str(pl.lit("vb-"), key, pl.lit("-a"), attempts.cast(pl.String), pl.lit("-"),
                                      digest.str.slice(0, 16)),
        request_body=body, credits_estimated=credits,
        credits_prior=pl.when(attempts > 1).then(pl.lit(0)).otherwise(pl.lit(0)),
        credits_charged=pl.when(failed).then(pl.lit(0)).otherwise(credits),
        video_url=pl.when(ok).then(pl.concat_str(pl.lit("https://cdn.apiframe.ai/v/"), job_id, pl.lit(".mp4"))),
        expired=pl.when(failed).then(draw % 3 == 0).otherwise(pl.lit(False)),
        output_path=pl.when(ok).then(pl.concat_str(pl.lit("/srv/videobatch/outputs/videos/"), job_key,
                                                   pl.lit(".mp4"))),
        bytes=pl.when(ok).then(duration * 180_000 + draw * 97),
        sha256=pl.when(ok).then(digest),
        error=pl.when(failed).then(pl.lit("generation failed: the model could not render this prompt"))
        .when(status == "REJECTED").then(pl.lit("the API refused the request: prompt violates the content policy")),
        submitted_at=submitted,
        completed_at=pl.when(status != "REJECTED").then(submitted + pl.duration(seconds=duration * 6 + draw % 60)),
        downloaded_at=pl.when(ok).then(submitted + pl.duration(seconds=duration * 6 + draw % 60 + 2)),
        updated_at=submitted + pl.duration(seconds=duration * 6 + 90),
        run_id=pl.concat_str(pl.lit("run-night-"), night.cast(pl.String)),
        first_sent_at=submitted,
    )
    # A year of grok rows written before models had params: the columns added since are null.
    return conform(frame, LEDGER_SCHEMA)


def table_frame(n: int) -> pl.DataFrame:
    """history_frame's rows with the table's partitions, as the product writes them: `night` the
    UTC date a row was first sent, `batch` its manifest's slug (one manifest a night)."""
    from pipeline.store.table import TABLE_SCHEMA, batch_of

    frame = history_frame(n)
    return frame.with_columns(
        night=pl.col("first_sent_at").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d"),
        batch=pl.col("manifest").map_elements(batch_of, return_dtype=pl.String),
    ).select(list(TABLE_SCHEMA))


def nights(n: int) -> int:
    return (n + ROWS_PER_NIGHT - 1) // ROWS_PER_NIGHT


def night_started(night: int) -> datetime:
    return START + timedelta(days=night)


def runs_frame(n: int) -> pl.DataFrame:
    """The runs table of those nights: one run a night, every row downloaded or failed."""
    from pipeline.store.schema import RUNS_SCHEMA

    count = nights(n)
    night = pl.int_range(0, count, dtype=pl.Int64)
    started = pl.lit(START) + pl.duration(days=night)
    return pl.select(
        run_id=pl.concat_str(pl.lit("run-night-"), night.cast(pl.String)),
        manifest=pl.concat_str(pl.lit("/srv/batches/night-"), night.cast(pl.String), pl.lit(".csv")),
        emulated=pl.lit(False), started_at=started, ended_at=started + pl.duration(hours=1),
        rows_planned=pl.lit(ROWS_PER_NIGHT, pl.Int64), rows_skipped=pl.lit(0, pl.Int64),
        rows_submitted=pl.lit(ROWS_PER_NIGHT, pl.Int64), rows_finished=pl.lit(2597, pl.Int64),
        rows_failed=pl.lit(103, pl.Int64), credits_estimated=pl.lit(45_000, pl.Int64),
        credits_charged=pl.lit(44_200, pl.Int64), exit_code=pl.lit(1, pl.Int64),
        log_path=pl.concat_str(pl.lit("/srv/videobatch/outputs/logs/run-night-"), night.cast(pl.String),
                               pl.lit(".jsonl")),
        account_user_id=pl.lit("user-1"), account_team_id=pl.lit("team-1"), account_key_id=pl.lit("key-1"),
        rows_unfinished=pl.lit(0, pl.Int64), stop_reason=pl.lit(None, pl.String),
    ).cast(RUNS_SCHEMA)
