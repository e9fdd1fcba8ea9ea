"""store/objects.py against a real S3 server (moto, its own process) and a local folder.

Covers: pipeline/store/location.py (parse: the --out URL and local folder this drives)
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.request
from datetime import timedelta

import pytest

from pipeline.store import objects
from pipeline.store.location import parse


def _video(tmp_path, data: bytes, name="clip.mp4"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_put_file_is_create_only_and_records_url_size_and_sha(s3, tmp_path):
    bucket = s3.bucket()
    out = parse(s3.url("videos", bucket))
    data = b"video bytes " * 1000
    stored = objects.put_file(out, "k1.mp4", _video(tmp_path, data))
    assert stored == objects.StoredVideo(f"s3://{bucket}/videos/k1.mp4", len(data), hashlib.sha256(data).hexdigest())
    assert s3.objects(bucket) == {"videos/k1.mp4": data}
    # The same bytes again (a retry after a crash before the ledger said so): ours, accepted.
    assert objects.put_file(out, "k1.mp4", _video(tmp_path, data)) == stored
    # Other bytes under the name: refused in one line, the object untouched.
    with pytest.raises(objects.ObjectTaken) as refused:
        objects.put_file(out, "k1.mp4", _video(tmp_path, b"x" * len(data), "other.mp4"))
    assert "not overwritten" in str(refused.value) and "\n" not in str(refused.value)
    assert s3.objects(bucket) == {"videos/k1.mp4": data}


def test_head_list_range_stream_fetch_and_sign(s3, tmp_path):
    bucket = s3.bucket()
    out = parse(s3.url("v", bucket))
    data = bytes(range(256)) * 40
    url = objects.put_file(out, "a.mp4", _video(tmp_path, data)).url
    assert objects.head(url) == len(data)
    assert objects.head(f"s3://{bucket}/v/missing.mp4") is None
    assert objects.sizes_under(out) == {url: len(data)}
    assert objects.sizes_under(parse(s3.url("nothing-here", bucket))) == {}
    assert objects.read_range(url, 10, 20) == data[10:20]

    async def streamed(start, end):
        size, chunks = await objects.stream(url, start, end)
        return size, b"".join([c async for c in chunks])

    assert asyncio.run(streamed(0, None)) == (len(data), data)
    assert asyncio.run(streamed(100, 300)) == (len(data), data[100:300])
    assert objects.fetch(url, tmp_path / "got" / "a.mp4").read_bytes() == data
    signed = objects.sign(url, timedelta(days=30))  # capped at S3's seven days
    assert "X-Amz-Signature" in signed and "X-Amz-Expires=604800" in signed
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in signed
    with urllib.request.urlopen(signed) as answer:  # the link alone reads the object
        assert answer.read() == data


def test_local_folder_store_and_faults(s3, tmp_path):
    out = parse(str(tmp_path / "made" / "here"))
    stored = objects.put_file(out, "a.mp4", _video(tmp_path, b"abc"))
    assert (tmp_path / "made" / "here" / "a.mp4").read_bytes() == b"abc"
    assert objects.head(stored.url) == 3 and objects.sign(stored.url) is None
    with pytest.raises(objects.ObjectTaken):
        objects.put_file(out, "a.mp4", _video(tmp_path, b"abd", "b.mp4"))
    with pytest.raises(objects.ObjectFault) as missing:  # a bucket that does not exist
        objects.put_file(parse("s3://no-such-bucket-here/v"), "a.mp4", _video(tmp_path, b"abc"))
    line = str(missing.value)
    assert line.startswith("cannot store s3://no-such-bucket-here/v/a.mp4") and "\n" not in line
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in line
    with pytest.raises(objects.ObjectFault):
        objects.fetch("s3://no-such-bucket-here/v/a.mp4", tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / ".x.mp4.part").exists()


def test_move_object_within_a_bucket_never_over_other_bytes(s3, tmp_path):
    bucket = s3.bucket()
    out = parse(s3.url("v", bucket))
    url = objects.put_file(out, "a.mp4", _video(tmp_path, b"old take")).url
    objects.move_object(url, f"s3://{bucket}/v/a@123.mp4")
    assert s3.objects(bucket) == {"v/a@123.mp4": b"old take"}
    # A crash after the copy left both: the move ends by deleting the source.
    url = objects.put_file(out, "a.mp4", _video(tmp_path, b"old take")).url
    objects.move_object(url, f"s3://{bucket}/v/a@123.mp4")
    assert s3.objects(bucket) == {"v/a@123.mp4": b"old take"}
    # Other bytes at the target: refused, both kept.
    url = objects.put_file(out, "b.mp4", _video(tmp_path, b"b take")).url
    with pytest.raises(objects.ObjectTaken):
        objects.move_object(url, f"s3://{bucket}/v/a@123.mp4")
    assert s3.objects(bucket) == {"v/a@123.mp4": b"old take", "v/b.mp4": b"b take"}
