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
from urllib.parse import urlsplit

from jsonschema import Draft7Validator, FormatChecker

from pipeline.models import MODELS, SHARED_PARAMS, VideoModel, _choices


class Problem(NamedTuple):
    field: str
    problem: str
    hint: str


def manifest_field(name: str) -> str:
    return name if name in SHARED_PARAMS else f"params.{name}"


def _shown(values: Any) -> str:
    return ", ".join(str(value) for value in values)


def _unexpected(error) -> list[str]:
    """The keys an additionalProperties error is about, sorted."""
    return sorted(set(error.instance) - set(error.schema.get("properties", {})))


def _missing(error) -> str:
    """The property a `required` error is about: jsonschema makes one error per missing property
    and names it only in its message (`'x' is a required property`)."""
    return next((name for name in error.validator_value if error.message.startswith(repr(name))), "")


def _problem(model: VideoModel, path: list, error) -> Problem:
    """One jsonschema error inside the params block, in the manifest's words."""
    name = str(path[0]) if path else None
    field = manifest_field(name) if name else "params"
    schema = model.params.get(name, {}) if name else {}
    if error.validator == "additionalProperties":
        extra = _unexpected(error)
        where = manifest_field(extra[0]) if not path and extra else field
        return Problem(where, f"{model.name} has no parameter {', '.join(map(repr, extra))}",
                       f"{model.name} takes: {_shown(sorted(model.params))}")
    # A value of the parameter, or an item of a list of them (luma's concepts).
    valued = schema if len(path) == 1 else schema.get("items", {}) if len(path) == 2 else {}
    choices = _choices(valued) if valued else None
    unit = " (seconds)" if name == "duration" else ""
    if choices is not None and error.validator in ("enum", "anyOf", "minimum", "maximum", "type"):
        ranged = "enum" not in valued and "anyOf" not in valued
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
        missing = _missing(error)
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


def _is_url(value: Any) -> bool:
    """What the API's Zod `.url()` takes, near enough: a scheme, then a host or a path, no spaces."""
    if not isinstance(value, str):
        return True  # the type check reports it
    parts = urlsplit(value)
    return not any(c.isspace() for c in value) and bool(parts.scheme) and bool(parts.netloc or parts.path)


URLS = FormatChecker(formats=())
URLS.checks("uri")(_is_url)


@lru_cache(maxsize=None)
def _body_validator(model_name: str) -> Draft7Validator:
    return Draft7Validator(MODELS[model_name].schema, format_checker=URLS)


def _zod_type(instance: Any) -> str:
    if isinstance(instance, bool):
        return "boolean"
    if instance is None:
        return "null"
    return {dict: "object", list: "array", str: "string"}.get(type(instance), "number")


def _literals(schema: dict[str, Any]) -> list | None:
    """The values of an anyOf of one-value enums (how openapi.json spells durations), else None."""
    options = schema.get("anyOf") or []
    if options and all(len(option.get("enum", ())) == 1 for option in options):
        return [option["enum"][0] for option in options]
    return None


def _zod_message(error) -> str:
    """One jsonschema error in the words of the API's Zod validation (CONTRACT.md, 400)."""
    kind, limit, instance = error.validator, error.validator_value, error.instance
    if kind == "type":
        return f"Expected {limit}, received {_zod_type(instance)}"
    if kind == "enum":
        return f"Invalid enum value. Expected one of: {', '.join(map(str, limit))}"
    if kind == "anyOf" and _literals(error.schema) is not None:
        types = {option.get("type") for option in error.schema["anyOf"]}
        json_type = types.pop() if len(types) == 1 else None
        if json_type and not Draft7Validator.TYPE_CHECKER.is_type(instance, json_type):
            return f"Expected {json_type}, received {_zod_type(instance)}"
        return f"Invalid literal value, expected one of {_literals(error.schema)}"
    if kind in ("minLength", "maxLength"):
        return f"String must contain at {'least' if kind == 'minLength' else 'most'} {limit} character(s)"
    if kind in ("minItems", "maxItems"):
        return f"Array must contain at {'least' if kind == 'minItems' else 'most'} {limit} element(s)"
    if kind in ("minimum", "maximum"):
        return f"Number must be {'greater' if kind == 'minimum' else 'less'} than or equal to {limit}"
    if kind == "format":
        return "Invalid url"
    if kind == "pattern":
        return "Invalid"
    return error.message


def body_errors(body: Any) -> dict[str, list[str]]:
    """{json_path: [messages]} for a whole request body, the way the API's Zod validation reports
    them (CONTRACT.md, 400): empty when the body is valid for its model. The model is the
    discriminator: without a known one nothing else is checked."""
    if not isinstance(body, dict):
        return {"": ["Expected object"]}
    name = body.get("model")
    if "model" not in body:
        return {"model": ["Required"]}
    if not isinstance(name, str) or name not in MODELS:
        return {"model": [f"Invalid enum value. Expected one of: {', '.join(MODELS)}"]}
    errors: dict[str, list[str]] = {}
    for error in _body_validator(name).iter_errors(body):
        path = ".".join(str(part) for part in error.path)
        if error.validator == "additionalProperties":
            for key in _unexpected(error):
                errors.setdefault(".".join(filter(None, (path, str(key)))), []).append("Unrecognized key")
        elif error.validator == "required":
            errors.setdefault(".".join(filter(None, (path, _missing(error)))), []).append("Required")
        else:
            errors.setdefault(path, []).append(_zod_message(error))
    return errors
