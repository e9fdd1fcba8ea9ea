"""Decides what a `matrix:` asks for: each row in every combination of the listed values, each
combination its own job (its own key), named in its problems as `ROW (model=kling-3.0,
aspect_ratio=9:16)`.

A matrix is a mapping of a field to its values, at the top of a YAML manifest (every row) or on
a row (a CSV row: a JSON object in a `matrix` column); a row's own matrix replaces the file's
for the fields it names. `model`, `duration` and `aspect_ratio` are the manifest's own fields;
any other name is one of the model's params. A field a row sets itself may not be in its matrix
too: which one would win is not obvious, so it is an error.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from pipeline.manifest.rules import Checker

MAX_COMBINATIONS = 100  # a row's combinations, before `count:`
OWN_FIELDS = ("model", "duration", "aspect_ratio")
NOT_IN_MATRIX = ("prompt", "id", "count", "params", "matrix", "reference_images")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def suffix(combination: dict[str, Any]) -> str:
    """What a matrix row's id gets, so each combination has its own key: `-kling-3.0-9x16`."""
    parts = (_UNSAFE.sub("-", str(value).replace(":", "x")).strip("-") or "x" for value in combination.values())
    return "".join(f"-{part}" for part in parts)


def label(row_no: int, combination: dict[str, Any]) -> str:
    return f"{row_no} ({', '.join(f'{name}={value}' for name, value in combination.items())})"


def _matrix(checker: Checker, where: int | None, value: Any) -> dict[str, list] | None:
    if isinstance(value, str):  # CSV: a JSON object in the cell
        try:
            value = json.loads(value) if value.strip() else None
        except ValueError:
            value = "not JSON"
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        checker.issue(where, "matrix", "expected a mapping of fields to lists of values",
                      'write it as {model: [grok-imagine-video, veo-3.1-fast], aspect_ratio: ["16:9", "9:16"]}')
        return None
    matrix = {}
    for name, values in value.items():
        values = values if isinstance(values, list) else [values]
        if str(name) in NOT_IN_MATRIX:
            checker.issue(where, f"matrix.{name}", "cannot be varied by a matrix",
                          f"vary {', '.join(OWN_FIELDS)} or a model's params; give {name} on the row")
            return None
        if not values:
            checker.issue(where, f"matrix.{name}", "no values", "list at least one value, or drop the field")
            return None
        matrix[str(name)] = values
    return matrix


def _row_params(job: dict) -> dict | None:
    """The row's own params as a mapping ({} for none); None when unreadable (the check says so)."""
    params = job.get("params")
    if isinstance(params, str) and params.strip():
        try:
            params = json.loads(params)
        except ValueError:
            return None
    return dict(params) if isinstance(params, dict) else {}


def _clashes(checker: Checker, row_no: int, job: dict, matrix: dict[str, list]) -> bool:
    """Whether the row sets itself a field its matrix varies: said once for the row."""
    params = _row_params(job) or {}
    clashes = [name for name in matrix if (name in job if name in OWN_FIELDS else name in params)]
    for name in clashes:
        checker.issue(row_no, name, "set both on the row and in its matrix",
                      "keep it in one place: the row's value, or the matrix's list")
    return bool(clashes)


def _combination_job(job: dict, combination: dict[str, Any]) -> dict:
    """The row with one combination's values in place."""
    variant = {name: value for name, value in job.items() if name != "matrix"}
    params = _row_params(job)
    if params is None:
        return variant  # the row's own params problem is said by the check
    for name, value in combination.items():
        if name in OWN_FIELDS:
            variant[name] = value
        else:
            params[name] = value
    if params:
        variant["params"] = params
    return variant


def combinations(jobs: list[tuple[int, Any]], header: list[str] | None, file_matrix: Any,
                 checker: Checker) -> list[tuple[int, Any, str | None, str]]:
    """[(row number, job, its label in problems or None, its id's suffix)]: one entry per row, or
    one per combination of a row with a matrix."""
    top = _matrix(checker, None, file_matrix)
    if top is None:
        return []
    entries: list[tuple[int, Any, str | None, str]] = []
    at = header.index("matrix") if header is not None and "matrix" in header else None
    for row_no, job in jobs:
        own = None
        if header is not None:
            if at is None or isinstance(job, str) or not job[at].strip():
                entries.append((row_no, job, None, ""))
                continue
            job = {name: cell for name, cell in zip(header, job) if cell.strip() != ""}
        if isinstance(job, dict) and "matrix" in job:
            own = _matrix(checker, row_no, job["matrix"])
            if own is None:
                continue
        matrix = {**top, **(own or {})}
        if not matrix or not isinstance(job, dict):
            entries.append((row_no, job, None, ""))
            continue
        if _clashes(checker, row_no, job, matrix):
            continue
        grid = [dict(zip(matrix, values)) for values in itertools.product(*matrix.values())]
        if len(grid) > MAX_COMBINATIONS:
            checker.issue(row_no, "matrix", f"{len(grid)} combinations, at most {MAX_COMBINATIONS} a row",
                          "list fewer values, or split the row")
            continue
        for combination in grid:
            entries.append((row_no, _combination_job(job, combination), label(row_no, combination),
                            suffix(combination)))
    return entries
