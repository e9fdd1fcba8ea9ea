"""A row's reference images, read once and checked against the manifest check's hash of them.

The manifest check names each local file by the sha256 of its content in the row's
`request_hash`. Before a new attempt, each local file is read once; the hash of those very bytes
must give the same `request_hash`, and those bytes are what is uploaded and what names the file
in the Idempotency-Key. A file edited, or a symlink swapped, after the check leaves the row
unsubmitted with a reason naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.api.uploads import LocalImage
from pipeline.manifest.identity import request_hash


class ReferenceChanged(ValueError):
    """A local reference image's bytes are not those the manifest check hashed."""


def is_remote(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def read_references(row: Mapping[str, Any]) -> list[str | LocalImage]:
    """The row's reference images: URLs as they are, local files read once and checked against
    the row's `request_hash`. Raises ReferenceChanged naming the files when the bytes read now are
    not those the check read (the hash covers the row's local files together)."""
    refs: list[str | LocalImage] = []
    for ref in row["reference_images"] or []:
        if is_remote(ref):
            refs.append(ref)
        else:
            refs.append(LocalImage.read(Path(ref)))
    local = [ref for ref in refs if isinstance(ref, LocalImage)]
    if local and row.get("request_hash"):
        now = request_hash(row["model"], row["prompt"], int(row["duration"]), row["aspect_ratio"],
                           [named(ref) for ref in refs], int(row["variation"]))
        if now != row["request_hash"]:
            files = ", ".join(str(image.path) for image in local)
            raise ReferenceChanged(
                f"reference image {files} changed since the manifest was checked (its sha256 is not "
                "the one checked): nothing was sent; check the file and run again")
    return refs


def named(ref: str | LocalImage) -> str:
    """How a request names a reference by what it is: a URL as given, a local file by its content."""
    return ref if isinstance(ref, str) else ref.ref_id
