"""Manifest file -> one Polars DataFrame row per wanted video, every row checked before any spend.

Formats: YAML (a `defaults:` mapping plus a `jobs:` list, or a bare list of jobs) and CSV (a
header row; `reference_images` separated by `|`). Known fields are KNOWN_FIELDS; any other field
is kept as metadata and carried into the ledger, except a field that looks like a typo of a
known one (`promt`, `durration`): that is an error, since silently keeping it as metadata would
drop what the user meant.

Every problem in the file is collected and reported at once (`FILE:ROW: FIELD: problem; what to
do`); ManifestError carries them all. Nothing here talks to the network.

Job identity: `job_key` is the row's `id` (variation n >= 2 gets `-v{n}`), else a slug of the
prompt plus 12 hex digits of `request_hash`, the sha256 of the normalized request (model,
stripped prompt, duration and aspect ratio after defaults, reference images with local files
named by their content's sha256, and the variation number). So an edited prompt is a new job,
while reordering or adding rows, or moving the project folder, changes no key.
"""

from __future__ import annotations

import csv
import difflib
import gc
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_text  # json.dumps(ensure_ascii=False)'s own
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import yaml

from pipeline.models import DEFAULT_MODEL, MODELS

KNOWN_FIELDS = ("prompt", "duration", "aspect_ratio", "reference_images", "model", "id", "count")
MAX_COUNT = 100
MAX_IMAGE_BYTES = 25 * 1024 * 1024
MAX_SHOWN_ISSUES = 50
# Metadata labels a clip (campaign, owner, tags); it is copied into the ledger with every attempt
# and into every export. 16 KiB of JSON a row holds any honest label set.
MAX_METADATA_BYTES = 16 * 1024
# YAML aliases (`*name`) repeat a node without repeating its text: nine aliases of nine aliases
# ... ("billion laughs") make gigabytes of a 1 KB file. So a row may expand to at most this once
# its aliases are written out, and the whole file to at most EXPANSION_FACTOR times its own size.
MAX_ROW_EXPANDED = 64 * 1024
EXPANSION_FACTOR = 16
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # \Z: "$" lets a trailing newline in
_SLUG_DROP = re.compile(r"[^a-z0-9]+")
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
                (b"GIF89a", "GIF"))
# What an anchor (`&name`) and an alias (`*name`) look like, to skip the alias check when a file
# has none ("salt & pepper" has no anchor). A literal first keeps the search at memchr speed.
_ANCHOR = re.compile(r"&[^\s\[\]{},]")
_ALIAS = re.compile(r"\*[^\s\[\]{},]")
_MERGE = "tag:yaml.org,2002:merge"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster

COLUMNS: dict[str, pl.DataType] = {
    "manifest": pl.String, "row": pl.Int64, "variation": pl.Int64, "job_key": pl.String,
    "request_hash": pl.String, "key_source": pl.String, "model": pl.String, "prompt": pl.String,
    "duration": pl.Int64, "aspect_ratio": pl.String, "reference_images": pl.List(pl.String),
    "metadata": pl.String, "credits_estimated": pl.Int64,
}


@dataclass(frozen=True)
class ManifestIssue:
    file: str
    row: int | str | None  # 1-based row, or "line N" where only a line is known
    field: str | None
    problem: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.file + (f":{self.row}" if self.row is not None else "")
        text = f"{where}: " + (f"{self.field}: " if self.field else "") + self.problem
        return text + (f"; {self.hint}" if self.hint else "")


class ManifestError(Exception):
    def __init__(self, file: str, issues: list[ManifestIssue]):
        self.file = file
        self.issues = issues
        lines = [str(issue) for issue in issues[:MAX_SHOWN_ISSUES]]
        if len(issues) > MAX_SHOWN_ISSUES:
            lines.append(f"... and {len(issues) - MAX_SHOWN_ISSUES} more problems")
        lines.append(f"fix {'this problem' if len(issues) == 1 else f'these {len(issues)} problems'} "
                     f"in {file} and run again; nothing was submitted")
        super().__init__("\n".join(lines))


# --- reading --------------------------------------------------------------------------------


def _decode(data: bytes, file: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):  # Excel's UTF-8 BOM: harmless, drop it
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(file, [ManifestIssue(
            file, f"line {line}", None,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8")]) from None


def _read_yaml(text: str, file: str) -> tuple[dict[str, Any], list[tuple[int, Any]]]:
    try:
        loader = _Loader(text)  # yaml.load's own steps, with the aliases checked in between
        try:
            node = loader.get_single_node()
            if node is not None and _ALIAS.search(text) and _ANCHOR.search(text):  # else nothing can expand
                _check_expansion(node, len(text), file)
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except RecursionError:
        raise ManifestError(file, [ManifestIssue(file, None, None, "nested too deeply to read",
                                                 "write jobs as flat `field: value` mappings")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(file, [ManifestIssue(file, where, None, f"not valid YAML: {problem}",
                                                 "check indentation and quoting near that line")]) from None
    defaults: Any = {}
    if isinstance(doc, dict):
        extra = sorted(set(doc) - {"defaults", "jobs"})
        if extra or "jobs" not in doc:
            raise ManifestError(file, [ManifestIssue(
                file, None, ", ".join(map(str, extra)) or "jobs",
                "a YAML manifest is a list of jobs, or a mapping with `defaults:` and `jobs:` only",
                "put the jobs under `jobs:`")])
        defaults, jobs = doc.get("defaults") or {}, doc.get("jobs")
    else:
        jobs = doc
    if not isinstance(jobs, list):
        raise ManifestError(file, [ManifestIssue(file, None, "jobs", "expected a list of jobs",
                                                 "write each job as a `- prompt: ...` item")])
    if not isinstance(defaults, dict):
        raise ManifestError(file, [ManifestIssue(file, None, "defaults", "expected a mapping",
                                                 "write `defaults:` as field: value lines")])
    return defaults, list(enumerate(jobs, start=1))


def _expanded_size(node: yaml.Node, sizes: dict[int, float], open_nodes: set[int]) -> float:
    """At most the characters `node` stands for once every alias in it is written out. Memoised
    by node, so the walk is linear in the nodes however far they expand; a node that contains
    itself is endless (inf). A merge key (`<<: [*a, *a]`) adds each mapping it merges once: the
    merged keys are a union, which that bounds."""
    if node.__class__ is yaml.ScalarNode:
        return len(node.value) + 2
    key = id(node)
    size = sizes.get(key)
    if size is not None:
        return size
    if key in open_nodes:
        return math.inf
    open_nodes.add(key)
    if node.__class__ is yaml.MappingNode:
        size = 2
        for name, value in node.value:
            size += _expanded_size(name, sizes, open_nodes)
            if name.tag == _MERGE and value.__class__ is yaml.SequenceNode:
                merged = {id(item): item for item in value.value}.values()
                size += 2 + sum(_expanded_size(item, sizes, open_nodes) for item in merged)
            else:
                size += _expanded_size(value, sizes, open_nodes)
    else:
        size = 2 + sum(_expanded_size(item, sizes, open_nodes) for item in node.value)
    open_nodes.discard(key)
    sizes[key] = size
    return size


def _check_expansion(doc: yaml.Node, text_size: int, file: str) -> None:
    """Refuse, before anything is built, a YAML file whose aliases expand past MAX_ROW_EXPANDED in
    a row or past EXPANSION_FACTOR times the file in all; name the row and its largest field."""
    sizes: dict[int, float] = {}
    open_nodes: set[int] = set()
    budget = EXPANSION_FACTOR * text_size + MAX_ROW_EXPANDED
    sections = [(key.value if isinstance(key, yaml.ScalarNode) else str(key.tag), value)
                for key, value in doc.value] if isinstance(doc, yaml.MappingNode) else [("jobs", doc)]
    # (row, field, node): each job is a row; `defaults:` is one too; any other section is its own field.
    places: list[tuple[int | str | None, str | None, yaml.Node]] = []
    for name, section in sections:
        if name == "jobs" and isinstance(section, yaml.SequenceNode):
            places.extend((row, None, job) for row, job in enumerate(section.value, start=1))
        else:
            places.append(("defaults", None, section) if name == "defaults" else (None, name, section))
    issues, total = [], 0.0
    for row, field, node in places:
        size = _expanded_size(node, sizes, open_nodes)
        total += size
        if size <= MAX_ROW_EXPANDED and total <= budget:
            continue
        if field is None and isinstance(node, yaml.MappingNode) and node.value:
            key, _ = max(node.value, key=lambda pair: _expanded_size(pair[1], sizes, open_nodes))
            field = key.value if isinstance(key, yaml.ScalarNode) else None
        if size == math.inf:
            problem = "a YAML alias (*name) in it refers to the value that holds it: it never ends"
        else:
            over = (f"over the {MAX_ROW_EXPANDED // 1024} KiB a row may take" if size > MAX_ROW_EXPANDED
                    else f"and the file so far {int(total)}, over {EXPANSION_FACTOR} times its own size")
            problem = f"{int(size)} characters once its YAML aliases (*name) are written out, {over}"
        issues.append(ManifestIssue(
            file, row, field, problem,
            f"write the values out, or shorten them (metadata may be at most {MAX_METADATA_BYTES // 1024} KiB "
            "of JSON a row); aliases are for repeating a small value"))
        if total > budget or len(issues) >= MAX_SHOWN_ISSUES:
            break
    if issues:
        raise ManifestError(file, issues)


def metadata_too_big(text: str) -> bool:
    """Whether a row's metadata JSON passes MAX_METADATA_BYTES (UTF-8 takes at most 4 bytes a character)."""
    return len(text) * 4 > MAX_METADATA_BYTES and len(text.encode()) > MAX_METADATA_BYTES


def _read_csv(text: str, file: str) -> tuple[list[str], list[tuple[int, list[str] | str]]]:
    """(header, [(row number, cells)]); a row of the wrong width comes as the problem's text instead.

    Cells stay a list: `_csv_job` makes a row's {field: value} (blank cells left out) only where
    the full per-row check needs one.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as exc:
        raise ManifestError(file, [ManifestIssue(file, "line 1", None, f"not valid CSV: {exc}", "")]) from None
    header = [name.strip() for name in header]
    issues = []
    blank = [i + 1 for i, name in enumerate(header) if not name]
    if blank:
        issues.append(ManifestIssue(file, "line 1", None, f"header column {blank[0]} has no name",
                                    "name every column, or delete the empty one"))
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        issues.append(ManifestIssue(file, "line 1", repeated[0], "column appears twice in the header",
                                    "keep one column per field"))
    if issues:
        raise ManifestError(file, issues)
    rows: list[tuple[int, list[str] | str]] = []
    append = rows.append
    width = len(header)
    try:
        for number, cells in enumerate(reader, start=1):
            if len(cells) == width > 1:  # the usual row (a blank line has 0 or 1 cells)
                append((number, cells))
                continue
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line
            if len(cells) != width:
                append((number, f"has {len(cells)} cells, the header has {width}"))
                continue
            append((number, cells))
    except csv.Error as exc:
        raise ManifestError(file, [ManifestIssue(file, f"line {reader.line_num}", None,
                                                 f"not valid CSV: {exc}", "check the quoting")]) from None
    return header, rows


def _csv_job(header: list[str], cells: list[str] | str) -> dict[str, str] | str:
    """A CSV row as the job mapping the checker reads: blank cells are left out."""
    if isinstance(cells, str):
        return cells  # the row's width problem
    return {name: cell for name, cell in zip(header, cells) if cell.strip() != ""}


# --- checking one row -----------------------------------------------------------------------


class _Checker:
    """Validates and normalizes rows; caches what repeats (field-name sets, local image files)."""

    def __init__(self, file: str, folder: Path, from_csv: bool, image_folders: tuple[Path, ...] | None = None):
        self.file = file
        self.folder = folder
        self.from_csv = from_csv
        # Local images must resolve (symlinks followed) under one of these folders, the manifest's
        # and --refs-root: a manifest someone else wrote cannot make a run upload ~/.ssh/id_rsa as
        # a "reference image". None: not confined (a review edit re-checks images its ledger row holds).
        self.image_folders = image_folders
        self.issues: list[ManifestIssue] = []
        self._field_sets: dict[frozenset, tuple[list[str], list[tuple[str, str]]]] = {}
        self._images: dict[str, tuple[str | None, str | None]] = {}  # path text -> (abs path, sha) or error

    def issue(self, row: int | str | None, field: str | None, problem: str, hint: str = "") -> None:
        self.issues.append(ManifestIssue(self.file, row, field, problem, hint))

    def split_fields(self, names: frozenset) -> tuple[list[str], list[tuple[str, str]]]:
        """(metadata field names, [(typo, meant)]) for a set of field names."""
        cached = self._field_sets.get(names)
        if cached is None:
            extra, typos = [], []
            for name in sorted(names, key=str):
                if name in KNOWN_FIELDS:
                    continue
                close = difflib.get_close_matches(str(name), KNOWN_FIELDS, n=1, cutoff=0.8)
                if close:
                    typos.append((name, close[0]))
                else:
                    extra.append(name)
            cached = self._field_sets[names] = (extra, typos)
        return cached

    def check(self, row_no: int, job: Any, defaults: dict[str, Any]) -> dict[str, Any] | None:
        if isinstance(job, str) and self.from_csv:
            self.issue(row_no, None, f"this row {job}", "make every row as wide as the header")
            return None
        if not isinstance(job, dict):
            self.issue(row_no, None, f"expected a mapping of fields, got {type(job).__name__}",
                       "write the job as `- prompt: ...` with one field per line")
            return None
        merged = {**defaults, **job}
        start = len(self.issues)
        extra, typos = self.split_fields(frozenset(job))
        for typo, meant in typos:
            self.issue(row_no, str(typo), f"unknown field; did you mean '{meant}'?",
                       f"rename it to '{meant}' (fields that are not close to a known one are kept as metadata)")

        model_name = merged.get("model", DEFAULT_MODEL)
        model = MODELS.get(model_name) if isinstance(model_name, str) else None
        if model is None:
            self.issue(row_no, "model", f"unknown model {model_name!r}",
                       f"use one of: {', '.join(MODELS)} (or leave it out)")
            model = MODELS[DEFAULT_MODEL]

        prompt = merged.get("prompt")
        if prompt is None:
            self.issue(row_no, "prompt", "missing", "every job needs a prompt")
        elif not isinstance(prompt, str):
            self.issue(row_no, "prompt", f"expected text, got {type(prompt).__name__}", "quote the prompt")
            prompt = None
        else:
            prompt = prompt.strip()
            if len(prompt) < model.prompt_min_chars:
                self.issue(row_no, "prompt", "empty", "write what the video should show")
            elif len(prompt) > model.prompt_max_chars:
                self.issue(row_no, "prompt", f"{len(prompt)} characters, at most {model.prompt_max_chars}",
                           "shorten the prompt")

        duration = self._duration(row_no, merged.get("duration", model.default_duration), model)
        aspect = self._aspect(row_no, merged.get("aspect_ratio", model.default_aspect_ratio), model)
        refs, ref_ids = self._references(row_no, merged.get("reference_images"), model)

        job_id = merged.get("id") if "id" in job else None  # an id in defaults would repeat: ignore
        if "id" in job:
            if isinstance(job_id, int) and not isinstance(job_id, bool):
                job_id = str(job_id)
            if not isinstance(job_id, str) or not ID_PATTERN.match(job_id) or ".." in job_id:
                self.issue(row_no, "id", f"{job_id!r} is not a usable id",
                           "use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, "
                           "without '..' or '/' (it becomes a file name)")
                job_id = None

        count = merged.get("count", 1)
        if isinstance(count, str) and count.strip().isascii() and count.strip().isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            self.issue(row_no, "count", f"{count!r} is not a whole number from 1 to {MAX_COUNT}",
                       "set how many variations of this row to make")
            count = 1

        metadata: dict[str, Any] = {}
        for name in extra:
            value = job[name]
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                self.issue(row_no, str(name), f"metadata value of type {type(value).__name__} cannot be stored",
                           "use text, numbers, true/false, lists or mappings")
                continue
            metadata[str(name)] = value
        for name, value in defaults.items():
            if name not in KNOWN_FIELDS and name not in job:
                metadata.setdefault(str(name), value)

        metadata_text = json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str)
        if metadata_too_big(metadata_text):
            biggest = max(metadata, key=lambda name: len(json.dumps(metadata[name], ensure_ascii=False, default=str)))
            self.issue(row_no, biggest, f"metadata is {len(metadata_text.encode())} bytes of JSON, at most "
                                        f"{MAX_METADATA_BYTES} ({MAX_METADATA_BYTES // 1024} KiB) a row",
                       "keep metadata to short labels; put large data elsewhere and refer to it by id or URL")
        if len(self.issues) > start:
            return None
        return {"model": model.name, "prompt": prompt, "duration": duration, "aspect_ratio": aspect,
                "reference_images": refs, "ref_ids": ref_ids, "id": job_id, "count": count,
                "metadata": metadata_text,
                "credits": model.credits_for(duration) if duration in model.credits else 0}

    def _duration(self, row_no: int, value: Any, model) -> int | None:
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():  # not "²"
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value not in model.durations:
            shown = f"{str(value).lower()} (a yes/no value)" if isinstance(value, bool) else repr(value)
            self.issue(row_no, "duration", f"{shown} is not a clip length this model makes",
                       f"use one of {', '.join(map(str, model.durations))} (seconds)")
            return None
        return value

    def _aspect(self, row_no: int, value: Any, model) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 16:9 as the base-60 number 969: map it back.
            value = f"{value // 60}:{value % 60}"
        if not isinstance(value, str) or value.strip() not in model.aspect_ratios:
            self.issue(row_no, "aspect_ratio", f"{value!r} is not supported",
                       f"use one of {', '.join(model.aspect_ratios)} (in quotes in YAML)")
            return None
        return value.strip()

    def _references(self, row_no: int, value: Any, model) -> tuple[list[str], list[str]]:
        if value is None:
            return [], []
        if isinstance(value, str):
            items = [part.strip() for part in value.split("|")] if self.from_csv or "|" in value else [value.strip()]
        elif isinstance(value, list):
            items = value
        else:
            self.issue(row_no, "reference_images", f"expected a list, got {type(value).__name__}",
                       "list image URLs or paths (in CSV, separate them with |)")
            return [], []
        if len(items) > model.max_reference_images:
            self.issue(row_no, "reference_images", f"{len(items)} images, at most {model.max_reference_images}",
                       "drop some reference images")
            return [], []
        resolved, ids = [], []
        for item in items:
            if not isinstance(item, str) or not item.strip():
                self.issue(row_no, "reference_images", f"{item!r} is not a URL or a file path",
                           "give an https URL or a path relative to the manifest")
                continue
            item = item.strip()
            scheme = urlsplit(item).scheme.lower()
            if scheme in ("http", "https"):
                if not urlsplit(item).netloc:
                    self.issue(row_no, "reference_images", f"{item!r} has no host", "give a full https URL")
                    continue
                resolved.append(item)
                ids.append(item)
            elif scheme and len(scheme) > 1:  # ftp:, file:, data:... (one letter could be a Windows drive)
                self.issue(row_no, "reference_images", f"{scheme}: URLs are not supported ({item})",
                           "use an http(s) URL, or a local file path that videobatch uploads for you")
            else:
                local = self._local_image(row_no, item)
                if local:
                    resolved.append(local[0])
                    ids.append(f"sha256:{local[1]}")
        return resolved, ids

    def _local_image(self, row_no: int, text: str) -> tuple[str, str] | None:
        if text not in self._images:
            self._images[text] = self._inspect_image(text)
        path, digest = self._images[text]
        if digest is None:
            self.issue(row_no, "reference_images", path, self._image_hint)
            return None
        return path, digest

    @property
    def _image_hint(self) -> str:
        if self.image_folders is None:
            return "fix the path (relative to the manifest's folder)"
        return ("fix the path (relative to the manifest's folder); an image must lie under the manifest's "
                "folder: move it there, or pass --refs-root DIR naming a folder that holds it")

    def _inspect_image(self, text: str) -> tuple[str, str | None]:
        path = (self.folder / text).resolve()
        folders = self.image_folders
        if folders is not None and not any(path.is_relative_to(folder) for folder in folders):
            where = " or ".join(map(str, folders))
            return f"{text}: resolves to {path}, outside the manifest's folder{' and --refs-root' * (len(folders) > 1)} " \
                   f"({where})", None
        if not path.is_file():
            return f"{text}: no such file ({path})", None
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            return f"{text}: {size} bytes, over the 25 MB upload limit", None
        data = path.read_bytes()
        is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        if not is_webp and not any(data.startswith(magic) for magic, _ in _IMAGE_MAGIC):
            return f"{text}: not a PNG, JPEG, WebP or GIF image", None
        return str(path), hashlib.sha256(data).hexdigest()


def check_job(job: dict[str, Any], *, file: str, folder: Path) -> dict[str, Any]:
    """One job mapping checked exactly as a manifest row is (no defaults); ManifestError lists its
    problems. The review page checks an edited prompt with it, so one set of rules holds."""
    checker = _Checker(file, folder, from_csv=False)
    checked = checker.check(None, job, {})
    if checked is None:
        raise ManifestError(file, checker.issues)
    return checked


# --- identity -------------------------------------------------------------------------------


def request_hash(model: str, prompt: str, duration: int, aspect_ratio: str, ref_ids: list[str],
                 variation: int) -> str:
    """The definition of a request's identity. Job keys come from it: never change its output.

    The fast path (manifest_fast.py) builds the same canonical text in pieces (`_request_parts`) to save a
    json.dumps per row, and checks those pieces against this function once per distinct request
    shape; if they ever disagree, it uses this function.
    """
    canonical = json.dumps(
        {"model": model, "prompt": prompt, "duration": duration, "aspect_ratio": aspect_ratio,
         "reference_images": ref_ids, "variation": variation},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _request_parts(model: str, duration: int, aspect_ratio: str, ref_ids: list[str]) -> tuple[str, str]:
    """request_hash's canonical JSON around the prompt: head + json(prompt) + tail + variation + "}".

    Keys in sorted order, no spaces, strings escaped by the encoder json.dumps(ensure_ascii=False)
    itself uses, ints as json.dumps writes them (duration is a plain int, never a bool).
    """
    head = (f'{{"aspect_ratio":{_json_text(aspect_ratio)},"duration":{int.__repr__(duration)},'
            f'"model":{_json_text(model)},"prompt":')
    tail = ',"reference_images":[' + ",".join(map(_json_text, ref_ids)) + '],"variation":'
    return head, tail


# For ASCII text, lower() and _SLUG_DROP in one cheap pass: A-Z -> a-z, a-z and 0-9 kept, the rest
# (never more than ASCII here) -> space.
_SLUG_ASCII = bytes(c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32
                    for c in range(256))


def slug(prompt: str, limit: int = 32) -> str:
    """The prompt's longest run of leading words within `limit` characters, lowercase a-z0-9 words
    joined by '-'; if the first word alone is longer, its first `limit` characters."""
    if prompt.isascii():
        text = b" ".join(prompt.encode().translate(_SLUG_ASCII).split()).decode()
    else:
        text = _SLUG_DROP.sub(" ", prompt.lower()).strip()
    # `text` is the words joined by single spaces; cut it at the last space that keeps <= limit.
    if len(text) <= limit:
        return text.replace(" ", "-")
    if text[limit] == " ":
        return text[:limit].replace(" ", "-")
    cut = text.rfind(" ", 0, limit)
    return text[:cut].replace(" ", "-") if cut > 0 else text[:limit]


def job_key_for(job_id: str | None, variation: int, digest: str, name: str) -> str:
    """The row's id (variation n >= 2: `-vn`), else `name` (slug(prompt), made once per row)
    plus 12 hex digits of the request hash."""
    if job_id:
        return job_id if variation == 1 else f"{job_id}-v{variation}"
    return f"{name}-{digest[:12]}" if name else digest[:12]


# --- loading --------------------------------------------------------------------------------


# The tests turn the fast path (manifest_fast.py) off to prove both paths give the very same rows,
# keys and problems.
FAST_PATH = True


def load_manifest(path: str | Path, *, refs_root: str | Path | None = None) -> pl.DataFrame:
    """Read, check and expand a manifest; raise ManifestError listing every problem. Local
    reference images must lie under the manifest's own folder, or under `refs_root`."""
    enabled = gc.isenabled()
    # A big manifest makes millions of objects and no reference cycles: cyclic collections would
    # only rescan them, over and over (a third of a 100,000-row CSV's load, most of a YAML's).
    gc.disable()
    try:
        return _load_manifest(Path(path), Path(refs_root) if refs_root is not None else None)
    finally:
        if enabled:
            gc.enable()


def _load_manifest(path: Path, refs_root: Path | None) -> pl.DataFrame:
    file = str(path)
    if refs_root is not None and not refs_root.is_dir():
        raise ManifestError(file, [ManifestIssue(file, None, None, f"--refs-root {refs_root} is not a folder",
                                                 "name the folder that holds the reference images")])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(file, [ManifestIssue(file, None, None, "no such file", "check the path")]) from None
    except OSError as exc:
        raise ManifestError(file, [ManifestIssue(file, None, None, f"cannot read it ({exc.strerror})",
                                                 "check the path and its permissions")]) from None
    text = _decode(data, file)
    if not text.strip():
        raise ManifestError(file, [ManifestIssue(file, None, None, "the file is empty",
                                                 "list at least one job with a prompt")])
    suffix = path.suffix.lower()
    header: list[str] | None = None
    if suffix == ".csv":
        defaults, (header, jobs) = {}, _read_csv(text, file)
    elif suffix in (".yaml", ".yml"):
        defaults, jobs = _read_yaml(text, file)
    else:
        raise ManifestError(file, [ManifestIssue(file, None, None, f"unknown manifest type {suffix!r}",
                                                 "name it .yaml, .yml or .csv")])
    folder = path.resolve().parent
    checker = _Checker(file, folder, from_csv=suffix == ".csv",
                       image_folders=(folder,) if refs_root is None else (folder, refs_root.resolve()))
    if not jobs:
        checker.issue(None, "jobs", "no jobs", "list at least one job with a prompt")
    for name, value in defaults.items():
        if name in ("prompt", "id"):
            checker.issue("defaults", str(name), "cannot have a default", "give it on each job")
        elif name not in KNOWN_FIELDS:
            close = difflib.get_close_matches(str(name), KNOWN_FIELDS, n=1, cutoff=0.8)
            if close:
                checker.issue("defaults", str(name), f"unknown field; did you mean '{close[0]}'?",
                              f"rename it to '{close[0]}'")

    manifest_text = str(path.resolve())
    from pipeline.manifest.fast import Rows  # it builds on this module's rules

    rows = Rows(checker, defaults, header)
    fast, key_of, learn = (rows.fast if FAST_PATH else lambda job: None), rows.key, rows.learn
    sha256, json_text = hashlib.sha256, _json_text
    row_nos: list[int] = []
    variations: list[int] = []
    job_keys: list[str] = []
    digests: list[str] = []
    key_sources: list[str] = []
    prompts: list[str] = []
    metadatas: list[str] = []
    template_ids: list[int] = []
    seen_keys: dict[str, int] = {}
    seen_requests: dict[str, int] = {}
    for row_no, job in jobs:
        hit = fast(job)
        if hit is None:
            row = checker.check(row_no, _csv_job(header, job) if header is not None else job, defaults)
            if row is None:
                continue
            template = learn(key_of(job), row)
            prompt, job_id, metadata = row["prompt"], row["id"], row["metadata"]
        else:
            template, prompt, job_id, metadata = hit
        head = template.head
        middle = json_text(prompt) + template.tail
        name = "" if job_id else slug(prompt)
        for variation in range(1, template.count + 1):
            if head is not None:
                digest = sha256(f"{head}{middle}{variation}}}".encode()).hexdigest()
            else:
                digest = request_hash(template.model, prompt, template.duration, template.aspect_ratio,
                                      template.ref_ids, variation)
            key = job_key_for(job_id, variation, digest, name)
            if digest in seen_requests and seen_requests[digest] != row_no:
                checker.issue(row_no, "prompt", f"row {seen_requests[digest]} asks for exactly the same video",
                              "remove one of them, or use `count:` for variations")
                break
            if key in seen_keys and seen_keys[key] != row_no:
                checker.issue(row_no, "id", f"job key {key!r} is also made by row {seen_keys[key]}",
                              "give each row its own id")
                break
            seen_keys[key] = seen_requests[digest] = row_no
            row_nos.append(row_no)
            variations.append(variation)
            job_keys.append(key)
            digests.append(digest)
            key_sources.append("id" if job_id else "hash")
            prompts.append(prompt)
            metadatas.append(metadata)
            template_ids.append(template.index)
    if checker.issues:
        raise ManifestError(file, checker.issues)
    return rows.frame(manifest_text, {
        "row": row_nos, "variation": variations, "job_key": job_keys, "request_hash": digests,
        "key_source": key_sources, "prompt": prompts, "metadata": metadatas}, template_ids)
