"""pipeline/http_server.py over real sockets: a Site serves where it says, frees its port on stop,
logs no URL (a review page's carries its token), and SIGINT or SIGTERM end a served command."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

import aiohttp
import pytest
from aiohttp import web

from pipeline.http_server import Site, stop_on_signals
from tests.harness import free_port


def hello_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    return app


async def get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("asked", ["any", "given"])
async def test_a_site_serves_on_the_port_it_says_and_frees_it_on_stop(asked, caplog):
    port = 0 if asked == "any" else free_port()
    site = Site()
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    host, bound = await site.start(hello_app(), "127.0.0.1", port)
    try:
        assert host == "127.0.0.1" and bound > 0 and (asked == "any" or bound == port)
        assert await get(f"http://127.0.0.1:{bound}/review?token=s3cr3t") == "hello /review"
    finally:
        await site.stop()
    assert refused(bound)
    assert "s3cr3t" not in caplog.text and not [r for r in caplog.records if r.name == "aiohttp.access"]


async def test_stop_is_safe_on_a_site_not_serving():
    site = Site()
    await site.stop()  # never started
    _, port = await site.start(hello_app(), "127.0.0.1", 0)
    await site.stop()
    await site.stop()  # twice
    assert refused(port)


async def test_a_port_already_taken_is_an_os_error_not_a_silent_second_server():
    first = Site()
    _, port = await first.start(hello_app(), "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            await Site().start(hello_app(), "127.0.0.1", port)
    finally:
        await first.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_sigint_or_sigterm_sets_the_stop_event(sig):
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    loop = asyncio.get_running_loop()
    try:
        stop = stop_on_signals()
        assert not stop.is_set()
        os.kill(os.getpid(), sig)
        await asyncio.wait_for(stop.wait(), timeout=5)  # set, and the process still alive
    finally:
        for s, handler in saved.items():
            loop.remove_signal_handler(s)
            signal.signal(s, handler)
    assert stop.is_set()
