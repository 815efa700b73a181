"""The live timeline: one reply at the top of a rollback's thread, redrawn after every move."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import Engine
from bot.incident import durations
from bot.models import Rollback
from bot.text import escape, mention, quote_user_text
from bot.timeline import Entry, Timeline, build
from handlers.blocks import MAX_BLOCKS, dump

# Slack allows 3000 characters per section text and 50 blocks per message; a long
# provider log is cut down to its last steps (the incident report keeps them all).
SECTION_CHARS = 3000
MAX_LINE_CHARS = 500
MAX_STEP_LINES = 8


def _line(timeline: Timeline, entry: Entry) -> str:
    what: str = escape(entry.what)
    what = f"*{what}*" if entry.milestone else what
    shown = quote_user_text if entry.typed else escape
    detail = f": {shown(entry.detail)}" if entry.detail else ""
    line = f"`{timeline.clock(entry.at)}` {what}{detail} · {mention(entry.actor)}"
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"


def timeline_lines(timeline: Timeline) -> list[str]:
    """Return one mrkdwn line per entry, provider steps beyond the last few summed up."""
    steps = [i for i, entry in enumerate(timeline.entries) if entry.is_step]
    hidden = set(steps[:-MAX_STEP_LINES]) if len(steps) > MAX_STEP_LINES else set()
    lines = []
    for index, entry in enumerate(timeline.entries):
        if index not in hidden:
            lines.append(_line(timeline, entry))
        elif index == min(hidden):
            lines.append(
                f"`{timeline.clock(entry.at)}` _{len(steps)} provider steps; the last "
                f"{MAX_STEP_LINES} are below, the incident report lists them all_"
            )
    return lines


def timeline_blocks(rollback: Rollback, timeline: Timeline) -> list[dict[str, Any]]:
    """Build the timeline message: the lines in sections of Slack's size, then the durations."""
    room = MAX_BLOCKS - 2  # one block for the durations, one for a "more lines" note
    sections: list[str] = [f"*Timeline* of rollback `{rollback.id}` (UTC)"]
    lines = timeline_lines(timeline)
    for count, line in enumerate(lines):
        if len(sections[-1]) + 1 + len(line) <= SECTION_CHARS:
            sections[-1] += "\n" + line
        elif len(sections) < room:
            sections.append(line)
        else:
            sections.append(f"_… {len(lines) - count} more lines in the incident report_")
            break
    spans = " · ".join(f"{label}: {value}" for label, value in durations(rollback, timeline))
    blocks: list[Block] = [
        *(SectionBlock(text=MarkdownTextObject(text=text)) for text in sections),
        ContextBlock(elements=[MarkdownTextObject(text=spans)]),
    ]
    return dump(blocks)


class KeyedLocks:
    """One asyncio lock per rollback id, forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock


class LiveTimeline:
    """Posts the timeline reply once and updates it; its ts is kept on the rollback."""

    def __init__(self, client: AsyncWebClient, engine: Engine) -> None:
        self.client = client
        self.engine = engine
        # One redraw at a time per rollback, so two moves never post two timelines.
        self._lock = KeyedLocks()

    async def refresh(self, rollback: Rollback) -> None:
        """Show the timeline so far in the rollback's thread (a hook listener)."""
        async with self._lock(rollback.id):
            rb = await self.engine.get(rollback.id)
            if not (rb.channel_id and rb.thread_ts):
                return
            timeline = build(rb, await self.engine.records.events(rb.id))
            blocks = timeline_blocks(rb, timeline)
            text = f"Timeline of rollback {rb.id}: {escape(timeline.entries[-1].what)}"
            if rb.timeline_ts:
                try:
                    await self.client.chat_update(
                        channel=rb.channel_id, ts=rb.timeline_ts, text=text, blocks=blocks
                    )
                    return
                except SlackApiError as exc:
                    if exc.response.get("error") != "message_not_found":
                        raise
                    # Someone deleted it: post it again below.
            posted = await self.client.chat_postMessage(
                channel=rb.channel_id, thread_ts=rb.thread_ts, text=text, blocks=blocks
            )
            await self.engine.rollbacks.update(rb.id, timeline_ts=str(posted["ts"]))
