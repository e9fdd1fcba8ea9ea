"""Decides where a ledger, its state and the videos live: a local path, or an object-store URL
(`s3://bucket/prefix`, `gs://...`, `az://...`, also `abfs://` and `azure://`).

Credentials never pass through here: delta-rs and obstore read the store's standard environment
themselves (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP;
GOOGLE_SERVICE_ACCOUNT...; AZURE_STORAGE_ACCOUNT_NAME...), so a URL or an option we print can
never hold one. A URL with a password or a query (a presigned link, a SAS token) is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REMOTE_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "azure")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class LocationError(ValueError):
    """A --ledger, --out or --state-dir that names no place we can use: bad input, said in one line."""


@dataclass(frozen=True)
class Location:
    """A folder on this machine (`path`) or a prefix in an object store (`url`, no trailing slash)."""

    url: str  # the local path as text, or the store URL
    path: Path | None = None  # set for a local folder

    @property
    def remote(self) -> bool:
        return self.path is None

    @property
    def scheme(self) -> str:
        return "file" if self.path is not None else self.url.split("://", 1)[0].lower()

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1] if self.remote else self.path.name

    def child(self, name: str) -> Location:
        if self.path is not None:
            return Location(str(self.path / name), self.path / name)
        return Location(f"{self.url}/{name}")

    def __str__(self) -> str:
        return self.url


def parse(text: str | Path | Location, what: str = "--ledger") -> Location:
    """`text` as a Location; a local path stays relative as the user wrote it."""
    if isinstance(text, Location):
        return text
    if isinstance(text, Path):
        return Location(str(text), text)
    match = _URL.match(text)
    if match is None:
        return Location(text, Path(text))
    scheme = match[1].lower()
    if scheme == "file":
        path = Path(urlsplit(text).path)
        return Location(str(path), path)
    if scheme not in REMOTE_SCHEMES:
        raise LocationError(f"{what} {text.split('://', 1)[0]}://...: not a store videobatch knows; "
                            f"use a local path or an s3://, gs:// or az:// URL")
    parts = urlsplit(text)
    if parts.password or parts.query or parts.fragment:
        raise LocationError(f"{what}: a URL with a password, query or fragment is refused (a credential in a URL "
                            "would be printed and logged); give the bare bucket/prefix URL and put credentials in "
                            "the store's environment (AWS_ACCESS_KEY_ID, ...), see docs/storage.md")
    if not parts.netloc:
        raise LocationError(f"{what} {text}: no bucket named; write it as {scheme}://BUCKET/PREFIX")
    return Location(text.rstrip("/"))


def state_home() -> Path:
    """Where a user's state lives by default: $XDG_STATE_HOME, else ~/.local/state (per user)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "videobatch"


def default_state_dir(ledger: Location) -> Path:
    """A remote ledger's local state (journal, locks, logs): one folder per ledger URL, per user."""
    digest = hashlib.sha256(ledger.url.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ledger.url.split("://", 1)[-1]).strip("-")[-40:]
    return state_home() / f"{slug}-{digest}"
