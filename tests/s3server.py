"""A real S3 protocol on loopback for the tests: moto's server in its own process (never moto in
this process: delta-rs holds the GIL in some calls and would wait on a server that needs it)."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time

from tests.harness import free_port


class S3Server:
    """`with S3Server() as s3:` a moto server; `s3.env` the standard AWS_* variables pointing at it
    (fake credentials), `s3.bucket()` a new bucket, `s3.objects(bucket)` every object's bytes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ACCESS_KEY_ID": "AKIATESTONLY0000", "AWS_SECRET_ACCESS_KEY": "moto-secret-" + secrets.token_hex(8),
                    "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> S3Server:
        self._proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"moto's server did not start on port {self.port}")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None

    def client(self):
        import boto3  # a test dependency (moto's), only where a test reads the bucket behind our back

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def bucket(self, name: str | None = None) -> str:
        name = name or f"vb-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found
