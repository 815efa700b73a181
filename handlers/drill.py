"""`/rollback drill` in Slack: the drill's card, its thread, and the Reporter they make."""

from __future__ import annotations

from typing import Any

import structlog
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.drill import Drills
from bot.engine import Engine
from bot.models import FINAL_STATES, Rollback, State
from bot.text import escape, mention
from bot.time_words import duration
from bot.verification import CheckResult
from handlers.blocks import STATE_ICONS, dump
from handlers.thread import SlackThread

log = structlog.get_logger(__name__)


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:3000])


def _status(rb: Rollback) -> str:
    status = f"{STATE_ICONS[rb.state]} {rb.state.label}"
    if rb.state in {State.RUNNING, State.VERIFYING, State.FAILED, State.INTERRUPTED}:
        leg = "leg 1/2, back" if rb.drill_back_seconds is None else "leg 2/2, forward"
        status += f" ({leg})"
    return status


def _outcome(rb: Rollback, last_step: str | None) -> list[str]:
    if rb.state is State.SUCCEEDED:
        back = duration(rb.drill_back_seconds or 0)
        forward = duration(rb.drill_forward_seconds or 0)
        return [
            f"*Outcome:* passed: back in {back}, forward in {forward}; "
            f"runs `{rb.shown_current}` again."
        ]
    lines = []
    if last_step and rb.state not in FINAL_STATES:
        lines.append(f"*Now:* {escape(last_step)}")
    if rb.state in FINAL_STATES and rb.error:
        lines.append(f"*Outcome:* {escape(rb.error)}")
    if rb.target_state and rb.state in FINAL_STATES:
        lines.append(f"*State now:* {escape(rb.target_state)}")
    return lines


def drill_card(rb: Rollback, last_step: str | None = None) -> list[dict[str, Any]]:
    """Build a drill's card: the versions it goes through, its plan and where it stands."""
    there_and_back = f"`{rb.shown_current}` → `{rb.shown_target}` → `{rb.shown_current}`"
    plan = ["*Plan*"] + [f"{i}. {escape(step)}" for i, step in enumerate(rb.plan, 1)]
    plan += [f":warning: {escape(w)}" for w in rb.warnings]
    blocks: list[Block] = [
        HeaderBlock(
            text=PlainTextObject(text=f"Rollback drill {rb.service}/{rb.environment}"[:150])
        ),
        SectionBlock(
            fields=[
                _md(f"*Service*\n{rb.service}"),
                _md(f"*Environment*\n{rb.environment}"),
                _md(f"*Drill*\n{there_and_back}"),
                _md(f"*Started by*\n{mention(rb.requested_by)}"),
                _md(f"*Status*\n{_status(rb)}"),
            ]
        ),
        SectionBlock(text=_md("\n".join(plan))),
    ]
    if lines := _outcome(rb, last_step):
        blocks.append(SectionBlock(text=_md("\n".join(lines))))
    blocks.append(
        ContextBlock(
            elements=[_md(f"Drill `{rb.id}` · outside production, so no approval is needed")]
        )
    )
    return dump(blocks)


class DrillThread:
    """Posts and updates a drill's card and thread; the engine's Reporter for a drill."""

    def __init__(self, thread: SlackThread) -> None:
        self.thread = thread
        self.client = thread.client
        self.engine = thread.engine

    @staticmethod
    def _fallback(rb: Rollback) -> str:
        return (
            f"Rollback drill {rb.id}: {rb.service}/{rb.environment} {rb.shown_current} → "
            f"{rb.shown_target} → {rb.shown_current} ({rb.state.label})"
        )

    async def post_card(self, rb: Rollback, channel: str) -> Rollback:
        """Post the card as the drill's thread root and remember where it is."""
        response = await self.client.chat_postMessage(
            channel=channel, text=self._fallback(rb), blocks=drill_card(rb)
        )
        ts = str(response["ts"])
        return await self.engine.rollbacks.update(
            rb.id, channel_id=str(response["channel"]), message_ts=ts, thread_ts=ts
        )

    async def update_card(self, rb: Rollback, last_step: str | None = None) -> None:
        """Redraw the card with the drill's current state."""
        if rb.channel_id and rb.message_ts:
            await self.client.chat_update(
                channel=rb.channel_id,
                ts=rb.message_ts,
                text=self._fallback(rb),
                blocks=drill_card(rb, last_step),
            )

    async def progress(self, rollback: Rollback, text: str) -> None:
        """Queue a step for the thread and the card (the outbox sends it beside the work)."""

        async def redraw(rb: Rollback, last_step: str) -> None:
            # An ended run's card is redrawn with its outcome, after the outcome is posted.
            if rb.state not in FINAL_STATES:
                await self.update_card(rb, last_step=last_step)

        self.thread.live.add(rollback.id, text, redraw)

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        """Queue the verification table of a leg for the thread."""
        await self.thread.verified(rollback, results)

    async def finished(self, rollback: Rollback, summary: str) -> None:
        """Queue the outcome for the thread and the channel, and the card."""

        async def post() -> None:
            await self.thread.live.end(rollback.id)
            rb = await self.engine.get(rollback.id)
            await self.thread.reply(rb, summary, broadcast=True)
            await self.update_card(rb)

        self.thread.outbox.send(rollback.id, post, redraws=True)


async def run_drill(
    engine: Engine,
    thread: SlackThread,
    *,
    channel: str,
    user: str,
    service: str,
    environment: str | None,
) -> None:
    """Start a drill, post its card where the command ran and run it in the card's thread."""
    drills = Drills(engine)
    drill = await drills.start(
        service=service, environment=environment, user=user, channel_id=channel
    )
    reporter = DrillThread(thread)
    try:
        drill = await reporter.post_card(drill, channel)
    except Exception:
        # Nobody could follow a drill without its card: free the service instead.
        await engine.cancel(drill.id, user)
        raise
    try:
        await thread.reply(
            drill,
            f":rotating_light: Drill started by {mention(user)}: {drill.service}/"
            f"{drill.environment} goes back to {drill.shown_target}, then forward to "
            f"{drill.shown_current}, verified each time. The service stays locked until "
            "the drill ends.",
        )
    except Exception as exc:
        # The card is up: the drill runs and reports there even if this line is lost.
        log.warning("slack unavailable before the drill", error=type(exc).__name__)
    await drills.run(drill.id, reporter)
