"""Serving an aiohttp app on host:port in the running event loop.

Three servers of ours do it: the webhook receiver (api/webhooks.py), the emulator
(emulator/server.py) and the review page (review/server.py). Their apps differ; starting and
stopping one, and serving from the command line until Ctrl-C, do not, so those live here. The
client side of HTTP is api/client.py.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web


class Site:
    """One app served on host:port. `start` binds and says where (port 0 picks a free port);
    `stop` frees the port, and does nothing for a site that is not serving."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None

    async def start(self, app: web.Application, host: str, port: int) -> tuple[str, int]:
        # No access log: a review page's URLs may carry its token.
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        return bound_host, bound_port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def stop_on_signals() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets, in the running loop: `videobatch review` and
    `videobatch emulator` serve until it is set, then stop their site cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
