"""pipeline/manifest/params.py: a row's `params` passed through as written, defaults only where the
model takes the parameter, a row's own value for a model lacking it an error naming the model,
local images named by their content, CSV's JSON `params` column, and every problem said as
`FILE:ROW: FIELD: problem; what to do`. Driven through load_manifest, as `plan` and `run` load."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pipeline.manifest.identity import request_hash
from pipeline.manifest.load import load_manifest
from tests.harness import ISSUE_21, manifest_problems, write_text

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _write(folder: Path, text: str, name: str = "m.yaml") -> Path:
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "keeper.png").write_bytes(PNG)
    return write_text(folder / name, text)


def test_the_issue_s_manifest_passes_params_through_as_written(tmp_path):
    rows = load_manifest(_write(tmp_path, ISSUE_21)).to_dicts()
    veo, kling = rows
    assert (veo["model"], veo["duration"], veo["aspect_ratio"]) == ("veo-3.1-fast", 8, "16:9")
    assert json.loads(veo["params"]) == {"resolution": "1080p", "generate_audio": True}
    assert veo["params"] == '{"generate_audio":true,"resolution":"1080p"}'  # keys sorted, as hashed
    # kling-3.0 takes aspect_ratio: the default applies; the local start image is resolved to its file.
    assert (kling["model"], kling["duration"], kling["aspect_ratio"]) == ("kling-3.0", 5, "16:9")
    assert json.loads(kling["params"]) == {"mode": "pro", "negative_prompt": "blurry",
                                           "start_image": str(tmp_path / "refs" / "keeper.png")}
    assert veo["credits_estimated"] is None and kling["credits_estimated"] is None  # priced by the plan


def test_a_default_applies_only_to_models_that_take_the_parameter(tmp_path):
    text = """\
defaults:
  duration: 10
  aspect_ratio: "9:16"
  params: {seed: 7, resolution: 1080p, mode: pro}
jobs:
  - {prompt: a fox, model: hailuo-02}
  - {prompt: a fox, model: kling-2.1}
  - {prompt: a fox, model: runway-gen4-turbo}
  - {prompt: a fox, model: sora-2, duration: 8}
  - {prompt: a fox}
"""
    path = _write(tmp_path, text)
    # sora-2 takes a resolution, but not 1080p: the default applies to it, and its row says so.
    assert manifest_problems(path)[:1] == [
        f"{path}:4: params.resolution: '1080p' is not a value sora-2 takes; use one of standard, high"]
    path.write_text(text.replace("sora-2, duration: 8", "sora-2, duration: 8, params: {resolution: high}"))
    taken = {row["model"]: (row["duration"], row["aspect_ratio"], json.loads(row["params"] or "{}"))
             for row in load_manifest(path).to_dicts()}
    assert taken == {
        "hailuo-02": (10, None, {"resolution": "1080p"}),  # no aspect ratio, seed or mode
        "kling-2.1": (10, None, {"mode": "pro"}),  # no aspect ratio, seed or resolution
        "runway-gen4-turbo": (10, "9:16", {"seed": 7}),
        "sora-2": (8, "9:16", {"resolution": "high"}),  # the row's own value wins
        "grok-imagine-video": (10, "9:16", {}),
    }


@pytest.mark.parametrize("row, field, problem", [
    ("{prompt: a fox, model: hailuo-02, aspect_ratio: '16:9'}", "aspect_ratio",
     "hailuo-02 takes no aspect_ratio; remove it from this row; hailuo-02 takes: duration, end_image, image, "
     "prompt_optimizer, resolution"),
    ("{prompt: a fox, model: midjourney-video, duration: 5, params: {start_image: 'https://cdn.test/a.png'}}",
     "duration", "midjourney-video takes no duration; remove it from this row; midjourney-video takes: motion, "
                 "resolution, start_image"),
    ("{prompt: a fox, model: sora-2, params: {seed: 7}}", "params.seed",
     "sora-2 has no parameter 'seed'; sora-2 takes: aspect_ratio, duration, resolution, start_image"),
    ("{prompt: a fox, model: kling-3.0, params: {mode: ultra}}", "params.mode",
     "'ultra' is not a value kling-3.0 takes; use one of standard, pro, 4k"),
    ("{prompt: a fox, model: kling-3.0, params: {duration: 5}}", "params.duration",
     "duration is a field of its own; write `duration:` beside `prompt:`, not under params"),
    ("{prompt: a fox, model: kling-3.0, params: [mode, pro]}", "params",
     "expected a mapping of the model's parameters; write it as {seed: 7, resolution: 1080p} (in CSV, a JSON "
     "object: {\"seed\": 7})"),
    ("{prompt: a fox, model: kling-3.0, params: {start_image: refs/none.png}}", "params.start_image",
     "refs/none.png: no such file"),
    ("{prompt: a fox, model: wan-2.6, params: {audio: refs/keeper.png}}", "params.audio",
     "'refs/keeper.png' is not an http(s) URL; give the video or audio as an https URL (only local images are "
     "uploaded)"),
    ("{prompt: a fox, model: veo-3, aspect_ratio: wide}", "aspect_ratio",  # Veo's is free text, yet W:H
     "'wide' is not an aspect ratio veo-3 takes; write it as width:height in whole numbers, e.g. \"16:9\" (in "
     "quotes in YAML)"),
    ("{prompt: a fox, model: midjourney-video}", "params.start_image",
     "midjourney-video needs start_image; add it under params"),
])
def test_a_row_s_problem_names_file_row_field_and_what_to_do(tmp_path, row, field, problem):
    path = _write(tmp_path, f"jobs:\n  - {{prompt: fine, model: kling-3.0}}\n  - {row}\n")
    lines = manifest_problems(path)
    assert lines[0].startswith(f"{path}:2: {field}: {problem}"), lines
    assert lines[-1] == f"fix this problem in {path} and run again; nothing was submitted"


def test_a_local_image_in_params_is_named_by_its_content(tmp_path):
    """The key holds the image's sha256, not its path: moving the project or renaming the file
    changes no key; other bytes are another job."""
    text = "jobs:\n  - {prompt: a fox, model: kling-3.0, params: {start_image: refs/keeper.png}}\n"
    (tmp_path / "a").mkdir()
    [first] = load_manifest(_write(tmp_path / "a", text)).to_dicts()
    moved = tmp_path / "b"
    moved.mkdir()
    (moved / "refs").mkdir()
    shutil.copy(tmp_path / "a" / "refs" / "keeper.png", moved / "refs" / "renamed.png")
    (moved / "m.yaml").write_text(text.replace("keeper.png", "renamed.png"))
    [second] = load_manifest(moved / "m.yaml").to_dicts()
    assert first["job_key"] == second["job_key"] and first["params"] != second["params"]
    digest = hashlib.sha256(PNG).hexdigest()
    assert first["request_hash"] == request_hash("kling-3.0", "a fox", None, None, [], 1,
                                                  {"start_image": f"sha256:{digest}"})
    (moved / "refs" / "renamed.png").write_bytes(PNG + b"\x01")
    [third] = load_manifest(moved / "m.yaml").to_dicts()
    assert third["job_key"] != first["job_key"]


def test_model_and_params_are_in_the_key_and_a_plain_grok_row_hashes_as_before(tmp_path):
    base = "jobs:\n  - {prompt: a koi pond, duration: 10, aspect_ratio: '9:16'%s}\n"
    keys = {extra: load_manifest(_write(tmp_path, base % extra)).row(0, named=True)["job_key"]
            for extra in ("", ", model: grok-imagine-video", ", params: {}", ", model: kling-3.0",
                          ", model: kling-3.0, params: {mode: pro}",
                          ", model: kling-3.0, params: {mode: standard}")}
    # Written by the code before models had params (1177f48): the key it gave this row.
    assert keys[""] == keys[", model: grok-imagine-video"] == keys[", params: {}"] == "a-koi-pond-c349e321542f"
    assert len(set(keys.values())) == 4  # another model, another parameter: another job


def test_csv_params_is_a_json_object_in_its_column(tmp_path):
    path = _write(tmp_path, 'prompt,model,duration,params\n'
                            'a fox,kling-3.0,5,"{""mode"": ""pro"", ""negative_prompt"": ""blurry""}"\n'
                            'a koi,veo-3,,\n'
                            'an owl,veo-3,4,{not json}\n'
                            'a hare,veo-3,4,"[1, 2]"\n', name="m.csv")
    lines = manifest_problems(path)
    hint = "expected a mapping of the model's parameters; write it as {seed: 7, resolution: 1080p} (in CSV, a " \
           "JSON object: {\"seed\": 7})"
    assert lines[:2] == [f"{path}:4: params: {hint}", f"{path}:5: params: {hint}"]
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")
    fox, koi = load_manifest(path).to_dicts()
    assert fox["params"] == '{"mode":"pro","negative_prompt":"blurry"}' and koi["params"] is None
