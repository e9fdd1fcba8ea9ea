"""pipeline/manifest/rules.py: the checks of one row, each problem's exact words (users and
tests/manifests/broken/EXPECTED.yaml read them), and the error that carries them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.manifest.rules import (
    MAX_METADATA_BYTES,
    MAX_SHOWN_ISSUES,
    Checker,
    ManifestError,
    ManifestIssue,
    check_job,
    metadata_too_big,
)
from pipeline.models import MODELS

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

# (job, field, problem; hint)
PROBLEMS = [
    ({}, "prompt", "missing; every job needs a prompt"),
    ({"prompt": 5}, "prompt", "expected text, got int; quote the prompt"),
    ({"prompt": "  "}, "prompt", "empty; write what the video should show"),
    ({"prompt": "x" * 5001}, "prompt", "5001 characters, at most 5000; shorten the prompt"),
    ({"prompt": "a fox", "promt": "x"}, "promt",
     "unknown field; did you mean 'prompt'?; rename it to 'prompt' (fields that are not close to a known one "
     "are kept as metadata)"),
    ({"prompt": "a fox", "model": "sora"}, "model",
     f"unknown model 'sora'; use one of: {', '.join(MODELS)} (or leave it out)"),
    ({"prompt": "a fox", "duration": 7}, "duration",
     "7 is not a clip length this model makes; use one of 6, 10, 15 (seconds)"),
    ({"prompt": "a fox", "duration": True}, "duration",
     "true (a yes/no value) is not a clip length this model makes; use one of 6, 10, 15 (seconds)"),
    ({"prompt": "a fox", "aspect_ratio": "21:9"}, "aspect_ratio",
     "'21:9' is not supported; use one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3 (in quotes in YAML)"),
    ({"prompt": "a fox", "id": "a/b"}, "id",
     "'a/b' is not a usable id; use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, "
     "without '..' or '/' (it becomes a file name)"),
    ({"prompt": "a fox", "id": "a..b"}, "id",
     "'a..b' is not a usable id; use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, "
     "without '..' or '/' (it becomes a file name)"),
    ({"prompt": "a fox", "count": 0}, "count",
     "0 is not a whole number from 1 to 100; set how many variations of this row to make"),
    ({"prompt": "a fox", "count": True}, "count",
     "True is not a whole number from 1 to 100; set how many variations of this row to make"),
    ({"prompt": "a fox", "reference_images": 3}, "reference_images",
     "expected a list, got int; list image URLs or paths (in CSV, separate them with |)"),
    ({"prompt": "a fox", "reference_images": [f"https://x.test/{i}.png" for i in range(8)]}, "reference_images",
     "8 images, at most 7; drop some reference images"),
    ({"prompt": "a fox", "reference_images": ["ftp://x/y.png"]}, "reference_images",
     "ftp: URLs are not supported (ftp://x/y.png); use an http(s) URL, or a local file path that videobatch "
     "uploads for you"),
    ({"prompt": "a fox", "reference_images": ["https://"]}, "reference_images",
     "'https://' has no host; give a full https URL"),
    ({"prompt": "a fox", "reference_images": [""]}, "reference_images",
     "'' is not a URL or a file path; give an https URL or a path relative to the manifest"),
    ({"prompt": "a fox", "tags": {1, 2}}, "tags",
     "metadata value of type set cannot be stored; use text, numbers, true/false, lists or mappings"),
    ({"prompt": "a fox", "notes": "n" * MAX_METADATA_BYTES}, "notes",
     f"metadata is {MAX_METADATA_BYTES + 13} bytes of JSON, at most 16384 (16 KiB) a row; keep metadata to "
     "short labels; put large data elsewhere and refer to it by id or URL"),
]


@pytest.mark.parametrize("job, field, text", PROBLEMS, ids=[p[1] + ":" + p[2][:30] for p in PROBLEMS])
def test_a_problem_names_its_field_in_the_rules_own_words(tmp_path, job, field, text):
    with pytest.raises(ManifestError) as caught:
        check_job(job, file="f.yaml", folder=tmp_path)
    assert [str(issue) for issue in caught.value.issues] == [f"f.yaml: {field}: {text}"]
    assert str(caught.value).endswith("\nfix this problem in f.yaml and run again; nothing was submitted")


def test_a_good_row_comes_back_normalized(tmp_path):
    (tmp_path / "ref.png").write_bytes(PNG)
    checked = check_job({"prompt": "  a fox  ", "duration": "10", "aspect_ratio": 969, "id": 12, "count": "3",
                         "reference_images": ["ref.png", "https://x.test/a.png"], "campaign": "winter"},
                        file="f.yaml", folder=tmp_path)
    assert {k: v for k, v in checked.items() if k not in ("reference_images", "ref_ids")} == {
        "model": "grok-imagine-video", "prompt": "a fox", "duration": 10, "aspect_ratio": "16:9", "id": "12",
        "count": 3, "metadata": '{"campaign": "winter"}', "credits": 15, "params": {}, "param_ids": {}}
    assert checked["reference_images"] == [str(tmp_path / "ref.png"), "https://x.test/a.png"]
    assert checked["ref_ids"][0].startswith("sha256:") and checked["ref_ids"][1] == "https://x.test/a.png"


def test_every_problem_of_a_row_is_reported_in_the_order_of_its_fields(tmp_path):
    with pytest.raises(ManifestError) as caught:
        check_job({"prompt": "", "durration": 6, "duration": 7, "count": 0}, file="f.yaml", folder=tmp_path)
    assert [issue.field for issue in caught.value.issues] == ["durration", "prompt", "duration", "count"]
    assert "fix these 4 problems in f.yaml" in str(caught.value)


def test_a_local_image_must_lie_under_the_manifest_s_folder(tmp_path):
    inside, outside = tmp_path / "project", tmp_path / "elsewhere"
    inside.mkdir(), outside.mkdir()
    (outside / "secret.png").write_bytes(PNG)
    (inside / "notes.txt").write_text("not an image")
    checker = Checker("m.yaml", inside, from_csv=False, image_folders=(inside,))
    assert checker.check(1, {"prompt": "a fox", "reference_images": ["../elsewhere/secret.png", "notes.txt"]},
                         {}) is None
    problems = [issue.problem for issue in checker.issues]
    assert problems == [f"../elsewhere/secret.png: resolves to {outside / 'secret.png'}, outside the manifest's "
                        f"folder ({inside})", "notes.txt: not a PNG, JPEG, WebP or GIF image"]
    assert checker.issues[0].hint.endswith("or pass --refs-root DIR naming a folder that holds it")


def test_csv_rows_split_images_on_bars_and_report_their_width(tmp_path):
    checker = Checker("m.csv", tmp_path, from_csv=True)
    row = checker.check(1, {"prompt": "a fox", "reference_images": "https://x.test/a.png | https://x.test/b.png"}, {})
    assert row["reference_images"] == ["https://x.test/a.png", "https://x.test/b.png"]
    assert checker.check(2, "has 3 cells, the header has 2", {}) is None
    assert str(checker.issues[0]) == ("m.csv:2: this row has 3 cells, the header has 2; "
                                      "make every row as wide as the header")


def test_defaults_fill_a_row_and_their_extra_fields_are_metadata(tmp_path):
    checker = Checker("m.yaml", tmp_path, from_csv=False)
    row = checker.check(1, {"prompt": "a fox", "tags": ["a"]}, {"duration": 15, "campaign": "winter", "tags": ["b"]})
    assert (row["duration"], row["credits"], row["metadata"]) == (15, 25, '{"campaign": "winter", "tags": ["a"]}')


def test_split_fields_tells_metadata_from_typos():
    checker = Checker("m.yaml", Path("."), from_csv=False)
    assert checker.split_fields(frozenset({"prompt", "promt", "campaign", "aspect"})) == (
        ["aspect", "campaign"], [("promt", "prompt")])


def test_metadata_too_big_counts_utf8_bytes():
    assert not metadata_too_big("x" * MAX_METADATA_BYTES)
    assert metadata_too_big("x" * (MAX_METADATA_BYTES + 1))
    assert metadata_too_big("é" * (MAX_METADATA_BYTES // 2 + 1))  # two bytes each


def test_a_long_list_of_problems_is_cut_and_counted():
    issues = [ManifestIssue("m.yaml", n, "prompt", "missing", "every job needs a prompt")
              for n in range(1, MAX_SHOWN_ISSUES + 8)]
    lines = str(ManifestError("m.yaml", issues)).splitlines()
    assert lines[0] == "m.yaml:1: prompt: missing; every job needs a prompt"
    assert lines[-2:] == ["... and 7 more problems",
                          f"fix these {MAX_SHOWN_ISSUES + 7} problems in m.yaml and run again; nothing was submitted"]
    assert str(ManifestIssue("m.yaml", "line 3", None, "not valid YAML: x")) == "m.yaml:line 3: not valid YAML: x"
