"""pipeline/manifest/fast.py: a row goes the fast way only when the full check (rules.py) would
accept it with the very same result; any row it is unsure of is left to the full check (None).

tests/manifest/test_load.py proves the whole of it by loading every test manifest both ways; this
drives `Rows` itself, row by row, against `Checker.check`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.manifest.fast import Rows
from pipeline.manifest.identity import request_hash
from pipeline.manifest.rules import Checker

HEADER = ["id", "prompt", "duration", "campaign"]


def csv_rows() -> tuple[Checker, Rows]:
    checker = Checker("m.csv", Path("."), from_csv=True)
    return checker, Rows(checker, {}, HEADER)


def full(checker: Checker, cells: list[str]) -> dict:
    return checker.check(1, {name: cell for name, cell in zip(HEADER, cells) if cell.strip()}, {})


def test_a_csv_row_of_a_known_shape_takes_the_fast_path_with_the_full_check_s_result():
    checker, rows = csv_rows()
    first = ["a", "a red fox", "10", "winter"]
    assert rows.fast(first) is None  # a new request shape: the full check decides
    template = rows.learn(rows.key(first), full(checker, first))
    second = ["b", " a grey wolf ", "10", "summer"]
    hit = rows.fast(second)
    expected = full(checker, second)
    assert hit == (template, expected["prompt"], expected["id"], expected["metadata"])
    assert (template.model, template.duration, template.count, template.index) == ("grok-imagine-video", 10, 1, 0)
    text = f"{template.head}\"a grey wolf\"{template.tail}1}}"
    assert text == ('{"aspect_ratio":"16:9","duration":10,"model":"grok-imagine-video","prompt":"a grey wolf",'
                    '"reference_images":[],"variation":1}')
    assert hashlib.sha256(text.encode()).hexdigest() == request_hash("grok-imagine-video", "a grey wolf", 10,
                                                                     "16:9", [], 1)


@pytest.mark.parametrize("cells, why", [
    (["c", "a red fox", "15", "x"], "another request shape"),
    (["c", "   ", "10", "x"], "no prompt"),
    (["c", "x" * 5001, "10", "x"], "a prompt too long"),
    (["c/d", "a red fox", "10", "x"], "an id the full check refuses"),
    (["c", "a red fox", "10", "x" * 20_000], "metadata too big"),
])
def test_a_csv_row_it_is_unsure_of_goes_to_the_full_check(cells, why):
    checker, rows = csv_rows()
    first = ["a", "a red fox", "10", "winter"]
    rows.learn(rows.key(first), full(checker, first))
    assert rows.fast(cells) is None, why


def test_a_csv_column_that_is_a_typo_sends_its_filled_rows_to_the_full_check():
    checker = Checker("m.csv", Path("."), from_csv=True)
    header = ["prompt", "durration"]
    rows = Rows(checker, {}, header)
    rows.learn(rows.key(["a red fox", ""]), checker.check(1, {"prompt": "a red fox"}, {}))
    assert rows.fast(["a grey wolf", ""]) is not None
    assert rows.fast(["a grey wolf", "10"]) is None


def test_yaml_rows_are_keyed_by_type_and_value():
    checker = Checker("m.yaml", Path("."), from_csv=False)
    rows = Rows(checker, {"campaign": "winter"}, None)
    job = {"prompt": "a red fox", "duration": 10}
    rows.learn(rows.key(job), checker.check(1, job, {"campaign": "winter"}))
    hit = rows.fast({"prompt": "a grey wolf", "duration": 10, "id": 7})
    assert hit is not None and hit[1:] == ("a grey wolf", "7", '{"campaign": "winter"}')
    assert rows.fast({"prompt": "a grey wolf", "duration": 10.0}) is None  # a float: the full check's
    assert rows.fast({"prompt": "a grey wolf", "duration": True}) is None  # True == 1, yet another type
    assert rows.fast({"prompt": "a grey wolf", "duration": 10, "promt": "x"}) is None  # a typo
    assert rows.fast(["not", "a", "mapping"]) is None
