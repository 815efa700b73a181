"""Restore offers: a message with the plan and a confirmed "Restore now", and its thread."""

from __future__ import annotations

from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp, AsyncRespond
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import Kind
from bot.engine import Engine
from bot.errors import ReasonRequired
from bot.restores import RestoreFailed, RestorePlan, RestoreRequest, Restores
from bot.text import escape, mention, quote_user_text
from handlers.blocks import dump, reason_modal
from handlers.errors import acked
from handlers.ids import ActionId

log = structlog.get_logger(__name__)


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:3000])


def _headline(request: RestoreRequest) -> str:
    return f"*Restore {request.label}* from backup `{request.backup}`"


def offer_blocks(plan: RestorePlan) -> list[dict[str, Any]]:
    """The offer: what will happen, "Restore now" behind a confirmation, and Cancel."""
    value = plan.request.to_json()
    target = plan.target
    if target.kind == "database":
        consequence = "its current state is backed up first"
    else:
        consequence = "keys are put back with their TTLs, overwriting keys of the same name"
    confirm = ConfirmObject(
        title=f"Restore {target.label}?"[:100].replace("`", ""),
        text=(f"{target.label} will be restored from backup `{plan.backup.name}`; {consequence}.")[
            :300
        ],
        confirm="Restore",
        deny="Keep as is",
        style="danger",
    )
    blocks: list[Block] = [
        SectionBlock(text=_md(plan.text)),
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="Restore now",
                    action_id=ActionId.RESTORE_CONFIRM,
                    value=value,
                    style="danger",
                    confirm=confirm,
                ),
                ButtonElement(text="Cancel", action_id=ActionId.RESTORE_CANCEL, value=value),
            ]
        ),
        ContextBlock(elements=[_md(f"Restore `{plan.request.id}`")]),
    ]
    return dump(blocks)


def decided_blocks(request: RestoreRequest, line: str) -> list[dict[str, Any]]:
    """The offer once answered: no buttons, who answered and what came of it."""
    blocks: list[Block] = [
        SectionBlock(text=_md(f"{_headline(request)}\n{line}")),
        ContextBlock(elements=[_md(f"Restore `{request.id}`")]),
    ]
    return dump(blocks)


async def offer_restore(
    engine: Engine,
    client: AsyncWebClient,
    channel: str,
    user: str,
    kind: Kind,
    service: str | None,
    environment: str | None,
    backup: str | None = None,
    thread_ts: str | None = None,
) -> None:
    """Post a restore offer in a channel (or a thread) for an approver to confirm."""
    plan = await Restores(engine).prepare(kind, service, backup, environment, user)
    await client.chat_postMessage(
        channel=channel, thread_ts=thread_ts, text=escape(plan.summary), blocks=offer_blocks(plan)
    )


class _Offer:
    """The message of one offer and its thread, as a click (or the reason form) found them."""

    def __init__(
        self,
        client: AsyncWebClient,
        user: str,
        request: RestoreRequest,
        channel: str,
        ts: str,
        thread_ts: str,
    ) -> None:
        self.client = client
        self.user = user
        self.request = request
        self.channel = channel
        self.ts = ts
        self.thread_ts = thread_ts

    @classmethod
    def clicked(cls, client: AsyncWebClient, body: dict[str, Any]) -> _Offer:
        """Read the offer from a click on one of its buttons."""
        ts = str(body["container"]["message_ts"])
        return cls(
            client,
            str(body["user"]["id"]),
            RestoreRequest.from_json(str(body["actions"][0].get("value") or "")),
            str((body.get("channel") or {}).get("id") or body["container"]["channel_id"]),
            ts,
            # An offer made inside a thread (a failed rollback's) answers in that thread.
            str((body.get("message") or {}).get("thread_ts") or ts),
        )

    @classmethod
    def reasoned(cls, client: AsyncWebClient, user: str, meta: dict[str, str]) -> _Offer:
        """Read the offer back from the break-glass reason form's metadata."""
        return cls(
            client,
            user,
            RestoreRequest.from_json(meta["request"]),
            meta["channel"],
            meta["ts"],
            meta["thread_ts"],
        )

    def metadata(self) -> dict[str, str]:
        """What the reason form carries to find the offer again."""
        return {
            "request": self.request.to_json(),
            "channel": self.channel,
            "ts": self.ts,
            "thread_ts": self.thread_ts,
        }

    async def reply(self, text: str, *, broadcast: bool = False) -> None:
        await self.client.chat_postMessage(
            channel=self.channel, thread_ts=self.thread_ts, text=text, reply_broadcast=broadcast
        )

    async def show(self, line: str) -> None:
        await self.client.chat_update(
            channel=self.channel,
            ts=self.ts,
            text=f"Restore of {self.request.label} from {self.request.backup}: {line}",
            blocks=decided_blocks(self.request, line),
        )


def register(app: AsyncApp, engine: Engine) -> None:
    """Register the listeners of the restore offer's buttons."""

    @app.action(ActionId.RESTORE_CONFIRM)
    @acked
    async def on_restore(body: dict[str, Any], client: AsyncWebClient, _: AsyncRespond) -> None:
        offer = _Offer.clicked(client, body)
        try:
            await confirm_restore(engine, offer)
        except ReasonRequired as asked:
            view = reason_modal(offer.request.id, asked.purpose, asked.message, offer.metadata())
            await client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action(ActionId.RESTORE_CANCEL)
    @acked
    async def on_cancel(body: dict[str, Any], client: AsyncWebClient, _: AsyncRespond) -> None:
        offer = _Offer.clicked(client, body)
        await Restores(engine).cancel(offer.request, offer.user)
        await offer.show(
            f":no_entry_sign: Cancelled by {mention(offer.user)}; nothing was changed."
        )


async def confirm_restore(engine: Engine, offer: _Offer, break_glass: str | None = None) -> None:
    """Run a confirmed restore and tell its thread how it went."""
    restores = Restores(engine)
    plan = await restores.reload(offer.request)
    who = mention(offer.user)
    began = False

    async def progress(text: str) -> None:
        await offer.reply(f":gear: {escape(text)}")

    async def started() -> None:
        nonlocal began
        began = True
        glass = (
            f" by break-glass, without a second person: {quote_user_text(break_glass)}"
            if break_glass
            else ""
        )
        # The restore runs whether or not Slack shows it; the audit log records it.
        try:
            await offer.show(f":arrows_counterclockwise: Confirmed by {who}{glass}; restoring now…")
            await offer.reply(
                f":rocket: Restore confirmed by {who}{glass}. {escape(plan.summary)}.",
                broadcast=bool(break_glass),
            )
        except Exception as exc:
            log.warning("slack unavailable before restoring", error=type(exc).__name__)

    try:
        outcome = await restores.run(
            plan, offer.user, progress, started=started, break_glass_reason=break_glass
        )
    except RestoreFailed as failed:
        state = escape(failed.target_state)
        await offer.reply(
            f":red_circle: {escape(failed.message)}\n*State now:* {state}", broadcast=True
        )
        await offer.show(f":red_circle: Confirmed by {who}; the restore failed. See the thread.")
        return
    except Exception:
        if began:
            await offer.show(
                f":warning: Confirmed by {who}; the restore stopped on an unexpected error."
            )
        raise
    lines = [f":large_green_circle: {escape(outcome.summary)}"]
    lines += [f"• {escape(note)}" for note in outcome.notes]
    await offer.reply("\n".join(lines), broadcast=True)
    await offer.show(f":large_green_circle: Confirmed by {who}. {escape(outcome.summary)}")


async def confirm_restore_by_break_glass(
    engine: Engine, client: AsyncWebClient, user: str, meta: dict[str, str], reason: str
) -> None:
    """Run a restore its requester confirms alone, from the break-glass reason form."""
    await confirm_restore(engine, _Offer.reasoned(client, user, meta), reason)
