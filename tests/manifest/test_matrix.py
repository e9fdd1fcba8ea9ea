"""pipeline/manifest/matrix.py: a `matrix:` asks for each row in every combination of its values,
each combination its own job with its own key (an id gets `-kling-3.0-9x16`), a row's matrix over
the file's for the fields it names, and every problem naming the combination. Driven through
load_manifest, as `plan` and `run` load."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.manifest.load import load_manifest
from pipeline.manifest.matrix import MAX_COMBINATIONS, label, suffix
from tests.harness import manifest_problems, write_text

GRID = """\
matrix: {model: [grok-imagine-video, veo-3.1-fast, kling-3.0], aspect_ratio: ["16:9", "9:16"]}
jobs:
  - {id: beam, prompt: A lighthouse beam sweeping over a stormy sea at night}
  - prompt: A lighthouse keeper climbing a spiral staircase
    matrix: {model: [kling-3.0], duration: [5, 10]}
    params: {mode: pro}
"""


def _write(folder: Path, text: str, name: str = "m.yaml") -> Path:
    return write_text(folder / name, text)


def test_each_combination_is_its_own_job_with_its_own_key(tmp_path):
    rows = load_manifest(_write(tmp_path, GRID)).to_dicts()
    beams = [(r["job_key"], r["model"], r["aspect_ratio"], r["duration"]) for r in rows if r["row"] == 1]
    assert beams == [
        ("beam-grok-imagine-video-16x9", "grok-imagine-video", "16:9", 6),
        ("beam-grok-imagine-video-9x16", "grok-imagine-video", "9:16", 6),
        ("beam-veo-3.1-fast-16x9", "veo-3.1-fast", "16:9", None),
        ("beam-veo-3.1-fast-9x16", "veo-3.1-fast", "9:16", None),
        ("beam-kling-3.0-16x9", "kling-3.0", "16:9", None),
        ("beam-kling-3.0-9x16", "kling-3.0", "9:16", None),
    ]
    # Row 2's own matrix replaces the file's model list and adds durations; aspect ratios stay.
    keepers = [(r["model"], r["aspect_ratio"], r["duration"], r["params"]) for r in rows if r["row"] == 2]
    assert keepers == [("kling-3.0", ratio, length, '{"mode":"pro"}') for ratio in ("16:9", "9:16")
                       for length in (5, 10)]
    keys = [r["job_key"] for r in rows]
    hashes = [r["request_hash"] for r in rows]
    assert len(set(keys)) == len(set(hashes)) == len(rows) == 10
    assert all(k.startswith("a-lighthouse-keeper-climbing-a-") for k in keys[6:])  # no id: slug + hash


def test_keys_do_not_depend_on_the_order_of_a_matrix_s_values(tmp_path):
    first = {r["job_key"] for r in load_manifest(_write(tmp_path, GRID)).to_dicts()}
    swapped = GRID.replace("[grok-imagine-video, veo-3.1-fast, kling-3.0]", "[kling-3.0, grok-imagine-video, "
                                                                           "veo-3.1-fast]")
    swapped = swapped.replace("duration: [5, 10]", "duration: [10, 5]")
    assert {r["job_key"] for r in load_manifest(_write(tmp_path, swapped)).to_dicts()} == first


def test_a_matrix_over_a_model_s_params_puts_them_in_its_params_block(tmp_path):
    path = _write(tmp_path, """\
jobs:
  - id: koi
    prompt: a koi pond
    model: veo-3
    params: {seed: 3}
    matrix: {resolution: [720p, 1080p], generate_audio: [true, false]}
""")
    rows = load_manifest(path).to_dicts()
    assert [(r["job_key"], r["params"]) for r in rows] == [
        ("koi-720p-True", '{"generate_audio":true,"resolution":"720p","seed":3}'),
        ("koi-720p-False", '{"generate_audio":false,"resolution":"720p","seed":3}'),
        ("koi-1080p-True", '{"generate_audio":true,"resolution":"1080p","seed":3}'),
        ("koi-1080p-False", '{"generate_audio":false,"resolution":"1080p","seed":3}'),
    ]


def test_an_invalid_combination_is_an_error_naming_the_combination(tmp_path):
    path = _write(tmp_path, """\
matrix: {model: [grok-imagine-video, sora-2, hailuo-02], duration: [10, 6]}
jobs:
  - {prompt: a fox, aspect_ratio: "16:9"}
""")
    hailuo = ("aspect_ratio: hailuo-02 takes no aspect_ratio; remove it from this row; hailuo-02 takes: duration, "
              "end_image, image, prompt_optimizer, resolution")
    assert manifest_problems(path) == [
        f"{path}:1 (model=sora-2, duration=6): duration: 6 is not a clip length sora-2 makes; use one of 4, 8, 10"
        ", 12, 15 (seconds)",
        f"{path}:1 (model=hailuo-02, duration=10): {hailuo}",
        f"{path}:1 (model=hailuo-02, duration=6): {hailuo}",
        f"fix these 3 problems in {path} and run again; nothing was submitted",
    ]


@pytest.mark.parametrize("job, field, problem", [
    ("{prompt: a fox, model: veo-3, matrix: {model: [kling-3.0]}}", "model",
     "set both on the row and in its matrix; keep it in one place: the row's value, or the matrix's list"),
    ("{prompt: a fox, model: veo-3, params: {seed: 1}, matrix: {seed: [1, 2]}}", "seed",
     "set both on the row and in its matrix; keep it in one place: the row's value, or the matrix's list"),
])
def test_a_field_set_both_on_the_row_and_in_its_matrix_is_an_error(tmp_path, job, field, problem):
    path = _write(tmp_path, f"jobs:\n  - {job}\n")
    assert manifest_problems(path)[:-1] == [f"{path}:1: {field}: {problem}"]  # once for the row, not per combination


@pytest.mark.parametrize("matrix, field, problem", [
    ("{prompt: [a, b]}", "matrix.prompt", "cannot be varied by a matrix; vary model, duration, aspect_ratio or "
                                          "a model's params; give prompt on the row"),
    ("{reference_images: [[a.png]]}", "matrix.reference_images", "cannot be varied by a matrix"),
    ("{model: []}", "matrix.model", "no values; list at least one value, or drop the field"),
    ("[grok-imagine-video, kling-3.0]", "matrix", "expected a mapping of fields to lists of values; write it as "
     "{model: [grok-imagine-video, veo-3.1-fast], aspect_ratio: [\"16:9\", \"9:16\"]}"),
    ("{seed: [%s]}" % ", ".join(map(str, range(MAX_COMBINATIONS + 1))), "matrix",
     f"{MAX_COMBINATIONS + 1} combinations, at most {MAX_COMBINATIONS} a row; list fewer values, or split the row"),
])
def test_a_matrix_that_asks_for_nothing_sensible_is_named_on_its_row(tmp_path, matrix, field, problem):
    path = _write(tmp_path, f"jobs:\n  - {{prompt: a fox, model: veo-3}}\n  - {{prompt: an owl, model: veo-3, "
                            f"matrix: {matrix}}}\n")
    lines = manifest_problems(path)
    assert lines[0].startswith(f"{path}:2: {field}: {problem}"), lines


def test_the_file_s_matrix_is_named_as_the_matrix_when_it_is_wrong(tmp_path):
    path = _write(tmp_path, "matrix: {count: [1, 2]}\njobs:\n  - {prompt: a fox}\n")
    assert manifest_problems(path)[0] == (f"{path}: matrix.count: cannot be varied by a matrix; vary model, "
                                  "duration, aspect_ratio or a model's params; give count on the row")


def test_two_combinations_asking_for_the_same_video_are_said_once(tmp_path):
    path = _write(tmp_path, "jobs:\n  - {prompt: a fox, model: kling-3.0, duration: 5}\n"
                            "  - {prompt: a fox, matrix: {model: [kling-3.0, veo-3], duration: [5]}}\n")
    assert manifest_problems(path)[0] == (f"{path}:2 (model=kling-3.0, duration=5): prompt: row 1 asks for exactly the "
                                  "same video; remove one of them, or use `count:` for variations")


def test_csv_matrix_is_a_json_object_in_its_column(tmp_path):
    path = _write(tmp_path, 'id,prompt,model,matrix\n'
                            'fox,a fox,kling-3.0,"{""aspect_ratio"": [""16:9"", ""9:16""], ""mode"": [""pro""]}"\n'
                            'owl,an owl,veo-3,\n', name="m.csv")
    rows = load_manifest(path).to_dicts()
    assert [(r["row"], r["job_key"], r["aspect_ratio"], r["params"]) for r in rows] == [
        (2, "fox-16x9-pro", "16:9", '{"mode":"pro"}'),
        (2, "fox-9x16-pro", "9:16", '{"mode":"pro"}'),
        (3, "owl", None, None),
    ]
    path.write_text("prompt,matrix\na fox,{model: [veo-3]}\n")
    assert manifest_problems(path)[0].startswith(f"{path}:2: matrix: expected a mapping of fields to lists of values")


def test_suffix_and_label_spell_a_combination():
    combination = {"model": "kling-3.0", "aspect_ratio": "9:16", "negative_prompt": "blurry, dark/grey"}
    assert suffix(combination) == "-kling-3.0-9x16-blurry-dark-grey"
    assert suffix({"seed": 7, "x": "///"}) == "-7-x"
    assert label(4, {"model": "veo-3", "duration": 8}) == "4 (model=veo-3, duration=8)"
