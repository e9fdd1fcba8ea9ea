"""`videobatch emulator`: serve the emulator until stopped; the first line of stdout is its base URL."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from pipeline.emulator.config import DEMO_KEY, EmulatorConfig, Faults
from pipeline.emulator.dialects import DIALECTS, emulator_dialects

FAULT_FLAGS = {
    "--fault-503": "error_503", "--fault-drop": "drop_after_create", "--fault-fail": "fail_generation",
    "--fault-truncate": "truncate_download", "--fault-expire": "expire_results",
    "--fault-reset": "reset_connection", "--fault-slow": "slow_response", "--fault-cdn-404": "cdn_not_found",
    "--fault-no-id": "answer_without_id",
}


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability is between 0 and 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--key", help="the API key it accepts (default: $APIFRAME_EMULATOR_KEY, else a demo key)")
    parser.add_argument("--credits", type=int, default=100_000, help="starting balance (default 100000)")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="multiplies realistic generation times (30-150 s); 0 = instant")
    parser.add_argument("--rpm", type=int, default=500, help="requests per window per key; 0 = no limit")
    parser.add_argument("--rate-window", type=float, default=60.0, help="sliding window in seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seeds generation times and faults")
    for flag, name in FAULT_FLAGS.items():
        parser.add_argument(flag, type=_probability, default=0.0, metavar="P", help=f"probability of {name}")
    parser.add_argument("--slow-seconds", type=float, default=2.0, help="delay of a slow response")
    parser.add_argument("--dialect", type=emulator_dialects, default=(), metavar="NAME[,NAME...]",
                        help=f"answer like a variant of the real API: {', '.join(DIALECTS)}, or all")
    parser.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS",
                        help="run the API's clock this far ahead of the real one (negative: behind); "
                             "its Date header and job times follow it")
    parser.add_argument("--state", type=Path, metavar="PATH",
                        help="remember jobs, keys, credits and uploads in this file across restarts")


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    faults = Faults(seed=args.seed, slow_seconds=args.slow_seconds,
                    **{name: getattr(args, flag[2:].replace("-", "_")) for flag, name in FAULT_FLAGS.items()})
    return EmulatorConfig(
        api_key=args.key or os.environ.get("APIFRAME_EMULATOR_KEY") or DEMO_KEY, credits=args.credits,
        time_scale=args.time_scale, rpm=args.rpm or None, rate_window_seconds=args.rate_window,
        faults=faults, host=args.host, port=args.port, seed=args.seed, dialects=args.dialect,
        state_path=args.state, clock_offset_s=args.clock_offset)


async def _serve(config: EmulatorConfig) -> None:
    # Lazy: aiohttp and the server load only when the emulator serves, not for `--help` or a parse error.
    from pipeline.emulator.server import Emulator
    from pipeline.http_server import stop_on_signals  # with it: http_server imports aiohttp

    stop = stop_on_signals()
    async with Emulator(config) as emu:
        print(emu.base_url, flush=True)
        await stop.wait()


def run(args: argparse.Namespace) -> int:
    asyncio.run(_serve(config_from_args(args)))
    return 0
