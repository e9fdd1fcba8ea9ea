"""A local Apiframe v2 server that demos, tests and benchmarks run on, and that misbehaves on demand."""

from pipeline.emulator.config import DEMO_KEY, EmulatorConfig, Faults
from pipeline.emulator.server import Emulator, EmulatorThread

__all__ = ["DEMO_KEY", "Emulator", "EmulatorConfig", "EmulatorThread", "Faults"]
