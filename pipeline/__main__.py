"""Wires `python -m pipeline` to pipeline/cli.py, as the `videobatch` script does."""

import sys

from pipeline.cli import main

sys.exit(main())
