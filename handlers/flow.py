"""What happens after each engine transition: redraw the card, tell the thread, run."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from bot.engine import Engine
from bot.models import Rollback, State
from bot.text import escape, mention
from handlers.thread import SlackThread

log = structlog.get_logger(__name__)


async def advance(engine: Engine, thread: SlackThread, rb: Rollback, actor: str) -> None:
    """Show a transition on the card and in the thread; run the rollback once approved."""
    if rb.state is State.APPROVED:
        if not rb.approved_by:
            said = "No approval is required here by policy."
        else:
            glass = " (break-glass)" if rb.break_glass_reason else ""
            said = f"Approved by {mention(actor)}{glass}."
        await run_approved(engine, thread, rb, f":rocket: {said} Rolling back now…")
        return
    await thread.update_card(rb)
    who = mention(actor)
    policy = engine.policy(rb)
    if rb.state is State.AWAITING_APPROVAL and not rb.approved_by:
        await thread.reply(
            rb,
            f"Severity confirmed by {who}: *{rb.severity}* → {rb.action}. "
            f"Waiting for {policy.required_approvals} approval(s).",
        )
    elif rb.state is State.AWAITING_APPROVAL:
        await thread.reply(
            rb, f"Approved by {who} ({len(rb.approved_by)} of {policy.required_approvals})."
        )
    elif rb.state is State.CANCELLED and rb.dry_run:
        await thread.reply(
            rb,
            "Dry run complete: the plan above would run after approval from "
            f"{policy.required_approvals} approver(s). Nothing was changed.",
        )
    elif rb.state in {State.CANCELLED, State.REJECTED}:
        await thread.reply(
            rb, f":no_entry_sign: {escape(rb.error or rb.state.label)}. Nothing was changed."
        )
    await thread.hooks.moved(rb)


async def run_approved(engine: Engine, thread: SlackThread, rb: Rollback, said: str) -> None:
    """Say why an approved rollback starts, then run it at once.

    What is said goes out in the rollback's outbox, ahead of its progress: the rollback
    never waits for Slack, and runs even when Slack cannot show it (the engine records
    every step; the outbox logs what it could not post).
    """

    async def announce() -> None:
        await thread.update_card(rb)
        await thread.reply(rb, said)
        await thread.hooks.moved(rb)

    thread.later(rb, announce)
    await engine.execute(rb.id, thread)


async def sweep(engine: Engine, thread: SlackThread) -> None:
    """Close expired requests and take over orphaned rollbacks, which go on in the background.

    The thread announces what moved (its subscription) and carries a resumed run.

    Best effort: a failure is logged, never raised, so it cannot block a command.
    """
    try:
        await engine.sweep(thread)
    except Exception:
        log.exception("sweep failed")


async def sweep_every(engine: Engine, thread: SlackThread, stop: asyncio.Event) -> None:
    """Run `sweep` on the configured interval until `stop` is set."""
    interval = engine.config.runtime.sweep_interval_seconds
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if not stop.is_set():
            await sweep(engine, thread)
