"""The moto fixture itself: a real S3 server in another process, a fresh bucket per call."""

from __future__ import annotations

import os

import obstore
from obstore.store import from_url


def test_fixture_serves_s3_through_the_standard_environment(s3):
    bucket = s3.bucket()
    assert os.environ["AWS_ENDPOINT_URL"] == s3.endpoint  # set for this test by monkeypatch
    store = from_url(s3.url("pre", bucket))  # config from the environment only
    obstore.put(store, "a.txt", b"hello")
    assert s3.objects(bucket) == {"pre/a.txt": b"hello"}
    assert s3.bucket() != bucket  # each call a new bucket
    assert s3_server_process_is_separate(s3)


def s3_server_process_is_separate(s3) -> bool:
    return s3.server.process.pid != os.getpid() and s3.server.process.poll() is None
