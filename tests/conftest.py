"""Shared fixtures: an emulator on loopback per test, and the API's own schemas to check answers against."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from pipeline.emulator import Emulator, EmulatorConfig, EmulatorThread
from tests.browser import find_chromium
from tests.harness import TEST_KEY

SCHEMAS = json.loads((Path(__file__).with_name("openapi_schemas.json")).read_text())["schemas"]


def assert_valid(body, schema_name: str) -> None:
    """Fail with every violation when `body` does not match openapi.json's schema `schema_name`."""
    validator = Draft202012Validator(SCHEMAS[schema_name], format_checker=FormatChecker())
    problems = [f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in validator.iter_errors(body)]
    assert not problems, f"{schema_name}: " + "; ".join(problems)


def beside_the_clone(path: Path) -> Path:
    """`path`, a file of the contract, which sits beside the repository, not in it: a test that
    reads it is skipped where it is absent."""
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    return path


@pytest.fixture
async def emulator():
    """`emu = await emulator(**overrides)`: an Emulator on 127.0.0.1:0, stopped after the test."""
    started: list[Emulator] = []

    async def start(**overrides) -> Emulator:
        config = dict(api_key=TEST_KEY, credits=100_000, time_scale=0.0, rpm=0)
        config.update(overrides)
        emu = await Emulator(EmulatorConfig(**config)).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        await emu.stop()


@pytest.fixture
def emulator_thread():
    """`emu = emulator_thread(**overrides)`: the emulator on its own thread, for tests that run the CLI."""
    started: list[EmulatorThread] = []

    def start(**overrides) -> EmulatorThread:
        config = dict(api_key=TEST_KEY, credits=100_000, time_scale=0.0, rpm=0)
        config.update(overrides)
        emu = EmulatorThread(EmulatorConfig(**config)).__enter__()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.__exit__(None, None, None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary, installing Debian's package once where it is missing."""
    return find_chromium()



def pytest_collection_modifyitems(items):
    """The slow-marked end-to-end runs first: under `-n 2` a long test handed out last leaves the
    other worker idle till it ends (the Makefile also lets idle workers steal queued tests)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# -- a real S3 server (moto) in its own process: tests/s3server.py --

@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One moto server per xdist worker (session scope), stopped at the end of the session."""
    from tests.s3server import S3Server  # lazy: only sessions that use S3 start it

    server = S3Server.start(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The moto server with its AWS_* environment set for this test; `s3.url("videos")` is a prefix
    in a fresh bucket, `s3.bucket()` a fresh bucket."""
    from tests.s3server import S3  # lazy, as above

    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return S3(s3_server)
