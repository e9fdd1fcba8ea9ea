"""pipeline/run/references.py: a row's reference images read once, named by content, and refused
when a local file changed since the manifest check hashed it."""

from __future__ import annotations

import hashlib

import pytest

from pipeline.api.uploads import LocalImage
from pipeline.manifest.load import request_hash
from pipeline.run.references import ReferenceChanged, is_remote, named, read_references

URL = "https://images.example/ref.png"


def row_for(refs: list[str], hashed: list[str]) -> dict:
    fields = dict(model="grok-imagine-video", prompt="a lighthouse", duration=6, aspect_ratio="16:9", variation=0)
    return {**fields, "reference_images": refs,
            "request_hash": request_hash(fields["model"], fields["prompt"], 6, "16:9", hashed, 0)}


@pytest.mark.parametrize("ref, remote", [(URL, True), ("http://x/y.png", True), ("refs/a.png", False)])
def test_what_is_remote(ref, remote):
    assert is_remote(ref) is remote


def test_urls_stay_urls_and_local_files_are_read_once_and_named_by_content(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"png bytes")
    digest = hashlib.sha256(b"png bytes").hexdigest()
    row = row_for([URL, str(image)], [URL, LocalImage(image, b"png bytes", digest).ref_id])
    refs = read_references(row)
    assert refs[0] == URL and isinstance(refs[1], LocalImage) and refs[1].data == b"png bytes"
    assert [named(ref) for ref in refs] == [URL, refs[1].ref_id] and digest in refs[1].ref_id
    assert read_references({**row, "reference_images": None}) == []


def test_a_file_changed_since_the_check_is_refused_naming_it(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"png bytes")
    row = row_for([str(image)], [LocalImage(image, b"png bytes", hashlib.sha256(b"png bytes").hexdigest()).ref_id])
    image.write_bytes(b"edited")
    with pytest.raises(ReferenceChanged, match="a.png changed since the manifest was checked"):
        read_references(row)
