"""The emulator's server-side truth: jobs, idempotency keys, credits and what was sent.

Jobs advance with the clock, not with tasks: each job's timeline (queued until, done at, fails
or not, expires or not) is drawn when it is created; `advance()` settles the jobs whose time has
come (refunds, webhooks) from a heap, and reads compute progress from the clock. Ten thousand
jobs cost ten thousand small objects, nothing more.

With a `state_path`, what the real API would remember survives a restart: the account's
identity, every job with its timeline and Idempotency-Key, the balance and the uploads. It is an
append-only JSON-lines file (one line per created job or upload), written before the answer
leaves, so a client killed at any moment finds its jobs again, exactly as with the real API.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.emulator.config import EmulatorConfig, Faults
from pipeline.emulator.dialects import STUCK_EVERY
from pipeline.emulator.frames import clip_of, frame_size
from pipeline.emulator.video import variant_of
from pipeline.models import get_model


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class EmuJob:
    id: str
    seq: int
    idempotency_key: str | None
    body: dict[str, Any]
    body_canonical: str
    model: str
    prompt: str
    duration: int  # the clip's length in seconds: asked, or the model's default
    aspect_ratio: str | None  # as asked (None: not asked)
    price: int
    created: float
    queued_until: float
    done_at: float
    will_fail: bool
    will_expire: bool
    webhook_url: str | None
    webhook_events: tuple[str, ...]
    final: str | None = None  # COMPLETED / FAILED once settled
    credit_cost: int | None = None
    webhook_status: str | None = None
    served_sha256: str | None = None
    served_bytes: int | None = None
    width: int = 0  # the clip's frame size (0 in a state file written before it was kept)
    height: int = 0

    @property
    def variant(self) -> int:
        return variant_of(self.prompt)

    @property
    def stuck(self) -> bool:
        return math.isinf(self.done_at)

    def status(self, now: float) -> tuple[str, int | None]:
        if self.final is not None:
            return self.final, 100 if self.final == "COMPLETED" else None
        if now < self.queued_until:
            return "QUEUED", 0
        if self.stuck:
            return "PROCESSING", 50
        span = max(self.done_at - self.queued_until, 1e-9)
        return "PROCESSING", min(99, int(100 * (now - self.queued_until) / span))

    def expired(self) -> bool:
        return self.final == "COMPLETED" and self.will_expire


class EmulatorState:
    def __init__(self, config: EmulatorConfig):
        self.config = config
        self.api_key = config.api_key
        self.balance = config.credits
        self.charged = 0
        self.refunded = 0
        self.jobs: dict[str, EmuJob] = {}
        self.order: list[EmuJob] = []  # by creation: newest last
        self.by_idempotency_key: dict[str, EmuJob] = {}
        self.uploads: dict[str, tuple[bytes, str, str]] = {}  # id -> (data, content type, name)
        self.requests: Counter[str] = Counter()
        self.user_agents: Counter[str] = Counter()
        self.list_models: Counter[str] = Counter()  # the `model` filter of each job-list request ("" if none)
        self.faults_sent: Counter[str] = Counter()
        self.rate_limited = 0
        self.retry_after_violations = 0  # requests that came before the Retry-After we gave
        self.not_before: dict[str, tuple[float, float]] = {}  # key -> (429 sent at, Retry-After ends)
        self._heap: list[tuple[float, int, str]] = []
        self._gen_rng = random.Random(config.seed)
        self.set_faults(config.faults)
        self.team_id, self.user_id, self.key_id = (str(uuid.UUID(int=random.Random(config.seed + n).getrandbits(128)))
                                                   for n in (1, 2, 3))
        self._store = None
        if config.state_path is not None:
            self._open_store(Path(config.state_path))

    # -- memory across restarts --

    def _open_store(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._uploads_dir = path.with_name(path.stem + "-uploads")
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill: its answer never left
                self._restore(record)
            self.advance()
            self._store = open(path, "a", encoding="utf-8")
        else:
            self._store = open(path, "a", encoding="utf-8")
            self._remember({"e": "account", "user": self.user_id, "team": self.team_id, "key": self.key_id,
                            "balance": self.balance})

    def _remember(self, record: dict[str, Any]) -> None:
        if self._store is not None:
            self._store.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._store.flush()  # in the OS before the answer leaves: a killed process loses nothing

    def _restore(self, record: dict[str, Any]) -> None:
        kind = record.get("e")
        if kind == "account":
            self.user_id, self.team_id, self.key_id = record["user"], record["team"], record["key"]
            self.balance = record["balance"]
        elif kind == "job":
            job = EmuJob(**{f.name: record[f.name] for f in fields(EmuJob) if f.name in record})
            self._add(job)
        elif kind == "upload":
            data = (self._uploads_dir / record["id"]).read_bytes()
            self.uploads[record["id"]] = (data, record["ctype"], record["name"])
        elif kind == "balance":
            self.balance = record["value"]

    def set_balance(self, value: int) -> None:
        self.balance = int(value)
        self._remember({"e": "balance", "value": self.balance})

    def add_upload(self, upload_id: str, data: bytes, ctype: str, name: str) -> None:
        if self._store is not None:
            self._uploads_dir.mkdir(parents=True, exist_ok=True)
            (self._uploads_dir / upload_id).write_bytes(data)
        self.uploads[upload_id] = (data, ctype, name)
        self._remember({"e": "upload", "id": upload_id, "ctype": ctype, "name": name})

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def job_for_key(self, key: str, now: float) -> EmuJob | None:
        """The job an Idempotency-Key made, while the key is within its window."""
        job = self.by_idempotency_key.get(key)
        if job is None or now - job.created > self.config.idempotency_window_s:
            return None
        return job

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self._fault_rng = random.Random(faults.seed)

    def roll(self, fault: str) -> bool:
        """Draw one seeded decision for `fault`; count it when it fires."""
        probability = getattr(self.faults, fault)
        if probability <= 0:
            return False
        hit = self._fault_rng.random() < probability
        if hit:
            self.faults_sent[fault] += 1
        return hit

    # -- jobs --

    def create_job(self, body: dict[str, Any], idempotency_key: str | None, price: int) -> EmuJob:
        model = get_model(body["model"])
        block = body.get(model.params_field) or {}
        clip = clip_of(model, block)
        now = self.config.now()
        lo, hi = self.generation_range(clip.seconds)
        generation = self._gen_rng.uniform(lo, hi) * self.config.time_scale
        stuck = self.config.speaks("stuck") and len(self.order) % STUCK_EVERY == STUCK_EVERY - 1
        job = EmuJob(
            id=str(uuid.uuid4()), seq=len(self.order), idempotency_key=idempotency_key, body=body,
            body_canonical=canonical(body), model=model.name, prompt=body["prompt"], duration=clip.seconds,
            aspect_ratio=block.get("aspect_ratio"), price=price, created=now, queued_until=now + 0.1 * generation,
            done_at=math.inf if stuck else now + generation, will_fail=self.roll("fail_generation"),
            will_expire=self.roll("expire_results"), webhook_url=body.get("webhookUrl"),
            webhook_events=tuple(body.get("webhookEvents") or ("completed", "failed")),
            width=clip.width, height=clip.height,
        )
        job.webhook_status = "pending" if job.webhook_url else None
        record = asdict(job)
        record["done_at"] = None if stuck else job.done_at
        self._remember({"e": "job", **record})
        self._add(job)
        return job

    def generation_range(self, seconds: int) -> tuple[float, float]:
        """How long a clip of `seconds` takes to make (before time_scale): the nearest length's."""
        table = self.config.generation_seconds
        if not table:
            return 30.0, 60.0
        return table[min(table, key=lambda known: (abs(known - seconds), known))]

    def _add(self, job: EmuJob) -> None:
        if job.done_at is None:  # restored: a stuck job never finishes
            job.done_at = math.inf
        if not job.width:  # restored from a state file written before sizes were kept
            model = get_model(job.model)
            job.width, job.height = frame_size(model, job.body.get(model.params_field) or {})
        job.webhook_events = tuple(job.webhook_events)
        job.final, job.credit_cost = None, job.price
        self.balance -= job.price
        self.charged += job.price
        self.jobs[job.id] = job
        self.order.append(job)
        if job.idempotency_key is not None:
            self.by_idempotency_key[job.idempotency_key] = job
        if not job.stuck:
            heapq.heappush(self._heap, (job.done_at, job.seq, job.id))

    def advance(self, now: float | None = None) -> list[EmuJob]:
        """Settle every job whose time has come; returns them (for webhooks)."""
        now = self.config.now() if now is None else now
        settled = []
        while self._heap and self._heap[0][0] <= now:
            _, _, job_id = heapq.heappop(self._heap)
            job = self.jobs[job_id]
            if job.will_fail:
                job.final = "FAILED"
                self.balance += job.price  # a failed generation is refunded
                self.refunded += job.price
                job.credit_cost = 0
            else:
                job.final = "COMPLETED"
            settled.append(job)
        return settled

    def result_json(self, job: EmuJob, cdn_url: str) -> Any:
        url = f"{cdn_url}/cdn/videos/{job.id}.mp4"
        if self.config.speaks("result-string"):
            return url
        if self.config.speaks("result-list"):
            return [{"url": url}]
        return {"videoUrl": url}

    def job_json(self, job: EmuJob, cdn_url: str, now: float) -> dict[str, Any]:
        status, progress = job.status(now)
        result = None
        if status == "COMPLETED":
            result = self.result_json(job, cdn_url)
        return {
            "id": job.id, "status": status, "model": job.model, "progress": progress,
            "error": "Generation failed: the model could not render this prompt" if status == "FAILED" else None,
            "creditCost": job.credit_cost, "webhookStatus": job.webhook_status,
            "createdAt": iso(job.created), "completedAt": iso(job.done_at) if job.final else None,
            "expired": job.expired(), "input": job.body, "result": result,
        }

    # -- the truth, for tests --

    def credits_by_model(self) -> dict[str, int]:
        """What each model's jobs cost in the end (charges less refunds): the books per model."""
        spent: Counter[str] = Counter()
        for job in self.order:
            spent[job.model] += job.credit_cost or 0
        return dict(spent)

    def stats(self) -> dict[str, Any]:
        now = self.config.now()
        return {
            "jobs": [{
                "id": j.id, "idempotency_key": j.idempotency_key, "status": j.status(now)[0],
                "model": j.model, "prompt": j.prompt, "duration": j.duration, "aspect_ratio": j.aspect_ratio,
                "width": j.width, "height": j.height, "credit_cost": j.credit_cost, "created_at": iso(j.created),
                "completed_at": iso(j.done_at) if j.final else None, "expired": j.expired(),
                "video_sha256": j.served_sha256, "video_bytes": j.served_bytes,
            } for j in self.order],
            "credits": {"balance": self.balance, "charged": self.charged, "refunded": self.refunded},
            "credits_by_model": self.credits_by_model(),
            "requests": dict(self.requests),
            "rate_limited": self.rate_limited,
            "retry_after_violations": self.retry_after_violations,
            "faults": dict(self.faults_sent),
            "uploads": len(self.uploads),
            "user_agents": dict(self.user_agents),
            "list_models": dict(self.list_models),
        }
