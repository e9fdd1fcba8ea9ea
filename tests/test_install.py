"""The lock files `make install` and `make test` install from, against pyproject.toml: every
dependency pinned, the test lock agreeing with the runtime lock on every package they share, and
the runtime lock free of the test extras (`make demo` installs runtime dependencies only); and the
ledger `make status` / `make report` read after `make demo`."""

from __future__ import annotations

import os
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


def _make_reads(tmp_path: Path, target: str, *, ledgers: list[str], extra: list[str] = ()) -> str:
    """What `make TARGET` would run (dry run, the install step left out) with these ledgers present."""
    import shutil  # only these tests copy the Makefile
    import subprocess

    tmp_path.mkdir(exist_ok=True)
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for ledger in ledgers:
        (tmp_path / ledger).mkdir(parents=True)
    done = subprocess.run(["make", "-n", target, "RUNTIME_STAMP=", *extra], cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_make_status_and_report_read_the_demo_ledger_until_a_real_one_exists(tmp_path):
    for target in ("status", "report"):
        before = _make_reads(tmp_path / target, target, ledgers=["outputs/emulator/ledger.parquet"])
        assert f"videobatch {target} --emulate" in before
        assert "no ledger at outputs/ledger.parquet yet: reading the demo's" in before
    real = _make_reads(tmp_path / "real", "status",
                       ledgers=["outputs/emulator/ledger.parquet", "outputs/ledger.parquet"])
    assert "videobatch status --ledger outputs/ledger.parquet" in real and "--emulate" not in real
    # No ledger at all: the real path, so the CLI's own message names what exists and what to run.
    none = _make_reads(tmp_path / "none", "status", ledgers=[])
    assert "videobatch status --ledger outputs/ledger.parquet" in none
    asked = _make_reads(tmp_path / "asked", "report", ledgers=[], extra=["EMULATE=1"])
    assert "videobatch report --emulate" in asked and "reading the demo's" not in asked


def test_a_batch_runs_and_is_read_without_pyarrow(tmp_path):
    """pyarrow is a test extra (the demo's venv has none): the ledger's writes and reads go to
    delta-rs through the Arrow C stream interface. Here importing pyarrow fails, as it would there."""
    import subprocess  # only these tests start the CLI
    import sys

    blocker = tmp_path / "no-pyarrow" / "pyarrow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pyarrow is not installed (a test extra)')\n")
    manifest = ROOT / "manifests" / "example.yaml"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APIFRAME_")},
           "PYTHONPATH": f"{blocker.parent}{os.pathsep}{ROOT}"}
    for args in (["run", str(manifest), "--emulate", "--emulator-time-scale", "0", "--poll-interval", "0.05"],
                 ["status", "--emulate"], ["report", "--emulate"], ["plan", str(manifest), "--emulate"]):
        done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    assert "to submit: 0 new" in done.stdout
