"""A real S3 protocol on loopback for tests: moto's server in its own process (never in-process:
delta-rs holds the GIL in some calls and would deadlock against a server on one of our threads).

    server = S3Server.start()        # once per xdist worker (the `s3_server` session fixture)
    bucket = server.bucket()         # a fresh, uniquely named bucket per test
    server.url(bucket, "videos")     # "s3://<bucket>/videos"
    server.env                       # the standard AWS_* environment obstore and deltalake read

The credentials are fake values moto accepts; nothing here reads a real one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

FAKE_KEY_ID = "testing-key-id"
FAKE_SECRET = "testing-secret-key"
REGION = "us-east-1"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"moto server did not listen on {port} within {START_TIMEOUT} s")


@dataclass
class S3Server:
    """One moto server process and the environment that points a client at it."""

    process: subprocess.Popen
    port: int
    log: Path
    made: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, log_dir: Path) -> S3Server:
        port = free_port()
        log = log_dir / f"moto-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = cls(process, port, log)
        try:
            _wait_for(port, process, log)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET, "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def client(self):
        # Lazy: boto3 is a test-only dependency (it comes with moto), loaded by the tests that use it.
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET)

    def bucket(self, name: str | None = None) -> str:
        """A new bucket (a unique name unless given): each test its own, so tests never share objects."""
        name = name or f"t-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        self.made.append(name)
        return name

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"s3://{bucket}/{prefix.strip('/')}".rstrip("/")

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under `prefix`, key -> bytes, read with boto3 (not through the code under test)."""
        s3, found = self.client(), {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class S3:
    """What the function fixture `s3` hands a test: the server, its env already set, a bucket helper."""

    server: S3Server

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    def bucket(self, name: str | None = None) -> str:
        return self.server.bucket(name)

    def url(self, prefix: str = "", bucket: str | None = None) -> str:
        """`s3://<bucket>/<prefix>`, in a fresh bucket unless one is given."""
        return self.server.url(bucket or self.bucket(), prefix)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        return self.server.objects(bucket, prefix)

    def client(self):
        return self.server.client()


def environ_with(server: S3Server) -> dict[str, str]:
    """This process's environment plus the server's: for a CLI run in a subprocess."""
    return {**os.environ, **server.env}
