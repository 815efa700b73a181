"""The checklist message in a rollback's thread: Block Kit checkboxes, redrawn from the store."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp, AsyncRespond
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    CheckboxesElement,
    ContextBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.checklists import ITEMS, ChecklistItem, ChecklistSection, apply_ticks, checklist_sections
from bot.engine import Engine
from bot.errors import InvalidRequest
from bot.models import FINAL_STATES, Rollback, State
from bot.names import ROLLBACK_ID_PATTERN
from bot.notifications import BOT
from bot.records import Delivery
from bot.text import escape, mention
from handlers.blocks import dump
from handlers.errors import acked
from handlers.ids import ActionId, BlockId
from handlers.thread import SlackThread

log = structlog.get_logger(__name__)

KEY = "checklist"
DESCRIPTION_MAX = 75
HINTS = {
    "database_backup": "rollbot ticks this when a step writes a backup",
    "execute": "rollbot ticks this once every step has run",
    "services_healthy": "rollbot ticks this when the verification passes",
    "smoke_tests": "rollbot ticks this when the verification checks pass",
    "monitor": "rollbot ticks this when its monitoring window ends",
    "status_page": "rollbot ticks this when the status page takes “resolved”",
}
DID_NOT_RUN = {State.CANCELLED, State.REJECTED, State.EXPIRED}


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:3000])


def _description(item: ChecklistItem, hints: dict[str, str]) -> str | None:
    if item.done and item.at is not None:
        who = BOT if item.by == BOT else mention(item.by or "?")
        note = f" · {escape(item.note)}" if item.note else ""
        text = f"by {who} · {item.at:%H:%M} UTC{note}"
        return text if len(text) <= DESCRIPTION_MAX else text[: DESCRIPTION_MAX - 1] + "…"
    return hints.get(item.key)


def _option(item: ChecklistItem, hints: dict[str, str]) -> Option:
    description = _description(item, hints)
    return Option(
        value=item.key,
        text=_md(item.label),
        description=_md(description) if description else None,
    )


def checklist_blocks(
    rb: Rollback, sections: list[ChecklistSection], hints: dict[str, str]
) -> list[dict[str, Any]]:
    """Build the checklist message: one title and one checkboxes element per phase."""
    # A new block_id on every redraw: Slack clients keep a checkbox's local state when
    # only initial_options change, so a refused untick would otherwise stay unticked.
    nonce = secrets.token_hex(3)
    blocks: list[Block] = [
        SectionBlock(
            text=_md(
                "*Rollback checklist* (from the rollback guide). rollbot ticks what it did "
                "itself; tick what you did."
            )
        )
    ]
    for section in sections:
        options = [_option(item, hints) for item in section.items]
        done = [option for option, item in zip(options, section.items, strict=True) if item.done]
        blocks += [
            SectionBlock(text=_md(f"*{section.title}*")),
            ActionsBlock(
                block_id=f"{BlockId.CHECKLIST}:{rb.id}:{section.key}:{nonce}",
                elements=[
                    CheckboxesElement(
                        action_id=ActionId.CHECKLIST, options=options, initial_options=done or None
                    )
                ],
            ),
        ]
    items = [item for section in sections for item in section.items]
    footer = f"Rollback `{rb.id}` · {sum(i.done for i in items)} of {len(items)} done"
    if rb.state in DID_NOT_RUN:
        footer += f" · the rollback was {rb.state.label}, nothing ran"
    elif rb.state in FINAL_STATES:
        footer += f" · rollback {rb.state.label}"
    blocks.append(ContextBlock(elements=[_md(footer)]))
    return dump(blocks)


class ChecklistMessage:
    """Posts a rollback's checklist once and redraws it from the store on every change."""

    def __init__(self, client: AsyncWebClient, engine: Engine) -> None:
        self.client = client
        self.engine = engine
        # Redraws of one rollback run one at a time, so an older state never lands last.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def _hints(self) -> dict[str, str]:
        if self.engine.config.notifications.status_page is None:
            return {k: v for k, v in HINTS.items() if k != "status_page"}
        return HINTS

    async def refresh(self, rollback: Rollback) -> None:
        """Post the checklist in the thread if it is not there yet, else redraw it."""
        rb = await self.engine.get(rollback.id)
        if rb.dry_run or not (rb.channel_id and rb.thread_ts):
            return
        async with self._locks[rb.id]:
            blocks = checklist_blocks(
                rb,
                await checklist_sections(self.engine.rollbacks, self.engine.records, rb.id),
                self._hints(),
            )
            text = f"Rollback checklist for {rb.id}"
            posted = await self.engine.deliveries.delivery(rb.id, KEY)
            if posted is not None:
                if posted.channel and posted.ts:
                    await self.client.chat_update(
                        channel=posted.channel, ts=posted.ts, text=text, blocks=blocks
                    )
                return  # claimed by another process that is posting it now
            claim = Delivery(rollback_id=rb.id, key=KEY, actor=BOT, channel=rb.channel_id)
            if not await self.engine.deliveries.claim_delivery(claim):
                return
            try:
                response = await self.client.chat_postMessage(
                    channel=rb.channel_id, thread_ts=rb.thread_ts, text=text, blocks=blocks
                )
            except BaseException:
                await self.engine.deliveries.release_delivery(rb.id, KEY)
                raise
            await self.engine.deliveries.update_delivery(
                rb.id, KEY, channel=str(response["channel"]), ts=str(response["ts"])
            )


def _target(body: dict[str, Any]) -> tuple[str, str]:
    """Return the rollback id and phase a checkboxes click names in its block_id."""
    parts = str(body["actions"][0].get("block_id", "")).split(":")
    if len(parts) != 4 or not ROLLBACK_ID_PATTERN.fullmatch(parts[1]):
        raise InvalidRequest("That checklist is not one rollbot knows.")
    return parts[1], parts[2]


def register(app: AsyncApp, engine: Engine, thread: SlackThread) -> ChecklistMessage:
    """Post and redraw checklists after each transition; record people's ticks."""
    message = ChecklistMessage(thread.client, engine)
    thread.hooks.add(message.refresh)

    @app.action(ActionId.CHECKLIST)
    @acked
    async def on_checklist(
        body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        rollback_id, phase = _target(body)
        action = body["actions"][0]
        chosen = {str(o.get("value")) for o in action.get("selected_options") or []}
        try:
            applied = await apply_ticks(
                engine, rollback_id, body["user"]["id"], phase, chosen & set(ITEMS)
            )
        finally:
            # Whatever was refused, the message goes back to what the store holds.
            await message.refresh(await engine.get(rollback_id))
        if applied.refused:
            names = ", ".join(f"“{item.label}”" for item in applied.refused)
            await respond(
                text=f"rollbot ticked {names} itself, from what it recorded; "
                "a tick by rollbot cannot be removed.",
                response_type="ephemeral",
                replace_original=False,
            )

    return message
