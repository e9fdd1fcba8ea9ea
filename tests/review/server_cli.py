"""`videobatch review` in a child process, spoken to over real HTTP: what the review tests
(test_server.py, test_export.py) start through the `review_server` fixture of conftest.py."""

from __future__ import annotations

import http.client
import json
import re
import signal
from pathlib import Path
from urllib.parse import urlsplit

from tests.harness import cli_env, start_cli

OFFLINE = cli_env("http://127.0.0.1:9")  # review and export read files only


class Review:
    def __init__(self, tmp: Path, *more: str, env: dict[str, str] | None = None):
        self.proc = start_cli("review", "--ledger", str(tmp / "ledger.parquet"), "--port", "0",
                              "--reviewer", "ana", *more, env={**OFFLINE, **(env or {})}, cwd=tmp)
        first = self.proc.stdout.readline()
        assert first.startswith("review: "), first + self.proc.stdout.read()
        self.link = first.removeprefix("review: ").strip()
        parts = urlsplit(self.link)
        self.url = f"{parts.scheme}://{parts.netloc}/"
        self.host, self.port = parts.hostname, parts.port
        self.lines = [first]

    def request(self, method: str, path: str, body=None, headers: dict | None = None):
        """(status, headers, text) of one real HTTP request; redirects are not followed."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            data = json.dumps(body) if body is not None and not isinstance(body, (str, bytes)) else body
            conn.request(method, path, body=data, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read().decode(errors="replace")
        finally:
            conn.close()

    def csrf(self, headers: dict | None = None) -> str:
        status, _, text = self.request("GET", "/", headers=headers)
        assert status == 200, text
        return re.search(r'name="csrf-token" content="([^"]+)"', text).group(1)

    def decide(self, body, *, csrf: str | None = None, headers: dict | None = None):
        sent = {"Content-Type": "application/json", "X-CSRF-Token": csrf or self.csrf(headers), **(headers or {})}
        status, _, text = self.request("POST", "/api/decisions", body, sent)
        return status, json.loads(text) if text.startswith("{") else text

    def stop(self) -> str:
        if self.proc.stdout.closed:  # stopped already (the fixture stops every server it started)
            return "".join(self.lines)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        # Read through the same buffered stream as readline() did (communicate() with a timeout
        # reads the raw pipe, and would lose lines readline() had already buffered).
        self.lines.append(self.proc.stdout.read())
        self.proc.stdout.close()
        return "".join(self.lines)
