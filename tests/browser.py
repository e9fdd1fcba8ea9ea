"""Headless Chromium for the tests that open a page the way a person does: the report
(tests/reports/) and the review page (tests/review/). The `chromium` fixture of tests/conftest.py
finds or installs the binary; chromium_page drives it with playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright's own browsers need the internet
# No network here but package registries: keep Chromium from phoning home or waiting on it.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _install_chromium() -> str | None:
    """apt-get install Debian's chromium, unattended; None on success, else why not."""
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        return "not root and no passwordless sudo"
    # `env` rather than os.environ: sudo drops the caller's environment. The lock timeout waits out
    # a CI image's own apt run instead of failing on it.
    apt = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "DPkg::Lock::Timeout=300"]
    install = [*apt, "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:  # a fresh image has no package lists yet
        subprocess.run([*apt, "update"], capture_output=True, text=True, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return f"apt-get install chromium failed: {(done.stderr or done.stdout).strip()[-500:]}"
    return None


def find_chromium() -> str:
    """Path of a Chromium binary, installing Debian's package where it is missing; skips the test
    that asked when there is none (the `chromium` fixture of tests/conftest.py calls it once)."""
    found = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    if not found:
        why = _install_chromium()
        if why or not CHROMIUM.exists():
            pytest.skip(f"needs a Chromium at {CHROMIUM} (Debian: apt-get install chromium); "
                        f"could not install it: {why or 'installed, yet the binary is missing'}")
        found = CHROMIUM
    return str(found)


@contextlib.contextmanager
def chromium_page(chromium: str, width: int, height: int) -> Iterator:
    """A playwright page in headless Chromium (the `chromium` fixture's binary), closed after."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs the playwright package: pip install -e '.[test]'")
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(20_000)  # a hang fails the test instead of stalling the suite
            yield page
        finally:
            browser.close()
