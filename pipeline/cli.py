"""Command line: parse arguments, call the library, print, choose the exit code."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videobatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from pipeline.emulator import cli as emulator_cli

    emulator_cli.add_arguments(sub.add_parser("emulator", help="serve the local Apiframe emulator"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "emulator":
        from pipeline.emulator import cli as emulator_cli

        return emulator_cli.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
