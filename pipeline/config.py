"""Where the API key and base URL come from: the environment, else a `.env` file in the working folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "https://api.apiframe.ai"
KEY_VAR = "APIFRAME_API_KEY"
URL_VAR = "APIFRAME_BASE_URL"


@dataclass(frozen=True, repr=False)
class ApiConfig:
    base_url: str
    api_key: str | None

    def __repr__(self) -> str:  # never show the key, even in a traceback
        return f"ApiConfig(base_url={self.base_url!r}, api_key={'set' if self.api_key else 'unset'})"


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; comments, blank lines and `export ` prefixes allowed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def load_api_config(cwd: Path | None = None) -> ApiConfig:
    """The environment wins over `.env`, so cron can override a checked-out default."""
    dotenv = read_dotenv((cwd or Path.cwd()) / ".env")
    key = os.environ.get(KEY_VAR) or dotenv.get(KEY_VAR) or None
    base_url = os.environ.get(URL_VAR) or dotenv.get(URL_VAR) or DEFAULT_BASE_URL
    return ApiConfig(base_url=base_url.rstrip("/"), api_key=key)

# Where a batch keeps its ledger and videos, unless told: the CLI names them in its --help, so
# they live here, where reading them imports nothing heavy (pipeline/batch.py imports polars).
REAL_OUT = Path("outputs")
EMULATED_OUT = Path("outputs/emulator")  # emulated runs never share a ledger with real ones
LEDGER_NAME = "ledger.parquet"
DEMO_TIME_SCALE = 0.05  # the emulator's 30-150 s generations take 1.5-7.5 s in a demo
RECONCILE_PAGES = 1000  # job-list pages of 100 read at most: a busy month's jobs, about 2 min at 500 rpm
RECONCILE_READS = 1000  # in-flight jobs the pages did not show, read one by one at most
