"""pipeline/emulator/dialects.py: naming the dialects to turn on. What each dialect does to a real
run is tests/scenarios/test_dialects.py's (every one, and all at once, over real sockets)."""

from __future__ import annotations

import argparse

import pytest

from pipeline.emulator.dialects import DIALECTS, emulator_dialects, parse_dialects


@pytest.mark.parametrize("text, names", [
    ("all", tuple(DIALECTS)),
    ("read-lag", ("read-lag",)),
    (" submit-id , read-lag,submit-id,", ("submit-id", "read-lag")),  # spaces, repeats, a trailing comma
    ("", ()),
])
def test_parse_dialects(text, names):
    assert parse_dialects(text) == names


def test_an_unknown_dialect_is_named_with_the_known_ones():
    known = ", ".join(DIALECTS)
    with pytest.raises(ValueError) as caught:
        parse_dialects("read-lag,nope,all")
    assert str(caught.value) == f"unknown dialect nope, all; known: {known}, or all"
    with pytest.raises(argparse.ArgumentTypeError, match="unknown dialect nope; known: "):
        emulator_dialects("nope")
