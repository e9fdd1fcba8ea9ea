"""Signed webhook events, as Apiframe sends them: best effort, never in the API's way."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from pipeline.api.webhooks import signature


class WebhookSender:
    def __init__(self, api_key: str):
        self.api_key = api_key
        self.sent = 0
        self.failed = 0
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()

    def send(self, job: Any, event: str, job_json: dict[str, Any]) -> None:
        payload = {"jobId": job.id, "type": event, "status": job_json["status"],
                   "result": job_json["result"], "error": job_json["error"]}
        task = asyncio.get_running_loop().create_task(self._post(job, json.dumps(payload).encode()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, job: Any, body: bytes) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        headers = {"Content-Type": "application/json", "X-Webhook-Signature": signature(self.api_key, body)}
        try:
            async with self._session.post(job.webhook_url, data=body, headers=headers) as response:
                ok = response.status < 300
        except (aiohttp.ClientError, asyncio.TimeoutError):
            ok = False
        job.webhook_status = "delivered" if ok else "failed"
        self.sent += ok
        self.failed += not ok

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
