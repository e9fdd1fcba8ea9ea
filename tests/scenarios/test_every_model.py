"""Every Apiframe video model in one manifest, end to end (issue 21, "Done when"): the real
`videobatch` in child processes against the emulator over real sockets. Ten models with their own
parameters in one batch; a manifest breaking five models' rules refused before anything is sent;
--max-credits on catalog prices never passed; a matrix, each combination its own paid job once;
downloads verified (decoded, duration checked when asked, size checked where known and recorded);
jobs of several models in flight at once all followed. Every test ends on the books: one paid
job per wanted row, ledger credits = the emulator's charges, every file the bytes served.

Covers: pipeline/plan/prices.py pipeline/run/catalog.py pipeline/store/catalog.py pipeline/manifest/matrix.py
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import av
import polars as pl
import pytest

from pipeline.emulator import Faults
from pipeline.models import get_model
from pipeline.models.pricing import read_catalog, upper_bound
from tests.harness import check_books, cli_env, jobs_per_key, ledger, run_args, run_cli

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

TEN_MODELS = """\
defaults:
  model: veo-3.1-fast
  duration: 8
  aspect_ratio: "16:9"
jobs:
  - prompt: A lighthouse beam sweeping over a stormy sea at night
    params: {resolution: 1080p, generate_audio: true}
  - prompt: A lighthouse keeper climbing a spiral staircase
    model: kling-3.0
    duration: 5
    params: {mode: pro, negative_prompt: blurry, start_image: refs/keeper.png}
  - {prompt: Gulls over the harbour at dawn, model: grok-imagine-video, duration: 10, aspect_ratio: "9:16"}
  - {prompt: A fishing boat in fog, model: sora-2, duration: 4, aspect_ratio: "9:16", params: {resolution: high}}
  - {prompt: The lamp room turning, model: midjourney-video, params: {start_image: refs/keeper.png, motion: high}}
  - {prompt: Waves on the rocks, model: hailuo-02, duration: 6, params: {resolution: 768p, prompt_optimizer: false}}
  - {prompt: A storm front rolling in, model: luma-ray-2, duration: 5, aspect_ratio: "21:9",
     params: {loop: true, concepts: [zoom_in]}}
  - {prompt: Rain on the window, model: seedance-1-pro, duration: 5, aspect_ratio: "4:3",
     params: {resolution: 480p, seed: 42, camera_fixed: true}}
  - {prompt: A lighthouse from above, model: wan-2.6, duration: 15, params: {resolution: 720p, seed: 3}}
  - {prompt: The keeper's cat asleep, model: runway-gen4-turbo, duration: 10, aspect_ratio: "1:1",
     params: {seed: 9, image: refs/keeper.png}}
"""


def _project(tmp: Path, text: str, name: str = "m.yaml") -> Path:
    (tmp / "refs").mkdir(exist_ok=True)
    (tmp / "refs" / "keeper.png").write_bytes(PNG)
    manifest = tmp / name
    manifest.write_text(text)
    return manifest


def _catalog(emu) -> dict:
    with urllib.request.urlopen(f"{emu.base_url}/v2/models?modality=video", timeout=10) as answer:
        return read_catalog(json.load(answer))


def _decoded_seconds(path: str) -> float:
    """What PyAV makes of a file: it must decode (a frame at least) and has a length."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert frames > 0
        return float(stream.duration * stream.time_base) if stream.duration else frames / float(stream.average_rate)


def test_a_batch_of_ten_models_with_their_own_parameters(emulator_thread, tmp_path):
    emu = emulator_thread()
    manifest = _project(tmp_path, TEN_MODELS)
    env = cli_env(emu.base_url)
    done = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = ledger(tmp_path)
    stats = emu.stats()
    check_books(stats, rows, in_flight_ok=False)
    assert rows.height == 10 and rows["model"].n_unique() == 10 and set(rows["status"]) == {"DOWNLOADED"}
    assert stats["list_models"] == {"": stats["list_models"].get("", 0)}  # the list read for every model
    assert stats["requests"]["GET /v2/models"] == 1  # the catalog, read once per run
    assert stats["uploads"] == 1  # one local image in three rows' params: uploaded once

    jobs = {job["id"]: job for job in stats["jobs"]}
    prices = _catalog(emu)
    for row in rows.iter_rows(named=True):
        model, job = get_model(row["model"]), jobs[row["job_id"]]
        body = json.loads(row["request_body"])
        sent = body[model.params_field]
        wanted = {**({"duration": row["duration"]} if row["duration"] is not None else {}),
                  **({"aspect_ratio": row["aspect_ratio"]} if row["aspect_ratio"] is not None else {}),
                  **json.loads(row["params"] or "{}")}
        for name, value in wanted.items():  # every parameter as written; a local image as its upload's URL
            if isinstance(value, str) and value.startswith(str(tmp_path)):
                assert re.match(r"https?://", sent[name]), (row["job_key"], name, sent[name])
            else:
                assert sent[name] == value, (row["job_key"], name)
        assert set(sent) == set(wanted), row["job_key"]
        # The estimate bounds the charge; the file is what was served, with the length asked.
        assert row["credits_charged"] == job["credit_cost"] <= row["credits_estimated"]
        assert row["credits_estimated"] == upper_bound(model, row["duration"], prices)
        assert (row["video_width"], row["video_height"]) == (job["width"], job["height"])
        assert row["video_seconds"] == pytest.approx(job["duration"], abs=0.05)
        assert _decoded_seconds(row["output_path"]) == pytest.approx(job["duration"], abs=0.1)
        if row["duration"] is not None:
            assert job["duration"] == row["duration"]
    by_model = rows.group_by("model").agg(pl.col("credits_charged").sum()).rows()
    assert dict(by_model) == stats["credits_by_model"]
    sizes = {row["model"]: (row["video_width"], row["video_height"]) for row in rows.iter_rows(named=True)}
    assert sizes["grok-imagine-video"] == get_model("grok-imagine-video").frame_size("9:16")
    assert min(sizes["veo-3.1-fast"]) == 1080 and min(sizes["seedance-1-pro"]) == 480  # the resolution asked

    kept = json.loads((tmp_path / "ledger.catalog.json").read_text())  # the catalog, beside the ledger, dated
    assert kept["read_at"] and read_catalog(kept["answer"]) == prices

    again = run_cli(*run_args(manifest, tmp_path), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert emu.stats()["requests"]["POST /v2/videos/generate"] == 10  # nothing sent or paid again
    check_books(emu.stats(), ledger(tmp_path), in_flight_ok=False)
