"""Decides, for most rows of a big manifest, what the full check (rules.py) would: the fast path of
load_manifest (load.py). Such a row is checked without building a row dict, by reusing what the
full check concluded for an earlier row of the same request shape.

Contract: equivalence with the full check. A row goes through this path only if
`rules.Checker.check` would accept that row with the very same result (fields, job key,
metadata text); any row it is not sure of (a new request shape, a problem, an unusual value
type) goes through the full check, in row order, so the problems reported, their wording and
their order are the full check's own. tests/manifest/test_load.py proves it by loading every test
manifest with `load.FAST_PATH` on and off.

Why it exists beside the full check: memoising the full check's request-field rules on the same
request-shape key leaves its per-row cost (a row dict, a merge, the metadata text): a 100,000-row
CSV then loads in about 2 s instead of 0.45 s, and the rerun of such a manifest must take at most
2 s in all (`make bench`, c).
"""

from __future__ import annotations

import hashlib
import json
import operator
from typing import Any

from pipeline.manifest.identity import json_text, params_text, request_hash, request_parts
from pipeline.manifest.rules import ID_PATTERN, KNOWN_FIELDS, Checker, metadata_too_big
from pipeline.models import MODELS

_REQUEST_FIELDS = ("duration", "aspect_ratio", "reference_images", "model", "count", "params", "matrix")  # known, but prompt, id
_MEMO_LIMIT = 10_000  # request shapes (and metadata texts) remembered per manifest: bounded memory
_MISSING = object()


def _typed(value: Any) -> tuple[type, Any] | None:
    """(type, value) of a plain YAML value, hashable: text, a whole number, a truth value, null, a
    list of texts (as a tuple), or _MISSING. The type is part of it because True == 1 == 1.0 as
    keys. None for any other value (floats too: -0.0 == 0.0 but they are stored differently): the
    fast path leaves it to the full check."""
    kind = type(value)
    if kind is list:
        if not all(type(item) is str for item in value):
            return None
        return kind, tuple(value)
    if kind is str or kind is int or kind is bool or value is None or value is _MISSING:
        return kind, value
    return None


class Template:
    """What a checked row's request fields (every known field but prompt and id) came to.

    Rows whose request fields hold the very same values reuse it rather than being checked from
    scratch: those fields are checked on their own (with the model and, in YAML, the file's
    defaults), never together with the prompt, the id or the metadata.
    """

    __slots__ = ("index", "head", "tail", "min_chars", "max_chars", "count", "model", "duration",
                 "aspect_ratio", "ref_ids", "param_ids")


class Rows:
    """The fast path of load_manifest: a row goes through it only if the full check
    (`Checker.check`) would accept that row with the very same result; any row it is not sure of
    (a new request shape, a problem, an unusual value type) goes through the full check, in row
    order, so the problems reported, their wording and their order are the full check's own."""

    def __init__(self, checker: Checker, defaults: dict[str, Any], header: list[str] | None):
        self.checker = checker
        self.templates: dict[Any, Template] = {}
        self.metadata_texts: dict[Any, str] = {}
        self.rests: dict[tuple, tuple[Template, str]] = {}  # YAML: fields but prompt, id -> yaml_rest()
        # Template columns; row i of the manifest takes its request fields from template_ids[i].
        self.models: list[str] = []
        self.durations: list[int] = []
        self.aspect_ratios: list[str] = []
        self.references: list[list[str]] = []
        self.credits: list[int | None] = []
        self.params: list[str | None] = []  # the params column: as sent, local files by path
        self.defaults_extra = [(name, value) for name, value in defaults.items() if name not in KNOWN_FIELDS]
        self.header = header
        if header is not None:
            index = {name: i for i, name in enumerate(header)}
            self.prompt_at, self.id_at = index.get("prompt"), index.get("id")
            keyed = [index[name] for name in _REQUEST_FIELDS if name in index]
            self.csv_key = operator.itemgetter(*keyed) if keyed else (lambda cells: ())
            # Whether a field name is a typo of a known one does not depend on the other names.
            extra, typos = checker.split_fields(frozenset(name for name in header if name not in KNOWN_FIELDS))
            self.csv_typos = [index[name] for name, _ in typos]
            self.csv_extra = [(name, index[name]) for name in extra]
            self.csv_extra_key = operator.itemgetter(*(i for _, i in self.csv_extra)) if extra else None
            self.fast, self.key = self.csv_row, self.csv_row_key
        else:
            self.fast, self.key = self.yaml_row, self.yaml_key

    def learn(self, key: Any, row: dict[str, Any]) -> Template:
        """A template for the request fields of `row`, which the full check has just accepted."""
        template = Template()
        template.index = len(self.models)
        self.models.append(row["model"])
        self.durations.append(row["duration"])
        self.aspect_ratios.append(row["aspect_ratio"])
        self.references.append(row["reference_images"])
        self.credits.append(row["credits"])
        self.params.append(params_text(row["params"]))
        model = MODELS[row["model"]]
        template.min_chars, template.max_chars = model.prompt_min_chars, model.prompt_max_chars
        template.count, template.model, template.duration = row["count"], row["model"], row["duration"]
        template.aspect_ratio, template.ref_ids = row["aspect_ratio"], row["ref_ids"]
        template.param_ids = row["param_ids"]
        head, tail = request_parts(row["model"], row["duration"], row["aspect_ratio"], row["ref_ids"],
                                   row["param_ids"])
        fast = hashlib.sha256(f"{head}{json_text(row['prompt'])}{tail}1}}".encode()).hexdigest()
        if fast != request_hash(row["model"], row["prompt"], row["duration"], row["aspect_ratio"],
                                row["ref_ids"], 1, row["param_ids"]):
            head = None  # never expected; if it happens, request_hash decides every key
        template.head, template.tail = head, tail
        if key is not None and len(self.templates) < _MEMO_LIMIT:
            self.templates[key] = template
        return template

    # -- CSV: every value is text; a row stays a list of cells --

    def csv_row_key(self, cells: Any) -> Any:
        return self.csv_key(cells) if type(cells) is list and self.prompt_at is not None else None

    def csv_row(self, cells: Any) -> tuple[Template, str, str | None, str] | None:
        if type(cells) is not list or self.prompt_at is None:
            return None
        template = self.templates.get(self.csv_key(cells))
        if template is None:
            return None
        prompt = cells[self.prompt_at].strip()  # a blank cell is a missing prompt
        if not prompt or not template.min_chars <= len(prompt) <= template.max_chars:
            return None
        job_id = None
        if self.id_at is not None:
            raw = cells[self.id_at]
            if raw.strip():  # the full check takes the cell as it is, unstripped
                if not ID_PATTERN.match(raw) or ".." in raw:
                    return None
                job_id = raw
        for i in self.csv_typos:
            if cells[i].strip():
                return None
        if self.csv_extra_key is None:
            return template, prompt, job_id, "{}"
        values = self.csv_extra_key(cells)
        metadata = self.metadata_texts.get(values)
        if metadata is None:
            metadata = json.dumps({name: cells[i] for name, i in self.csv_extra if cells[i].strip() != ""},
                                  sort_keys=True, ensure_ascii=False, default=str)
            if metadata_too_big(metadata):
                return None  # the full check says so, naming the field
            if len(self.metadata_texts) < _MEMO_LIMIT:
                self.metadata_texts[values] = metadata
        return template, prompt, job_id, metadata

    # -- YAML: values come typed --

    @staticmethod
    def yaml_key(job: Any) -> tuple | None:
        """The job's request fields, each _typed, or None when one is not a plain value."""
        if type(job) is not dict:
            return None
        key = []
        for name in _REQUEST_FIELDS:
            typed = _typed(job.get(name, _MISSING))
            if typed is None:
                return None
            key.append(typed)
        return tuple(key)

    @staticmethod
    def yaml_rest_key(job: dict) -> tuple | None:
        """Every field but prompt and id, by name and _typed, when all are text-named plain values,
        else None."""
        key = []
        for name, value in job.items():
            if name == "prompt" or name == "id":
                continue
            typed = _typed(value)
            if typed is None or type(name) is not str:
                return None
            key.append((name, typed))
        return tuple(key)

    def yaml_rest(self, job: dict) -> tuple[Template, str] | None:
        """(template, metadata text) for every field but prompt and id, if the full check would
        accept them, else None."""
        key = self.yaml_key(job)
        template = self.templates.get(key) if key is not None else None
        if template is None:
            return None
        extra, typos = self.checker.split_fields(frozenset(job))
        if typos:
            return None
        metadata = {str(name): job[name] for name in extra}
        for name, value in self.defaults_extra:
            if name not in job:
                metadata.setdefault(str(name), value)
        try:
            # Without default=str: a value the full check would refuse fails here too (and goes
            # to it); when this succeeds, default=str would not have been called either.
            text = json.dumps(metadata, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            return None
        if metadata_too_big(text):
            return None  # the full check says so, naming the field
        return template, text

    def yaml_row(self, job: Any) -> tuple[Template, str, str | None, str] | None:
        if type(job) is not dict:
            return None
        prompt = job.get("prompt")
        if type(prompt) is not str:
            return None
        rest_key = self.yaml_rest_key(job)
        rest = self.rests.get(rest_key) if rest_key is not None else None
        if rest is None:
            rest = self.yaml_rest(job)
            if rest is None:
                return None
            if rest_key is not None and len(self.rests) < _MEMO_LIMIT:
                self.rests[rest_key] = rest
        template, metadata = rest
        prompt = prompt.strip()
        if not prompt or not template.min_chars <= len(prompt) <= template.max_chars:
            return None
        job_id = None
        if "id" in job:
            job_id = job["id"]
            if type(job_id) is int:
                job_id = str(job_id)
            elif type(job_id) is not str:
                return None
            if not ID_PATTERN.match(job_id) or ".." in job_id:
                return None
        return template, prompt, job_id, metadata
