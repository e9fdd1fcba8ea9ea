"""Decides whether one manifest row is a usable job: the field rules, their messages, and the
checker that applies them (`Checker`, `check_job`).

Known fields are KNOWN_FIELDS; any other field is kept as metadata and carried into the ledger,
except a field that looks like a typo of a known one (`promt`, `durration`): that is an error,
since silently keeping it as metadata would drop what the user meant.

Every problem is collected and reported at once (`FILE:ROW: FIELD: problem; what to do`);
ManifestError carries them all. Nothing here talks to the network.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.manifest.params import check_params, check_schema
from pipeline.models import DEFAULT_MODEL, MODELS, VideoModel

KNOWN_FIELDS = ("prompt", "duration", "aspect_ratio", "reference_images", "model", "id", "count", "params",
                "matrix")
MAX_COUNT = 100
MAX_IMAGE_BYTES = 25 * 1024 * 1024
MAX_SHOWN_ISSUES = 50
# Metadata labels a clip (campaign, owner, tags); it is copied into the ledger with every attempt
# and into every export. 16 KiB of JSON a row holds any honest label set.
MAX_METADATA_BYTES = 16 * 1024
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # \Z: "$" lets a trailing newline in
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
                (b"GIF89a", "GIF"))


@dataclass(frozen=True)
class ManifestIssue:
    file: str
    row: int | str | None  # 1-based row (in CSV as a spreadsheet numbers it, the header being 1), or "line N"
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


def metadata_too_big(text: str) -> bool:
    """Whether a row's metadata JSON passes MAX_METADATA_BYTES (UTF-8 takes at most 4 bytes a character)."""
    return len(text) * 4 > MAX_METADATA_BYTES and len(text.encode()) > MAX_METADATA_BYTES


def meant_field(name: Any) -> str | None:
    """The known field a field name that is not one looks like a typo of (`promt` -> prompt), or None."""
    if name in KNOWN_FIELDS:
        return None
    close = difflib.get_close_matches(str(name), KNOWN_FIELDS, n=1, cutoff=0.8)
    return close[0] if close else None


WIDTH_FIX = "make every row as wide as the header"


class RowProblem(str):
    """A CSV row that is no job (the problem's text, as a str) and the fix that goes with it."""

    def __new__(cls, problem: str, fix: str = WIDTH_FIX) -> RowProblem:
        made = super().__new__(cls, problem)
        made.fix = fix
        return made


class Checker:
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
        # Typos of a CSV column already reported once at its header (load.py): not again per row;
        # nor, when the header has no prompt column at all (reported there too), each row's prompt.
        self.reported_typos: set[str] = set()
        self.no_prompt_column = False
        self._field_sets: dict[frozenset, tuple[list[str], list[tuple[str, str]]]] = {}
        self._images: dict[str, tuple[str | None, str | None]] = {}  # path text -> (abs path, sha) or error
        self.schema_answers: dict[tuple[str, str], list] = {}  # (model, params block) -> problems

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
                meant = meant_field(name) if name not in self.reported_typos else None
                if meant:
                    typos.append((name, meant))
                else:
                    extra.append(name)
            cached = self._field_sets[names] = (extra, typos)
        return cached

    def check(self, row_no: int, job: Any, defaults: dict[str, Any]) -> dict[str, Any] | None:
        if isinstance(job, str) and self.from_csv:
            self.issue(row_no, None, f"this row {job}", getattr(job, "fix", WIDTH_FIX))
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

        model = self._model(row_no, merged.get("model", DEFAULT_MODEL))
        prompt = self._prompt(row_no, merged.get("prompt"), model)
        duration = self._duration(row_no, self._pick(row_no, "duration", job, defaults, model), model)
        aspect = self._aspect(row_no, self._pick(row_no, "aspect_ratio", job, defaults, model), model)
        refs, ref_ids = self._references(row_no, self._pick(row_no, "reference_images", job, defaults, model), model)
        params, param_ids = check_params(self, row_no, job.get("params"), defaults.get("params"), model)
        if len(self.issues) == start:  # the model's own schema, on what our rules let through
            check_schema(self, row_no, model, duration, aspect, ref_ids, param_ids)

        job_id = self._job_id(row_no, job["id"]) if "id" in job else None  # an id in defaults would repeat: ignore
        count = self._count(row_no, merged.get("count", 1))
        metadata_text = self._metadata(row_no, job, extra, defaults)
        if len(self.issues) > start or prompt is None:  # no prompt: said here, or once at the header
            return None
        return {"model": model.name, "prompt": prompt, "duration": duration, "aspect_ratio": aspect,
                "reference_images": refs, "ref_ids": ref_ids, "id": job_id, "count": count,
                "metadata": metadata_text, "params": params, "param_ids": param_ids,
                "credits": model.credits_for(duration) if duration in model.credits else None}

    def _pick(self, row_no: int, name: str, job: dict, defaults: dict[str, Any], model: VideoModel) -> Any:
        """A field the manifest shares with the params block: the row's value (an error if the
        model takes no such parameter), else the default where the model takes it, else the
        model's documented default (grok's) or None (left out of the request)."""
        if name in job:
            if not model.takes(name):
                self.issue(row_no, name, f"{model.name} takes no {name}",
                           f"remove it from this row; {model.name} takes: {', '.join(sorted(model.params))}")
                return None
            return job[name]
        if name in defaults and model.takes(name):
            return defaults[name]
        return {"duration": model.default_duration, "aspect_ratio": model.default_aspect_ratio}.get(name)

    def _model(self, row_no: int, model_name: Any):
        model = MODELS.get(model_name) if isinstance(model_name, str) else None
        if model is None:
            self.issue(row_no, "model", f"unknown model {model_name!r}",
                       f"use one of: {', '.join(MODELS)} (or leave it out)")
            model = MODELS[DEFAULT_MODEL]
        return model

    def _prompt(self, row_no: int, prompt: Any, model) -> str | None:
        if prompt is None:
            if not self.no_prompt_column:  # else said once, at the header
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
        return prompt

    def _job_id(self, row_no: int, job_id: Any) -> str | None:
        if isinstance(job_id, int) and not isinstance(job_id, bool):
            job_id = str(job_id)
        if not isinstance(job_id, str) or not ID_PATTERN.match(job_id) or ".." in job_id:
            self.issue(row_no, "id", f"{job_id!r} is not a usable id",
                       "use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, "
                       "without '..' or '/' (it becomes a file name)")
            return None
        return job_id

    def _count(self, row_no: int, count: Any) -> int:
        if isinstance(count, str) and count.strip().isascii() and count.strip().isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            self.issue(row_no, "count", f"{count!r} is not a whole number from 1 to {MAX_COUNT}",
                       "set how many variations of this row to make")
            return 1
        return count

    def _metadata(self, row_no: int, job: dict, extra: list[str], defaults: dict[str, Any]) -> str:
        """The row's metadata as JSON text: its fields that are not known ones, then the defaults'."""
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
        return metadata_text

    def _duration(self, row_no: int, value: Any, model) -> int | None:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():  # not "²"
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value not in model.durations:
            shown = f"{str(value).lower()} (a yes/no value)" if isinstance(value, bool) else repr(value)
            which = "this model" if model.name == DEFAULT_MODEL else model.name
            self.issue(row_no, "duration", f"{shown} is not a clip length {which} makes",
                       f"use one of {', '.join(map(str, model.durations))} (seconds)")
            return None
        return value

    def _aspect(self, row_no: int, value: Any, model) -> str | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 16:9 as the base-60 number 969: map it back.
            value = f"{value // 60}:{value % 60}"
        allowed = model.aspect_ratios  # None: any text (Veo's is a free string in openapi.json)
        if not isinstance(value, str) or not value.strip() or (allowed is not None and value.strip() not in allowed):
            which = "" if model.name == DEFAULT_MODEL else f" by {model.name}"
            self.issue(row_no, "aspect_ratio", f"{value!r} is not supported{which}",
                       f"use one of {', '.join(allowed or ('16:9', '9:16'))} (in quotes in YAML)")
            return None
        pattern = model.params["aspect_ratio"].get("pattern")  # Veo's free text is still W:H
        if allowed is None and pattern and not re.search(pattern, value.strip()):
            self.issue(row_no, "aspect_ratio", f"{value!r} is not an aspect ratio {model.name} takes",
                       'write it as width:height in whole numbers, e.g. "16:9" (in quotes in YAML)')
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
            pair = self.url_or_file(row_no, "reference_images", item)
            if pair is not None:
                resolved.append(pair[0])
                ids.append(pair[1])
        return resolved, ids

    def url_or_file(self, row_no: int, field: str, item: Any, uploadable: bool = True) -> tuple[str, str] | None:
        """(what the request holds, what names it in the request hash): an http(s) URL as it is, a
        local image file as its absolute path and `sha256:<hex>` of its content; None if neither."""
        if not isinstance(item, str) or not item.strip():
            self.issue(row_no, field, f"{item!r} is not a URL or a file path",
                       "give an https URL or a path relative to the manifest")
            return None
        item = item.strip()
        scheme = urlsplit(item).scheme.lower()
        if scheme in ("http", "https"):
            if not urlsplit(item).netloc:
                self.issue(row_no, field, f"{item!r} has no host", "give a full https URL")
                return None
            return item, item
        if scheme and len(scheme) > 1:  # ftp:, file:, data:... (one letter could be a Windows drive)
            self.issue(row_no, field, f"{scheme}: URLs are not supported ({item})",
                       "use an http(s) URL, or a local file path that videobatch uploads for you")
            return None
        if not uploadable:
            self.issue(row_no, field, f"{item!r} is not an http(s) URL",
                       "give the video or audio as an https URL (only local images are uploaded)")
            return None
        local = self._local_image(row_no, item, field)
        return (local[0], f"sha256:{local[1]}") if local else None

    def _local_image(self, row_no: int, text: str, field: str) -> tuple[str, str] | None:
        if text not in self._images:
            self._images[text] = self._inspect_image(text)
        path, digest = self._images[text]
        if digest is None:
            self.issue(row_no, field, path, self._image_hint)
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
    checker = Checker(file, folder, from_csv=False)
    checked = checker.check(None, job, {})
    if checked is None:
        raise ManifestError(file, checker.issues)
    return checked
