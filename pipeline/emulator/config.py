"""How the emulator behaves: account, clock, rate limit and the faults it injects on purpose."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEMO_KEY = "afk_emulator_demo_key"

# Realistic generation times before time_scale (seconds, uniform), per clip duration.
REALISTIC_SECONDS = {6: (30.0, 60.0), 10: (45.0, 90.0), 15: (60.0, 150.0)}


@dataclass(frozen=True)
class Faults:
    """Each a probability in 0..1, drawn from one seeded generator so a failure reproduces."""

    seed: int = 0
    error_503: float = 0.0  # any /v2 route answers 503
    drop_after_create: float = 0.0  # a submit creates and charges the job, then drops the connection
    answer_without_id: float = 0.0  # a submit creates and charges the job, then answers 202 with no job id
    fail_generation: float = 0.0  # the job ends FAILED (and is refunded)
    truncate_download: float = 0.0  # the CDN sends half the body under a full Content-Length
    expire_results: float = 0.0  # a COMPLETED job's result is purged: expired=true, CDN 404
    cdn_not_found: float = 0.0  # the CDN answers 404 for a result that is not expired
    reset_connection: float = 0.0  # any /v2 route drops the connection before doing anything
    slow_response: float = 0.0  # any /v2 route waits slow_seconds before answering
    slow_seconds: float = 2.0

    def updated(self, changes: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        return replace(self, **changes)


@dataclass
class EmulatorConfig:
    api_key: str = DEMO_KEY
    credits: int = 100_000
    time_scale: float = 1.0
    generation_seconds: dict[int, tuple[float, float]] = field(default_factory=lambda: dict(REALISTIC_SECONDS))
    rpm: int | None = 500  # requests per window per key over /v2; 0 or None: no limit
    rate_window_seconds: float = 60.0
    faults: Faults = field(default_factory=Faults)
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0  # also decides the account's user, team and key ids (another seed, another account)
    dialects: tuple[str, ...] = ()  # see dialects.py
    state_path: Path | None = None  # where jobs, keys, credits and uploads persist (None: memory only)
    idempotency_window_s: float = 24 * 3600  # a key older than this settles nothing (spec)
    upload_lifetime_s: float = 3600.0  # an upload's expiresAt, from its creation
    # The API's clock minus the real one: its Date header, createdAt, key ages and expiries all
    # read this clock, as a server whose clock is off would (negative: the API is behind).
    clock_offset_s: float = 0.0

    def now(self) -> float:
        """The emulated API's clock, epoch seconds."""
        return time.time() + self.clock_offset_s

    def speaks(self, dialect: str) -> bool:
        return dialect in self.dialects
