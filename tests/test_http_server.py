"""Serving an aiohttp app: a real socket on a free port, a real GET, then the port freed; and the
signals that end `videobatch review` and `videobatch emulator`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import aiohttp
import pytest
from aiohttp import web

from pipeline.http_server import Site, stop_on_signals


def hello_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.query.get('token', '')}")

    app = web.Application()
    app.router.add_get("/", hello)
    return app


async def test_a_site_serves_on_the_port_it_names_then_frees_it(caplog):
    site = Site()
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    host, port = await site.start(hello_app(), "127.0.0.1", 0)
    assert host == "127.0.0.1" and port > 0  # port 0 picked a free one, and start says which
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{host}:{port}/?token=s3cret") as answer:
                assert answer.status == 200
                assert await answer.text() == "hello s3cret"
    finally:
        await site.stop()
    assert not [r for r in caplog.records if r.name == "aiohttp.access"]  # a URL may carry a token: no access log
    with pytest.raises(OSError):  # stopped: nothing listens there any more
        await asyncio.open_connection(host, port)
    await site.stop()  # a site that is not serving: nothing to do, no error


async def test_a_site_never_started_stops_quietly():
    await Site().stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_sigint_and_sigterm_set_the_stop_event(sig):
    stop = stop_on_signals()
    assert not stop.is_set()
    os.kill(os.getpid(), sig)  # the loop's handler, not the default: this process lives on
    await asyncio.wait_for(stop.wait(), timeout=5)
    loop = asyncio.get_running_loop()
    for each in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(each)  # give the test process its own handlers back
