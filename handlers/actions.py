"""Buttons, the decision-matrix select and the reason modal."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import Engine
from bot.errors import ChangedSinceShown, InvalidRequest, Purpose, ReasonRequired, UsageError
from bot.models import State, StepStatus
from bot.text import escape, mention
from handlers.blocks import reason_modal
from handlers.errors import acked, report
from handlers.flow import advance, run_approved
from handlers.ids import REASON_INPUT, ActionId, BlockId, CallbackId
from handlers.restores import confirm_restore_by_break_glass, offer_restore
from handlers.thread import SlackThread


def _selected_issue(body: dict[str, Any]) -> str | None:
    values = (body.get("state") or {}).get("values") or {}
    for block_id, inputs in values.items():
        if block_id.startswith(BlockId.MATRIX):
            choice = (inputs.get(ActionId.ISSUE_SELECT) or {}).get("selected_option")
            if choice:
                return str(choice["value"])
    return None


def _rollback_id(body: dict[str, Any]) -> str:
    action = body["actions"][0]
    if action.get("value"):
        return str(action["value"])
    return str(action["block_id"]).split(":", 1)[1]


def register(app: AsyncApp, engine: Engine, thread: SlackThread) -> None:
    """Register the interactive listeners."""

    async def open_reason(
        client: AsyncWebClient,
        trigger_id: str,
        rollback_id: str,
        asked: ReasonRequired,
        extra: dict[str, str],
    ) -> None:
        view = reason_modal(rollback_id, asked.purpose, asked.message, extra)
        await client.views_open(trigger_id=trigger_id, view=view)

    @app.action(ActionId.ISSUE_SELECT)
    @acked
    async def on_issue_select(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        rb = await engine.get(_rollback_id(body))
        if rb.state is State.REQUESTED:
            await thread.update_card(rb, preview_issue=_selected_issue(body))

    @app.action(ActionId.CONFIRM_SEVERITY)
    @acked
    async def on_confirm(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        user, rollback_id = body["user"]["id"], _rollback_id(body)
        issue = _selected_issue(body)
        if issue is None:
            raise UsageError("Pick the issue type from the decision matrix first.")
        try:
            rb = await engine.confirm_severity(rollback_id, issue, user)
        except ReasonRequired as asked:
            await open_reason(client, body["trigger_id"], rollback_id, asked, {"issue": issue})
            return
        await advance(engine, thread, rb, user)

    async def approve(body: dict[str, Any], client: AsyncWebClient, danger: bool) -> None:
        user, rollback_id = body["user"]["id"], _rollback_id(body)
        try:
            rb = await engine.approve(rollback_id, user, danger_confirmed=danger)
        except ReasonRequired as asked:
            extra = {"danger": "confirmed"} if danger else {}
            await open_reason(client, body["trigger_id"], rollback_id, asked, extra)
            return
        except ChangedSinceShown:
            # The engine made the plan again: the card shows what runs now, then the refusal.
            await thread.update_card(await engine.get(rollback_id))
            raise
        await advance(engine, thread, rb, user)

    @app.action(ActionId.APPROVE)
    @acked
    async def on_approve(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        await approve(body, client, danger=False)

    @app.action(ActionId.APPROVE_DANGER)
    @acked
    async def on_approve_danger(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        # The button's Slack confirm dialog named what gets deleted: that click is the
        # explicit confirmation the engine asks for.
        await approve(body, client, danger=True)

    @app.action(ActionId.RETRY_STEP)
    @acked
    async def on_retry(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        user = body["user"]["id"]
        rb = await engine.retry(_rollback_id(body), user)
        chosen = f"Retry chosen by {mention(user)}."
        await thread.close_options(body["channel"]["id"], body["container"]["message_ts"], chosen)
        index = next((i for i, s in enumerate(rb.steps) if s.status is StepStatus.PENDING), 0)
        name = rb.steps[index].name if rb.steps else rb.service
        await run_approved(
            engine,
            thread,
            rb,
            f":repeat: Retry by {mention(user)}: running again from step {index + 1} ({name}); "
            "steps already done are not run again.",
        )

    @app.action(ActionId.ROLLBACK_AGAIN)
    @acked
    async def on_rollback_again(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        # A frozen service drifted: request the rollback to the frozen version again, as
        # the person who clicked (the request goes through the same checks and card).
        frozen = await engine.get(_rollback_id(body))
        requested = await engine.request(
            service=frozen.service,
            version=frozen.target_version,
            environment=frozen.environment,
            user=body["user"]["id"],
            channel_id=frozen.channel_id,
        )
        rb = await thread.post_card(requested, frozen.channel_id or body["channel"]["id"])
        await thread.hooks.moved(rb)

    @app.action(ActionId.UNFREEZE)
    @acked
    async def on_unfreeze(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        frozen = await engine.get(_rollback_id(body))
        user = body["user"]["id"]
        rb, said = await engine.unfreeze(frozen.service, frozen.environment, user)
        await thread.reply(rb, f":unlock: {escape(said)}")
        await thread.update_card(rb)

    @app.action(ActionId.RESTORE_DATABASE)
    @acked
    async def on_restore_database(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        rb = await engine.get(_rollback_id(body))
        if not (rb.channel_id and rb.thread_ts):
            raise InvalidRequest(f"Rollback {rb.id} has no thread to offer the restore in.")
        # The offer carries its own, second confirmation; the options stay until then.
        await offer_restore(
            engine,
            client,
            rb.channel_id,
            body["user"]["id"],
            "database",
            rb.service,
            rb.environment,
            thread_ts=rb.thread_ts,
        )

    @app.action(ActionId.FIX_FORWARD)
    @acked
    async def on_fix_forward(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        user = body["user"]["id"]
        rb = await engine.decide_fix_forward(_rollback_id(body), user)
        text = (
            f":wrench: {mention(user)} decided to fix forward: {rb.service}/{rb.environment} "
            "stays as it is now; keep the incident open until the fix is deployed."
        )
        await thread.close_options(body["channel"]["id"], body["container"]["message_ts"], text)
        await thread.reply(rb, text)

    @app.action(ActionId.REJECT)
    @acked
    async def on_reject(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        user = body["user"]["id"]
        rb = await engine.reject(_rollback_id(body), user)
        await advance(engine, thread, rb, user)

    @app.action(ActionId.CANCEL)
    @acked
    async def on_cancel(body: dict[str, Any], client: AsyncWebClient, _: Any) -> None:
        user = body["user"]["id"]
        rb = await engine.cancel(_rollback_id(body), user)
        await advance(engine, thread, rb, user)

    @app.view(CallbackId.REASON)
    async def on_reason(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        reason = (view["state"]["values"][BlockId.REASON][REASON_INPUT].get("value") or "").strip()
        if len(reason) < 5:
            await ack(
                response_action="errors",
                errors={BlockId.REASON: "Write at least a few words; it is recorded."},
            )
            return
        await ack()
        meta = json.loads(view["private_metadata"])
        user = body["user"]["id"]
        if meta["purpose"] == Purpose.RESTORE_BREAK_GLASS:
            try:
                await confirm_restore_by_break_glass(engine, client, user, meta, reason)
            except Exception as exc:
                await report(exc, body, None, client, meta.get("channel"))
            return
        rb = await engine.get(meta["rollback_id"])
        try:
            if meta["purpose"] == Purpose.OVERRIDE:
                rb = await engine.confirm_severity(
                    rb.id, meta["issue"], user, override_reason=reason
                )
            elif meta["purpose"] in (Purpose.BREAK_GLASS, Purpose.PREFLIGHT):
                rb = await engine.approve(
                    rb.id,
                    user,
                    break_glass_reason=reason,
                    danger_confirmed=meta.get("danger") == "confirmed",
                )
            else:
                raise InvalidRequest("Unknown reason form.")
            await advance(engine, thread, rb, user)
        except Exception as exc:
            # A view submission has no response_url: answer in the rollback's channel.
            await report(exc, body, None, client, rb.channel_id)
