"""A row's reference images (and local images in its params: start_image, last_frame...), read
once and checked against the manifest check's hash of them.

The manifest check names each local file by the sha256 of its content in the row's
`request_hash`. Before a new attempt, each local file is read once; the hash of those very bytes
must give the same `request_hash`, and those bytes are what is uploaded and what names the file
in the Idempotency-Key. A file edited, or a symlink swapped, after the check leaves the row
unsubmitted with a reason naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.api.uploads import LocalImage
from pipeline.manifest.identity import request_hash
from pipeline.models import get_model


class ReferenceChanged(ValueError):
    """A local reference image's bytes are not those the manifest check hashed."""


def is_remote(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def read_references(row: Mapping[str, Any]) -> list[str | LocalImage]:
    """The row's reference images (read_inputs' first half)."""
    return read_inputs(row)[0]


def read_inputs(row: Mapping[str, Any]) -> tuple[list[str | LocalImage], dict[str, Any]]:
    """The row's reference images and its params: URLs as they are, local files read once and
    checked against the row's `request_hash`. Raises ReferenceChanged naming the files when the
    bytes read now are not those the check read (the hash covers the row's local files together)."""
    refs: list[str | LocalImage] = [_read(ref) for ref in row["reference_images"] or []]
    params = row_params(row)
    for name in get_model(row["model"]).image_params:
        if name in params:
            params[name] = _each(params[name], _read)
    local = [item for value in (refs, *params.values()) for item in (value if isinstance(value, list) else [value])
             if isinstance(item, LocalImage)]
    if local and row.get("request_hash"):
        now = request_hash(row["model"], row["prompt"], row_duration(row), row["aspect_ratio"],
                           [named(ref) for ref in refs], int(row["variation"]), named_params(params))
        if now != row["request_hash"]:
            files = ", ".join(str(image.path) for image in local)
            raise ReferenceChanged(
                f"reference image {files} changed since the manifest was checked (its sha256 is not "
                "the one checked): nothing was sent; check the file and run again")
    return refs, params


def _each(value: Any, change: Callable[[Any], Any]) -> Any:
    """`change` applied to a param's value, or to each item of a list of them (reference_image_urls)."""
    return [change(item) for item in value] if isinstance(value, list) else change(value)


def _read(value: Any) -> Any:
    """A local file's path as the file read now (LocalImage); a URL, or any other value, as it is."""
    return LocalImage.read(Path(value)) if isinstance(value, str) and not is_remote(value) else value


def _name(value: Any) -> Any:
    return named(value) if isinstance(value, LocalImage) else value


def row_params(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's params as the manifest wrote them (the ledger's `params` JSON; none: {})."""
    text = row.get("params")
    return json.loads(text) if text else {}


def row_duration(row: Mapping[str, Any]) -> int | None:
    """The row's asked duration; None for a model that takes none (midjourney-video)."""
    return None if row["duration"] is None else int(row["duration"])


def named_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params as the request hash and the Idempotency-Key name them: local files by content."""
    return {name: _each(value, _name) for name, value in params.items()}


def named(ref: str | LocalImage) -> str:
    """How a request names a reference by what it is: a URL as given, a local file by its content."""
    return ref if isinstance(ref, str) else ref.ref_id
