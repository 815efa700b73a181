"""The incident thread: the card as its root, one live progress reply, and the Reporter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import Engine
from bot.errors import InvalidRequest
from bot.events import Moved
from bot.models import FINAL_STATES, Rollback, State
from bot.redact import redact
from bot.states import Trigger
from bot.text import escape
from bot.verification import CheckResult, render_table
from handlers.blocks import card, failure_options
from handlers.fit import shorten
from handlers.hooks import Hooks
from handlers.long_text import MESSAGE_TEXT_MAX, split_text
from handlers.outbox import Outbox
from handlers.profiles import Profiles
from handlers.progress import LiveProgress

log = structlog.get_logger(__name__)

# The sweeper's transitions: nobody's click or run reports them.
ANNOUNCED_HERE = frozenset({Trigger.EXPIRE, Trigger.ORPHAN})
# A reply longer than this many messages buries the thread: the rest is in the report.
REPLY_PARTS_MAX = 6


class SlackThread:
    """Posts and updates a rollback's card and thread; the engine's Reporter for Slack."""

    def __init__(self, client: AsyncWebClient, engine: Engine) -> None:
        self.client = client
        self.engine = engine
        self.hooks = Hooks()
        # What the engine reports while it runs goes out beside the work, not in front.
        self.outbox = Outbox()
        self.live = LiveProgress(client, self.outbox, engine.get, self._remember_progress)
        # What Slack says of people (names, timezones), for whatever the thread posts.
        self.profiles = Profiles(client)

    def _blocks(
        self, rb: Rollback, *, preview_issue: str | None = None, last_step: str | None = None
    ) -> list[dict[str, object]]:
        return card(
            rb,
            self.engine.config.decision_matrix,
            self.engine.policy(rb),
            preview_issue=preview_issue,
            last_step=last_step,
        )

    async def _remember_progress(self, rollback_id: str, ts: str | None) -> None:
        await self.engine.rollbacks.update(rollback_id, progress_ts=ts)

    @staticmethod
    def _fallback(rb: Rollback) -> str:
        return (
            f"Rollback {rb.id}: {rb.service}/{rb.environment} {rb.shown_current} → "
            f"{rb.shown_target} ({rb.state.label})"
        )

    async def post_card(self, rb: Rollback, channel: str) -> Rollback:
        """Post the card as a new thread root (joining the channel if need be); remember it."""
        try:
            response = await self.client.chat_postMessage(
                channel=channel, text=self._fallback(rb), blocks=self._blocks(rb)
            )
        except SlackApiError as exc:
            if exc.response.get("error") != "not_in_channel":
                raise
            await self.join(channel)
            response = await self.client.chat_postMessage(
                channel=channel, text=self._fallback(rb), blocks=self._blocks(rb)
            )
        ts = str(response["ts"])
        return await self.engine.rollbacks.update(
            rb.id, channel_id=str(response["channel"]), message_ts=ts, thread_ts=ts
        )

    async def join(self, channel: str) -> None:
        """Join a public channel the bot was not invited to, or say how to let it in."""
        try:
            await self.client.conversations_join(channel=channel)
        except SlackApiError as exc:
            error = exc.response.get("error")
            why = (
                "rollbot's Slack app lacks the `channels:join` scope"
                if error == "missing_scope"
                else f"Slack refused ({error})"
            )
            raise InvalidRequest(
                f"I am not in <#{channel}> and cannot join it: {why}. Invite me with "
                "`/invite @rollbot` in that channel, then run the command again. "
                "Nothing was changed."
            ) from exc
        log.info("joined channel", channel=channel)

    async def update_card(
        self, rb: Rollback, *, preview_issue: str | None = None, last_step: str | None = None
    ) -> None:
        """Redraw the card with the rollback's current state."""
        if not (rb.channel_id and rb.message_ts):
            return
        await self.client.chat_update(
            channel=rb.channel_id,
            ts=rb.message_ts,
            text=self._fallback(rb),
            blocks=self._blocks(rb, preview_issue=preview_issue, last_step=last_step),
        )

    async def reply(self, rb: Rollback, text: str, *, broadcast: bool = False) -> None:
        """Post a reply in the rollback's thread: a long one in parts, only the first broadcast."""
        if not (rb.channel_id and rb.thread_ts):
            return
        parts = split_text(text) if len(text) > MESSAGE_TEXT_MAX else [text]
        if len(parts) > REPLY_PARTS_MAX:
            rest = "\n".join(parts[REPLY_PARTS_MAX - 1 :])
            where = f"`/rollback report {rb.id}` has all of it"
            parts = [*parts[: REPLY_PARTS_MAX - 1], shorten(rest, MESSAGE_TEXT_MAX, where)]
        for index, part in enumerate(parts):
            await self.client.chat_postMessage(
                channel=rb.channel_id,
                thread_ts=rb.thread_ts,
                text=part,
                reply_broadcast=broadcast and index == 0,
            )

    # -- Reporter: queued in the outbox, so the engine never waits on Slack ------------

    async def progress(self, rollback: Rollback, text: str) -> None:
        """Queue a step for the thread's progress reply and the card, both paced."""

        async def redraw(rb: Rollback, last_step: str) -> None:
            # An ended run's card is redrawn with its outcome, after the outcome is posted.
            if rb.state not in FINAL_STATES:
                await self.update_card(rb, last_step=last_step)

        self.live.add(rollback.id, text, redraw)

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        """Queue the verification table for the thread."""
        ok = all(r.ok for r in results)
        head = ":white_check_mark: Verification passed" if ok else ":x: Verification failed"
        text = f"{head}\n```\n{escape(render_table(results))}\n```"
        # A graph link is too long for a table cell; each goes on its own line below it.
        links = [
            f"<{redact(r.link).replace('&', '&amp;')}|{escape(r.name)}: graph>"
            for r in results
            if r.link
        ]
        if links:
            text += "\n" + "\n".join(links)

        async def post() -> None:
            await self.reply(await self.engine.get(rollback.id), text)

        self.outbox.send(rollback.id, post)

    async def finished(self, rollback: Rollback, summary: str) -> None:
        """Queue the outcome for the thread and the channel, the card and the hooks."""

        async def post() -> None:
            await self.live.end(rollback.id)
            await self.tell_finished(rollback, summary)

        self.outbox.send(rollback.id, post, redraws=True)

    async def on_moved(self, event: Moved) -> None:
        """Subscriber: announce what rollbot decided on its own (expired, taken over).

        People's clicks and commands are answered by their handlers, and a run's outcome by
        this thread as the run's Reporter; the sweeper has neither, so its transitions are
        shown here, queued like the rest: card, a line in the thread, then the hooks.
        """
        if event.trigger not in ANNOUNCED_HERE:
            return
        rb = event.rollback

        async def announce() -> None:
            where = f" State now: {escape(rb.target_state)}." if rb.target_state else ""
            await self.update_card(rb)
            await self.reply(rb, f":hourglass: {escape(rb.error or rb.state.label)}{where}")
            await self.hooks.moved(rb)

        self.outbox.send(rb.id, announce, redraws=True)

    def later(self, rollback: Rollback, call: Callable[[], Awaitable[None]]) -> None:
        """Queue other Slack work for a rollback, in order with its reports."""
        self.outbox.send(rollback.id, call)

    async def tell_finished(self, rollback: Rollback, summary: str) -> None:
        """Post the outcome in the thread and the channel; redraw the card; run the hooks."""
        rb = await self.engine.get(rollback.id)
        await self.reply(rb, summary, broadcast=True)
        channel = self.engine.config.slack.notification_channel
        if rb.state is State.SUCCEEDED and channel and channel != rb.channel_id:
            await self.client.chat_postMessage(channel=channel, text=summary)
        await self.update_card(rb)
        if rb.state is State.FAILED and rb.channel_id and rb.thread_ts:
            await self.client.chat_postMessage(
                channel=rb.channel_id,
                thread_ts=rb.thread_ts,
                text=f"What now for rollback {rb.id}? Retry, restore the database or fix forward.",
                blocks=failure_options(rb),
            )
        await self.hooks.moved(rb)

    async def close_options(self, channel: str, ts: str, text: str) -> None:
        """Replace the buttons of a failure's options with what was chosen."""
        await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=[])
