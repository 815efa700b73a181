"""What happens after each engine transition: redraw the card, tell the thread, run."""

from __future__ import annotations

from bot.engine import Engine, mention
from bot.models import Rollback, State
from handlers.blocks import escape
from handlers.thread import SlackThread


async def advance(engine: Engine, thread: SlackThread, rb: Rollback, actor: str) -> None:
    """Show a transition on the card and in the thread; run the rollback once approved."""
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
            rb,
            f"Approved by {who} ({len(rb.approved_by)} of {policy.required_approvals}).",
        )
    elif rb.state is State.APPROVED:
        how = " (break-glass)" if rb.break_glass_reason else ""
        await thread.reply(rb, f":rocket: Approved by {who}{how}. Rolling back now…")
        await engine.execute(rb.id, thread)
    elif rb.state is State.CANCELLED and rb.dry_run:
        await thread.reply(
            rb,
            f"Dry run complete: the plan above would run after approval from "
            f"{policy.required_approvals} approver(s). Nothing was changed.",
        )
    elif rb.state in {State.CANCELLED, State.REJECTED}:
        await thread.reply(
            rb, f":no_entry_sign: {escape(rb.error or rb.state.value)}. Nothing was changed."
        )
