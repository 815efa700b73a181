"""A rollback's progress in its thread: one message, edited as steps come, not one per step.

A provider that polls reports a line every second or so; a reply per line buried the
thread and ran into chat.postMessage's one-message-a-second limit. The lines are kept
here and shown in one reply that the outbox edits at most once every `every` seconds
(latest state wins; the last state is sent before anything queued after it). The audit
log keeps every line whatever Slack shows. The reply's ts is kept in the store with the
card's, so a replica that takes a run over edits the same reply instead of starting one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from slack_sdk.web.async_client import AsyncWebClient

from bot.models import Rollback
from bot.text import escape
from handlers.outbox import Outbox

log = structlog.get_logger(__name__)

# Slack asks apps to edit a message no more than about once a second per channel (Tier 3
# chat.update, 1 message/s chat.postMessage); every few seconds keeps a thread readable.
PROGRESS_EDIT_SECONDS = 3.0
# Well under Slack's 40,000 characters: long text is cut in the client anyway.
PROGRESS_TEXT_MAX = 3_500
PREFIX = ":gear: "

Card = Callable[[Rollback, str], Awaitable[None]]
Remember = Callable[[str, str | None], Awaitable[None]]


def render(lines: list[str], limit: int = PROGRESS_TEXT_MAX) -> str:
    """The message for these lines: all of them, or the first and the latest that fit."""
    shown = [PREFIX + escape(line) for line in lines]
    text = "\n".join(shown)
    if len(text) <= limit:
        return text
    head, tail = shown[0], list[str]()
    budget = limit - len(head) - 80
    for line in reversed(shown[1:]):
        if len(line) + 1 > budget:
            break
        tail.insert(0, line)
        budget -= len(line) + 1
    skipped = len(shown) - 1 - len(tail)
    gap = f"… {skipped} more step(s) in between: the audit log and the incident report keep all"
    return "\n".join([head[: limit // 2], gap, *tail])


class LiveProgress:
    """Per rollback: the lines reported, and the thread reply that shows them."""

    def __init__(
        self,
        client: AsyncWebClient,
        outbox: Outbox,
        lookup: Callable[[str], Awaitable[Rollback]],
        remember: Remember,
        *,
        every: float = PROGRESS_EDIT_SECONDS,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.lookup = lookup
        self.remember = remember
        self.every = every
        self._lines: dict[str, list[str]] = {}
        self._ts: dict[str, str] = {}

    def add(self, rollback_id: str, text: str, card: Card | None = None) -> None:
        """Keep a line and ask the outbox to show the latest lines (and redraw the card)."""
        self._lines.setdefault(rollback_id, []).append(text)

        async def show() -> None:
            rb = await self.lookup(rollback_id)
            await self.show(rb)
            if card is not None:
                await card(rb, self._lines[rollback_id][-1])

        self.outbox.latest(rollback_id, show, every=self.every)

    async def show(self, rb: Rollback) -> None:
        """Post the progress reply, or edit it to show every line kept so far."""
        lines = self._lines.get(rb.id)
        if not (lines and rb.channel_id and rb.thread_ts):
            return
        text = render(lines)
        ts = self._ts.get(rb.id) or rb.progress_ts
        if ts is None:
            response = await self.client.chat_postMessage(
                channel=rb.channel_id, thread_ts=rb.thread_ts, text=text
            )
            self._ts[rb.id] = str(response["ts"])
            await self.remember(rb.id, self._ts[rb.id])
        else:
            self._ts[rb.id] = ts
            await self.client.chat_update(channel=rb.channel_id, ts=ts, text=text)

    async def end(self, rollback_id: str) -> None:
        """Forget a run's lines once its outcome is sent; a retry starts a new message."""
        self._lines.pop(rollback_id, None)
        had = self._ts.pop(rollback_id, None)
        self.outbox.forget(rollback_id)
        if had is None:
            return
        try:
            await self.remember(rollback_id, None)
        except Exception as exc:
            # The outcome matters more; a retry would then edit this run's reply.
            log.warning("progress reply not forgotten", rollback_id=rollback_id, error=str(exc))
