"""Decides whether a row's `params` are ones its model takes: passed through as written, local
image files resolved and named by content (as reference images are), then the whole params block
checked against the model's own schema from openapi.json (pipeline/models/validate.py).

`checker` is the manifest's rules.Checker (not imported: rules.py imports this module); its
issues, URL and file rules and cached schema answers are used as they are."""

from __future__ import annotations

import json
from typing import Any

from pipeline.models import SHARED_PARAMS, VideoModel, uploadable
from pipeline.models.validate import problems as schema_problems


def check_params(checker: Any, row_no: int, value: Any, default: Any, model: VideoModel) -> tuple[dict, dict]:
    """(the params passed through as written, local files resolved; the same with each local
    file named by its content, for the request hash). A default applies where the model
    takes that parameter; a row's own is checked against the model's schema."""
    given: dict[str, Any] = {}
    for source, where in ((default, "defaults"), (value, row_no)):
        if isinstance(source, str) and source.strip():  # CSV: a JSON object in the cell
            try:
                source = json.loads(source)
            except ValueError:
                source = "not JSON"
        if source is None or source == "":
            continue
        if not isinstance(source, dict):
            checker.issue(where, "params", "expected a mapping of the model's parameters",
                          'write it as {seed: 7, resolution: 1080p} (in CSV, a JSON object: {"seed": 7})')
            continue
        given.update((str(k), v) for k, v in source.items() if where != "defaults" or model.takes(str(k)))
    params, ids = {}, {}
    for name, item in sorted(given.items()):
        if name in SHARED_PARAMS:
            checker.issue(row_no, f"params.{name}", f"{name} is a field of its own",
                          f"write `{name}:` beside `prompt:`, not under params")
            continue
        params[name], ids[name] = item, item
        if name in model.image_params and isinstance(item, (str, list)):
            items = [item] if isinstance(item, str) else item
            named = [checker.url_or_file(row_no, f"params.{name}", one, uploadable=uploadable(name))
                     for one in items]
            if any(pair is None for pair in named):
                continue
            resolved, ids_of = [pair[0] for pair in named], [pair[1] for pair in named]
            params[name], ids[name] = (resolved[0], ids_of[0]) if isinstance(item, str) else (resolved, ids_of)
    return params, ids


def check_schema(checker: Any, row_no: int, model: VideoModel, duration: int | None, aspect: str | None,
                 ref_ids: list[str], param_ids: dict[str, Any]) -> None:
    """The params block checked against the model's own schema (openapi.json); each answer
    is cached, since a big manifest repeats a few request shapes."""
    block = model.request_body("-", duration, aspect, [_placeholder(ref) for ref in ref_ids],
                               params={name: _placeholder(v) for name, v in param_ids.items()})[model.params_field]
    key = (model.name, json.dumps(block, sort_keys=True, default=str))
    found = checker.schema_answers.get(key)
    if found is None:
        found = checker.schema_answers[key] = schema_problems(model, block)
    for problem in found:  # called only when our own rules found nothing: a shared field's is new too
        checker.issue(row_no, problem.field, problem.problem, problem.hint)


def _placeholder(value: Any) -> Any:
    """A local file's name in the request hash (`sha256:<hex>`) as the URL its upload will be,
    for the schema's `format: uri`."""
    if isinstance(value, list):
        return [_placeholder(item) for item in value]
    if isinstance(value, str) and value.startswith("sha256:"):
        return f"https://upload.invalid/{value[7:]}"
    return value
