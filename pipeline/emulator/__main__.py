import argparse
import sys

from pipeline.emulator import cli

parser = argparse.ArgumentParser(prog="python -m pipeline.emulator", description=cli.__doc__)
cli.add_arguments(parser)
sys.exit(cli.run(parser.parse_args()))
