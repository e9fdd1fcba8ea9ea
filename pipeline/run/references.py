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
from collections.abc import Mapping
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
    refs: list[str | LocalImage] = [ref if is_remote(ref) else LocalImage.read(Path(ref))
                                    for ref in row["reference_images"] or []]
    params = row_params(row)
    image_params = get_model(row["model"]).image_params
    for name in image_params:
        value = params.get(name)
        if isinstance(value, str) and not is_remote(value):
            params[name] = LocalImage.read(Path(value))
        elif isinstance(value, list):
            params[name] = [LocalImage.read(Path(v)) if isinstance(v, str) and not is_remote(v) else v for v in value]
    local = [ref for ref in refs if isinstance(ref, LocalImage)] + list(_local_in(params))
    if local and row.get("request_hash"):
        duration = row["duration"]
        now = request_hash(row["model"], row["prompt"], None if duration is None else int(duration),
                           row["aspect_ratio"], [named(ref) for ref in refs], int(row["variation"]),
                           named_params(params))
        if now != row["request_hash"]:
            files = ", ".join(str(image.path) for image in local)
            raise ReferenceChanged(
                f"reference image {files} changed since the manifest was checked (its sha256 is not "
                "the one checked): nothing was sent; check the file and run again")
    return refs, params


def row_params(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's params as the manifest wrote them (the ledger's `params` JSON; none: {})."""
    text = row.get("params")
    return json.loads(text) if text else {}


def _local_in(params: dict[str, Any]):
    for value in params.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, LocalImage):
                yield item


def named_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params as the request hash and the Idempotency-Key name them: local files by content."""
    return {name: [named(v) if isinstance(v, LocalImage) else v for v in value] if isinstance(value, list)
            else named(value) if isinstance(value, LocalImage) else value for name, value in params.items()}


def named(ref: str | LocalImage) -> str:
    """How a request names a reference by what it is: a URL as given, a local file by its content."""
    return ref if isinstance(ref, str) else ref.ref_id
