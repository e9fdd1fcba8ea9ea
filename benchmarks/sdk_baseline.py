"""The peer a user would otherwise pick: the official SDK's way, one polling loop per job.

Submit, then `jobs.waitFor(id)`: `GET /v2/jobs/{id}` first after 2 s, the interval times 1.5 up
to 5 s, until the job ends; then download. It shares our client and its pacing (the same
limiter, the same 429 handling), so the only difference measured is how jobs are tracked.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from pipeline.api.client import ApiClient, RequestGate
from pipeline.models import get_model
from pipeline.api.wire import result_url

FIRST_POLL_S, BACKOFF, MAX_POLL_S = 2.0, 1.5, 5.0
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


async def _one_job(client: ApiClient, n: int, row: dict, time_scale: float, folder: Path) -> float:
    model = get_model("grok-imagine-video")
    body = json.dumps(model.request_body(row["prompt"], row["duration"], row["aspect_ratio"], [])).encode()
    job_id = (await client.submit(body, f"sdk-{n}"))["jobId"]
    interval = FIRST_POLL_S
    while True:
        await asyncio.sleep(interval * time_scale)
        job = await client.get_job(job_id)
        if job["status"] in TERMINAL:
            break
        interval = min(MAX_POLL_S, interval * BACKOFF)
    url = result_url(job.get("result"))
    if url:
        with open(folder / f"{n}.mp4", "wb") as out:
            await client.download(url, out, max_bytes=512 * 1024 * 1024)
    return time.perf_counter()


async def run_sdk_style(base_url: str, api_key: str, rows: list[dict], *, rpm: int, rate_period: float,
                        time_scale: float) -> dict[str, float]:
    """Every row at once, as `Promise.all` over `generate` + `waitFor` would; returns the makespan."""
    with tempfile.TemporaryDirectory(prefix="vb-sdk-") as folder:
        async with ApiClient(base_url, api_key, gate=RequestGate(rpm, rate_period)) as client:
            started = time.perf_counter()
            ends = await asyncio.gather(*(_one_job(client, n, row, time_scale, Path(folder))
                                          for n, row in enumerate(rows)))
    return {"makespan_s": max(ends) - started}
