"""The lock files `make install` and `make test` install from, against pyproject.toml: every
dependency pinned, the test lock agreeing with the runtime lock on every package they share, and
the runtime lock free of the test extras (`make demo` installs runtime dependencies only)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(lock: str) -> dict[str, set[str]]:
    """name -> {"==version ; marker", ...} (a package may be pinned per Python version)."""
    pinned: dict[str, set[str]] = {}
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            requirement = Requirement(line)
            assert len(requirement.specifier) == 1 and next(iter(requirement.specifier)).operator == "==", line
            pinned.setdefault(canonicalize_name(requirement.name), set()).add(f"{requirement.specifier} ; {requirement.marker}")
    return pinned


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(text).name) for text in requirements}


def test_every_dependency_is_pinned_in_its_lock():
    runtime, test = pins("runtime.txt"), pins("test.txt")
    assert names(PROJECT["dependencies"]) - set(runtime) == set(), "regenerate requirements/runtime.txt (docs/install.md)"
    assert names(PROJECT["optional-dependencies"]["test"]) - set(test) == set(), "regenerate requirements/test.txt"


def test_the_test_lock_installs_the_runtime_lock_unchanged():
    runtime, test = pins("runtime.txt"), pins("test.txt")
    assert {name: test.get(name) for name in runtime} == runtime  # `make test` after `make demo` adds, never swaps


def test_the_runtime_lock_holds_no_test_extra():
    heavy = names(PROJECT["optional-dependencies"]["test"])
    assert heavy & set(pins("runtime.txt")) == set()
    assert {"playwright", "duckdb", "pandas", "pyarrow", "pytest"} <= heavy  # what kept the demo's venv at 909 MB
