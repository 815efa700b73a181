"""Urgency from the decision matrix: call the on-call group at once for an immediate
rollback, and escalate in the thread when a deadline passes without approval."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.engine import Engine
from bot.jobs import Clock, Job, JobKind, job_id
from bot.models import Rollback, State, utcnow
from bot.policy import People
from bot.scheduler import Scheduler
from bot.text import escape, mention
from bot.time_words import duration
from handlers.thread import SlackThread


class Urgency:
    """Arms an escalation when a rollback starts waiting for approval, and runs it."""

    def __init__(self, engine: Engine, thread: SlackThread, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.thread = thread
        self.clock = clock

    async def on_rollback_moved(self, rb: Rollback) -> None:
        """Hook: arm the escalation while approval is awaited; disarm it on any other state."""
        if rb.state is not State.AWAITING_APPROVAL:
            await self.engine.jobs.cancel_jobs(rb.id, [JobKind.ESCALATE])
            return
        deadline = self.engine.config.urgency.deadline(rb.action)
        current = await self.engine.rollbacks.get(rb.id)
        if deadline is None or current is None or current.state is not State.AWAITING_APPROVAL:
            return  # no deadline, or approved (or stopped) while this hook was on its way
        immediate = deadline == timedelta(0)
        job = Job(
            id=job_id(JobKind.ESCALATE, rb.id),
            rollback_id=rb.id,
            kind=JobKind.ESCALATE,
            due_at=rb.created_at + deadline,
            payload={"action": rb.action, "immediate": immediate},
        )
        if not await self.engine.jobs.schedule_job(job):
            return  # armed when this hook ran before for the same state
        if immediate:
            # At once rather than at the next tick; the claim keeps the tick from doubling it.
            handlers = {JobKind.ESCALATE: self.run}
            await Scheduler(self.engine.jobs, handlers, clock=self.clock).run_job(job.id)
            return
        who = "the on-call group and " if self.engine.config.slack.oncall_group else ""
        await self.thread.reply(
            rb,
            f":alarm_clock: The decision matrix says *{rb.action}*: if nobody approves by "
            f"{job.due_at:%H:%M} UTC, I will call {who}the approvers.",
        )

    async def run(self, job: Job, now: datetime) -> None:
        """Job: call for approval in the thread, unless the rollback stopped waiting."""
        rb = await self.engine.rollbacks.get(job.rollback_id)
        if rb is None or rb.state is not State.AWAITING_APPROVAL:
            return
        policy = self.engine.policy(rb)
        oncall = self.engine.config.slack.oncall_group
        row = self.engine.config.decision_matrix.get(rb.issue or "")
        guide = f"*{rb.action}*" + (f" for {escape(row.label.lower())}" if row else "")
        where = f"Rollback `{rb.id}` of {rb.service}/{rb.environment}"
        if job.payload.get("immediate"):
            # The on-call group is who answers at once; without one, the approvers are.
            who = People(groups=[oncall]) if oncall else policy.approvers
            event = f"On-call called at once: the decision matrix says {rb.action}"
            said = f"{where} needs approval now: the decision matrix says {guide}."
        else:
            groups = [oncall] if oncall else []
            who = People(users=policy.approvers.users, groups=groups + policy.approvers.groups)
            waited = duration(now - rb.created_at)
            so_far = f"{len(rb.approved_by)} of {policy.required_approvals} approval(s) so far"
            event = f"Escalated after {waited} without approval ({rb.action})"
            said = (
                f"{where} has waited {waited} for approval ({so_far}). "
                f"The decision matrix says {guide}."
            )
        await self.engine.record(rb, "rollbot", "escalation", event)
        await self.thread.reply(rb, " ".join([":rotating_light:", *_mentions(who), said]))


def _mentions(people: People) -> list[str]:
    """Mention users and user groups, each once (nobody, when anyone may approve)."""
    names = [mention(u) for u in dict.fromkeys(people.users)]
    return names + [f"<!subteam^{g}>" for g in dict.fromkeys(people.groups)]
