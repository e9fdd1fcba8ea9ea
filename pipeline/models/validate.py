"""Decides whether a params block is one a model takes, by its own schema from openapi.json
(schemas.json), checked with jsonschema rather than a hand-written copy of forty schemas.

`problems` answers in the manifest's words: the field as the manifest spells it (`duration`,
`aspect_ratio`, `reference_images`, or `params.NAME`), the problem naming the model, and what to
do, naming the values the model allows. The emulator answers 400 with the same checker
(`body_errors`), so the two cannot disagree about what a model takes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from jsonschema import Draft7Validator

from pipeline.models import MODELS, SHARED_PARAMS, VideoModel, _choices


class Problem(NamedTuple):
    field: str
    problem: str
    hint: str


@lru_cache(maxsize=None)
def validator(model_name: str) -> Draft7Validator:
    return Draft7Validator(MODELS[model_name].schema)


def manifest_field(name: str) -> str:
    return name if name in SHARED_PARAMS else f"params.{name}"


def _shown(values: Any) -> str:
    return ", ".join(str(value) for value in values)


def _problem(model: VideoModel, path: list, error) -> Problem:
    """One jsonschema error inside the params block, in the manifest's words."""
    name = str(path[0]) if path else None
    field = manifest_field(name) if name else "params"
    schema = model.params.get(name, {}) if name else {}
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = f"params.{extra[0]}" if not path and extra and extra[0] not in SHARED_PARAMS else field
        if not path and extra and extra[0] in SHARED_PARAMS:
            where = extra[0]
        return Problem(where, f"{model.name} has no parameter {', '.join(map(repr, extra))}",
                       f"{model.name} takes: {_shown(sorted(model.params))}")
    choices = _choices(schema) if len(path) == 1 else None
    unit = " (seconds)" if name == "duration" else ""
    if choices is not None and error.validator in ("enum", "anyOf", "minimum", "maximum", "type"):
        ranged = "enum" not in schema and "anyOf" not in schema
        allowed = (f"a whole number from {choices[0]} to {choices[-1]}" if ranged else f"one of {_shown(choices)}")
        return Problem(field, f"{error.instance!r} is not a value {model.name} takes", f"use {allowed}{unit}")
    limit = error.validator_value
    if error.validator in ("maxItems", "minItems"):
        return Problem(field, f"{len(error.instance)} items, {model.name} takes at "
                              f"{'most' if error.validator == 'maxItems' else 'least'} {limit}", "adjust the list")
    if error.validator in ("maxLength", "minLength"):
        return Problem(field, f"{len(error.instance)} characters, {model.name} takes at "
                              f"{'most' if error.validator == 'maxLength' else 'least'} {limit}", "adjust the text")
    if error.validator in ("maximum", "minimum"):
        return Problem(field, f"{error.instance!r} is {'over' if error.validator == 'maximum' else 'under'} "
                              f"{limit}, the {error.validator} {model.name} takes", f"use a value within it{unit}")
    if error.validator == "type":
        return Problem(field, f"expected {limit} for {model.name}, got {type(error.instance).__name__}",
                       "write the value as the model's parameter takes it (see docs/models/)")
    if error.validator == "required":
        missing = next((name for name in error.validator_value if name not in (error.instance or {})), "?")
        return Problem(manifest_field(missing), f"{model.name} needs {missing}", "add it under params")
    return Problem(field, f"{error.message} ({model.name})", f"see the parameters of {model.name} in docs/models/")


def problems(model: VideoModel, block: dict[str, Any]) -> list[Problem]:
    """Every problem of a params block for `model`, in the manifest's words; [] when valid."""
    errors = _params_validator(model.name).iter_errors(block)
    return [_problem(model, list(error.path), error) for error in sorted(errors, key=lambda e: list(map(str, e.path)))]


@lru_cache(maxsize=None)
def _params_validator(model_name: str) -> Draft7Validator:
    model = MODELS[model_name]
    return Draft7Validator(model.schema["properties"][model.params_field])


def body_errors(body: Any) -> dict[str, list[str]]:
    """{json_path: [messages]} for a whole request body, the way the API's validation reports
    them (CONTRACT.md, 400): empty when the body is valid for its model."""
    if not isinstance(body, dict):
        return {"": ["Expected object"]}
    name = body.get("model")
    if "model" not in body:
        return {"model": ["Required"]}
    if not isinstance(name, str) or name not in MODELS:
        return {"model": [f"Invalid enum value. Expected one of: {', '.join(MODELS)}"]}
    errors: dict[str, list[str]] = {}
    for error in validator(name).iter_errors(body):
        path = ".".join(str(part) for part in error.path)
        if error.validator == "additionalProperties":
            for key in sorted(set(error.instance) - set(error.schema.get("properties", {}))):
                errors.setdefault(".".join(filter(None, (path, str(key)))), []).append("Unrecognized key")
        elif error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            errors.setdefault(".".join(filter(None, (path, missing))), []).append("Required")
        else:
            errors.setdefault(path, []).append(error.message)
    return errors
