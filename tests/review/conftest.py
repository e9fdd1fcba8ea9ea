"""The review tests' fixture: review servers in child processes, stopped after the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.review.server_cli import Review


@pytest.fixture
def review_server():
    started: list[Review] = []

    def start(tmp: Path, *more: str) -> Review:
        server = Review(tmp, *more)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
