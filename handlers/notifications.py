"""The user-notification draft in the thread (Post, Edit) and the status-page updates."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import Engine
from bot.errors import Conflict, InvalidRequest, NotAllowed
from bot.models import AuditEntry, Rollback, State
from bot.names import ROLLBACK_ID_PATTERN
from bot.notifications import (
    BOT,
    USER_NOTIFICATION_EVENT,
    PageStatus,
    announce,
    user_notification,
)
from bot.records import Delivery
from bot.states import Who
from bot.text import escape, inert, mention
from handlers.blocks import dump
from handlers.errors import acked, report
from handlers.hooks import Listener
from handlers.ids import NOTIFICATION_INPUT, ActionId, BlockId, CallbackId
from handlers.thread import SlackThread

log = structlog.get_logger(__name__)

DRAFT = "user_notification"
POSTED = "user_notification:posted"
TEXT_MAX = 2900
TEXT_MIN = 10


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:3000])


def _quoted(text: str) -> str:
    return "\n".join(f">{line}" for line in inert(text).splitlines())


def draft_blocks(
    rb: Rollback,
    text: str,
    channel: str | None,
    channel_name: str | None,
    posted: Delivery | None = None,
) -> list[dict[str, Any]]:
    """Build the draft message: the text, where it goes, and Post/Edit (or who posted it)."""
    footer = f"Rollback `{rb.id}`"
    if posted is not None:
        head = f":white_check_mark: *User notification posted* to <#{posted.channel}>."
        footer = f"Posted by {mention(posted.actor)} at {posted.at:%H:%M} UTC · {footer}"
    elif channel:
        head = (
            ":memo: *DRAFT: user notification, not posted yet.* Check it, edit it if "
            f"needed, then post it to <#{channel}>."
        )
    else:
        head = (
            ":memo: *DRAFT: user notification, not posted.* No `notifications.user_channel` "
            "is configured, so rollbot cannot post it: copy it to wherever your users read "
            "service updates (status page, email)."
        )
    blocks: list[Block] = [
        SectionBlock(block_id=f"{BlockId.USER_NOTIFICATION}:{rb.id}", text=_md(head)),
        SectionBlock(text=_md(_quoted(text))),
    ]
    if posted is None:
        buttons = []
        if channel:
            where = f"#{channel_name}" if channel_name else "the users' channel"
            buttons.append(
                ButtonElement(
                    text=f"Post to {where}"[:75],
                    action_id=ActionId.POST_USER_NOTIFICATION,
                    value=rb.id,
                    style="primary",
                    confirm=ConfirmObject(
                        title="Post to users?",
                        text=f"Post this notification to {where} now? Everyone there sees it."[
                            :300
                        ],
                        confirm="Post",
                        deny="Not yet",
                    ),
                )
            )
        buttons.append(
            ButtonElement(text="Edit", action_id=ActionId.EDIT_USER_NOTIFICATION, value=rb.id)
        )
        blocks.append(ActionsBlock(elements=buttons))
    blocks.append(ContextBlock(elements=[_md(footer)]))
    return dump(blocks)


def edit_modal(rollback_id: str, text: str) -> View:
    """Build the modal that edits the draft, prefilled with its text."""
    return View(
        type="modal",
        callback_id=CallbackId.USER_NOTIFICATION,
        title=PlainTextObject(text="User notification"),
        submit=PlainTextObject(text="Save draft"),
        close=PlainTextObject(text="Back"),
        private_metadata=rollback_id,
        blocks=[
            InputBlock(
                block_id=BlockId.USER_NOTIFICATION,
                label=PlainTextObject(text="Text, as users will read it"),
                element=PlainTextInputElement(
                    action_id=NOTIFICATION_INPUT,
                    multiline=True,
                    initial_value=text[:TEXT_MAX],
                    min_length=TEXT_MIN,
                    max_length=TEXT_MAX,
                ),
            )
        ],
    )


def _rollback_id(value: object) -> str:
    text = str(value or "")
    if not ROLLBACK_ID_PATTERN.fullmatch(text):
        raise InvalidRequest("That notification is not one rollbot knows.")
    return text


async def may_post(engine: Engine, rb: Rollback, user: str) -> bool:
    """Return True for the requester and the approvers of the rollback."""
    return await engine.access.may(Who.REQUESTER_OR_APPROVER, rb, user)


class Notifications:
    """Offers the user notification as a draft and tells the status page, once each."""

    def __init__(
        self,
        client: AsyncWebClient,
        engine: Engine,
        thread: SlackThread,
        on_status: Listener | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.thread = thread
        self.on_status = on_status  # told after a status was sent, e.g. to redraw the checklist
        self._order: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def channel(self) -> str | None:
        """The users' channel the draft's Post button posts to."""
        return self.engine.config.notifications.user_channel

    async def moved(self, rb: Rollback) -> None:
        """Tell the status page; offer the draft once a rollback succeeded."""
        if rb.state in {State.APPROVED, State.RUNNING}:
            self._tell(rb, [PageStatus.INVESTIGATING])
        elif rb.state is State.SUCCEEDED:
            self._tell(rb, [PageStatus.INVESTIGATING, PageStatus.RESOLVED])
            await self.offer_draft(await self.engine.get(rb.id))

    def _tell(self, rb: Rollback, statuses: list[PageStatus]) -> None:
        # Off the rollback's path: a slow status page must not delay the rollback itself.
        if self.engine.config.notifications.status_page is None:
            return
        task = asyncio.ensure_future(self._send(rb, statuses))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, rb: Rollback, statuses: list[PageStatus]) -> None:
        # One rollback's statuses go out in order: "resolved" never overtakes "investigating".
        async with self._order[rb.id]:
            for status in statuses:
                try:
                    announced = await announce(self.engine, rb, status)
                    if announced.failure:
                        await self.thread.reply(
                            rb,
                            f":warning: The status page was not told “{status.value}”: "
                            f"{escape(announced.failure)}. The rollback is not affected; update "
                            "the status page by hand (it stays on the checklist).",
                        )
                    if announced.sent and self.on_status is not None:
                        await self.on_status(rb)
                except Exception:
                    log.exception("status page update failed", rollback_id=rb.id)

    async def offer_draft(self, rb: Rollback) -> None:
        """Post the user notification as a draft in the thread, once."""
        if rb.dry_run or rb.drill or not (rb.channel_id and rb.thread_ts):
            return
        # The requester's own clock, as Slack has it; UTC when unknown.
        text = user_notification(rb, await self.thread.profiles.timezone(rb.requested_by))
        claim = Delivery(rollback_id=rb.id, key=DRAFT, actor=BOT, body=text)
        if not await self.engine.deliveries.claim_delivery(claim):
            return
        try:
            response = await self.client.chat_postMessage(
                channel=rb.channel_id,
                thread_ts=rb.thread_ts,
                text="Draft: user notification",
                blocks=draft_blocks(rb, text, self.channel, await self._channel_name()),
            )
        except BaseException:
            await self.engine.deliveries.release_delivery(rb.id, DRAFT)
            raise
        await self.engine.deliveries.update_delivery(
            rb.id, DRAFT, channel=str(response["channel"]), ts=str(response["ts"])
        )

    async def _channel_name(self) -> str | None:
        if not self.channel:
            return None
        try:
            found = await self.client.conversations_info(channel=self.channel)
        except Exception as exc:
            # Without channels:read the button just says "the users' channel".
            log.info("channel name unknown", error=type(exc).__name__)
            return None
        name = (found.get("channel") or {}).get("name")
        return str(name) if name else None

    async def redraw(self, rb: Rollback) -> None:
        """Redraw the draft from the store: its text, or who posted it and when."""
        draft = await self.engine.deliveries.delivery(rb.id, DRAFT)
        if draft is None or not (draft.channel and draft.ts):
            return
        posted = await self.engine.deliveries.delivery(rb.id, POSTED)
        if posted is not None and posted.ts is None:
            posted = None  # still being posted
        await self.client.chat_update(
            channel=draft.channel,
            ts=draft.ts,
            text="User notification" if posted else "Draft: user notification",
            blocks=draft_blocks(
                rb, draft.body or "", self.channel, await self._channel_name(), posted
            ),
        )

    async def editable(self, rollback_id: str, user: str) -> tuple[Rollback, Delivery]:
        """Return the rollback and its draft if `user` may still change or post it."""
        rb = await self.engine.get(rollback_id)
        if not await may_post(self.engine, rb, user):
            raise NotAllowed(
                "Only the requester or an approver can edit or post this notification."
            )
        draft = await self.engine.deliveries.delivery(rb.id, DRAFT)
        if draft is None or not draft.body:
            raise InvalidRequest(f"Rollback {rb.id} has no user notification draft.")
        posted = await self.engine.deliveries.delivery(rb.id, POSTED)
        if posted is not None:
            raise Conflict(f"The user notification was already posted by {mention(posted.actor)}.")
        return rb, draft

    async def post(self, rollback_id: str, user: str) -> None:
        """Post the draft to the users' channel, once, and show who did."""
        channel = self.channel
        if channel is None:
            raise InvalidRequest("No `notifications.user_channel` is configured to post to.")
        rb, draft = await self.editable(rollback_id, user)
        claim = Delivery(rollback_id=rb.id, key=POSTED, actor=user, channel=channel)
        if not await self.engine.deliveries.claim_delivery(claim):
            raise Conflict("The user notification is already being posted.")
        try:
            response = await self.client.chat_postMessage(
                channel=channel, text=inert(draft.body or "")
            )
        except BaseException:
            await self.engine.deliveries.release_delivery(rb.id, POSTED)
            raise
        await self.engine.deliveries.update_delivery(rb.id, POSTED, ts=str(response["ts"]))
        await self.engine.record(
            rb,
            user,
            USER_NOTIFICATION_EVENT,
            f"User notification posted to <#{channel}> by {mention(user)}",
            channel=channel,
        )
        await self.redraw(rb)

    async def save(self, rollback_id: str, user: str, text: str) -> None:
        """Replace the draft's text with an edited one."""
        rb, _ = await self.editable(rollback_id, user)
        await self.engine.deliveries.update_delivery(rb.id, DRAFT, body=text)
        await self.engine.records.audit(
            AuditEntry(
                actor=user,
                action="user_notification_edited",
                rollback_id=rb.id,
                details={"text": text},
            )
        )
        await self.redraw(rb)


def register(
    app: AsyncApp, engine: Engine, thread: SlackThread, on_status: Listener | None = None
) -> Notifications:
    """Offer drafts and tell the status page after transitions; handle Post and Edit."""
    notifications = Notifications(thread.client, engine, thread, on_status)
    thread.hooks.add(notifications.moved)

    @app.action(ActionId.POST_USER_NOTIFICATION)
    @acked
    async def on_post(body: dict[str, Any], client: AsyncWebClient, _: AsyncRespond) -> None:
        rollback_id = _rollback_id(body["actions"][0].get("value"))
        await notifications.post(rollback_id, body["user"]["id"])

    @app.action(ActionId.EDIT_USER_NOTIFICATION)
    @acked
    async def on_edit(body: dict[str, Any], client: AsyncWebClient, _: AsyncRespond) -> None:
        rollback_id = _rollback_id(body["actions"][0].get("value"))
        _rb, draft = await notifications.editable(rollback_id, body["user"]["id"])
        await client.views_open(
            trigger_id=body["trigger_id"], view=edit_modal(rollback_id, draft.body or "")
        )

    @app.view(CallbackId.USER_NOTIFICATION)
    async def on_save(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        entered = view["state"]["values"][BlockId.USER_NOTIFICATION][NOTIFICATION_INPUT]
        text = (entered.get("value") or "").strip()
        if len(text) < TEXT_MIN:
            await ack(
                response_action="errors",
                errors={BlockId.USER_NOTIFICATION: "Write the notification users will read."},
            )
            return
        await ack()
        rollback_id = _rollback_id(view.get("private_metadata"))
        try:
            await notifications.save(rollback_id, body["user"]["id"], text[:TEXT_MAX])
        except Exception as exc:
            rb = await engine.rollbacks.get(rollback_id)
            await report(exc, body, None, client, rb.channel_id if rb else None)

    return notifications
