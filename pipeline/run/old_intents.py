"""Wires the settling of an old intent: a resumed submit first sent over 23 h ago, whose key may no
longer settle a replay, is searched for in the job list before anything is sent again
(transitions.after_search decides what the search means)."""

from __future__ import annotations

import json

from pipeline.run import transitions as t
from pipeline.run.tracker import find_in_job_list
from pipeline.run.work import Run, Work


class OldIntents:
    def __init__(self, runner: Run):
        self.runner = runner

    async def settle(self, work: Work) -> None:
        """An intent without a job_id first sent over 23 h ago: its key may no longer settle a
        replay. Find its job in the list; only a list read back past the first send with no match
        makes a new key safe."""
        runner = self.runner
        client, submitter = runner.client, runner.submitter
        offset = client.measured_offset  # every comparison with the API's clock goes through it
        search = await find_in_job_list(
            client, model=work.row["model"], body=json.loads(work.recorded.request_body or "{}"),
            bound=t.search_bound(work.recorded.first_sent, offset), why_unbounded=t.clock_disagreement(offset),
            taken=lambda job_id: runner.payers.taken_by_other(job_id, work.job_key))
        decision = t.after_search(runner.row(work), search)
        runner.events.old_intent(work, decision.step.value, decision.reason)
        if decision.step is t.Step.READ_NOW:
            await submitter.accept(work, decision.fields["job_id"], decision)
            await runner.apply(work, t.Decision(t.Step.READ_NOW))
        elif decision.step is t.Step.RESUBMIT:  # its budget was reserved when it was queued
            body = await submitter.prepare_attempt(work)
            if body is not None:
                await runner.ledger.commit()
                await submitter.send(work, body, resume=False)
        else:
            await runner.apply(work, decision)
