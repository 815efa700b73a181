"""A channel of its own for a serious rollback: opened, people invited, the thread moved there.

Once a rollback's severity is confirmed with one of `slack.channel_per_incident.severities`,
rollbot creates a channel named PREFIX-YYYYMMDD-SERVICE-ROLLBACKID (with -2, -3… when the
name is taken), invites the requester, the approvers and the on-call group, posts a copy
of the card there and moves the rollback to it: its card, its approvals and its progress
continue in the new channel, and the original card links to it. This happens once per
rollback (the timeline records it). If Slack refuses, the original thread says so and the
rollback carries on there.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.config import ChannelPerIncident
from bot.models import Rollback, State
from bot.text import SLACK_USER, mention
from handlers.blocks import dump
from handlers.thread import SlackThread

log = structlog.get_logger(__name__)

OPENED = "incident_channel"
REFUSED = "incident_channel_refused"
NAME_LIMIT = 80  # Slack's limit on channel names
NAME_ATTEMPTS = 5
INVITE_ATTEMPTS = 3
# States in which a confirmed severity can still use a channel of its own.
MOVABLE = frozenset({State.AWAITING_APPROVAL, State.APPROVED, State.RUNNING, State.VERIFYING})
# Invitation errors that leave the person in the channel anyway.
HARMLESS = frozenset({"already_in_channel", "cant_invite_self"})
HINTS = {
    "missing_scope": " (the app needs the channels:manage scope, or groups:write for private "
    "channels: reinstall it with slack-manifest.yaml)",
    "restricted_action": " (a workspace setting keeps apps from creating channels)",
}


def channel_name(prefix: str, rollback: Rollback, attempt: int = 1) -> str:
    """Name a rollback's channel, e.g. inc-20261125-backend-rb1a2b3c4d (-2 on a retry)."""
    head = f"{prefix}-{rollback.created_at:%Y%m%d}-"
    tail = f"-{rollback.id.replace('-', '')}" + (f"-{attempt}" if attempt > 1 else "")
    service = rollback.service[: NAME_LIMIT - len(head) - len(tail)].rstrip("-_")
    return f"{head}{service}{tail}"


def _code(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "unknown_error")


def moved_blocks(rollback: Rollback, channel: str) -> list[dict[str, Any]]:
    """The original card once the rollback has moved: where it went."""
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(
                text=f":arrow_right: *Rollback {rollback.id}* of *{rollback.service}/"
                f"{rollback.environment}* (`{rollback.shown_current}` → "
                f"`{rollback.shown_target}`, severity {rollback.severity}) continues in "
                f"<#{channel}>: its card, approvals and progress are there now."
            )
        ),
        ContextBlock(elements=[MarkdownTextObject(text=f"Rollback `{rollback.id}`")]),
    ]
    return dump(blocks)


class IncidentChannels:
    """Opens a rollback's channel when its confirmed severity calls for one."""

    def __init__(self, thread: SlackThread) -> None:
        self.thread = thread
        self.engine = thread.engine
        self.client = thread.client
        # Hooks may fire for one rollback from two clicks at once: one opening at a time.
        self._opening = asyncio.Lock()

    @property
    def settings(self) -> ChannelPerIncident:
        """Return the config of incident channels."""
        return self.engine.config.slack.channel_per_incident

    async def on_moved(self, rollback: Rollback) -> None:
        """Open the rollback's channel if its severity is listed and it has none yet."""
        wanted = {s.value for s in self.settings.severities}
        if rollback.drill or rollback.dry_run or rollback.state not in MOVABLE:
            return
        if rollback.severity not in wanted:
            return
        async with self._opening:
            events = await self.engine.records.events(rollback.id)
            if any(e.kind in {OPENED, REFUSED} for e in events):
                return
            rb = await self.engine.get(rollback.id)
            if rb.channel_id and rb.message_ts and rb.thread_ts:
                await self._open(rb)

    async def _open(self, rb: Rollback) -> None:
        try:
            channel, name = await self._create(rb)
        except SlackApiError as exc:
            code = _code(exc)
            await self.engine.record(
                rb, "rollbot", REFUSED, f"Slack refused an incident channel ({code})", error=code
            )
            await self.thread.reply(
                rb,
                f":warning: I could not open an incident channel: Slack said `{code}`"
                f"{HINTS.get(code, '')}. The rollback carries on in this thread.",
            )
            return
        await self.engine.record(
            rb, "rollbot", OPENED, f"Incident channel #{name} opened", channel=channel, name=name
        )
        people = await self._people(rb)
        not_invited = await self._invite(channel, people)
        try:
            moved = await self.thread.post_card(rb, channel)
        except SlackApiError as exc:
            await self.thread.reply(
                rb,
                f":warning: I opened <#{channel}> but could not post the card there (Slack said "
                f"`{_code(exc)}`). The rollback carries on in this thread.",
            )
            return
        await self.thread.reply(moved, self._welcome(rb, people, not_invited))
        await self._point_to(rb, channel)

    async def _create(self, rb: Rollback) -> tuple[str, str]:
        """Create the channel; a taken name gets -2, -3… rather than joining someone's."""
        for attempt in range(1, NAME_ATTEMPTS + 1):
            name = channel_name(self.settings.prefix, rb, attempt)
            try:
                response = await self.client.conversations_create(
                    name=name, is_private=self.settings.private
                )
            except SlackApiError as exc:
                if _code(exc) == "name_taken" and attempt < NAME_ATTEMPTS:
                    continue
                raise
            channel = response["channel"]
            return str(channel["id"]), str(channel["name"])
        raise AssertionError("unreachable")  # pragma: no cover

    async def _people(self, rb: Rollback) -> list[str]:
        """The requester, the approvers and the on-call group, each once."""
        directory = self.engine.directory
        approvers = self.engine.policy(rb).approvers
        people = [rb.requested_by, *approvers.users]
        groups = [*approvers.groups]
        if self.engine.config.slack.oncall_group:
            groups.append(self.engine.config.slack.oncall_group)
        for group in groups:
            people += sorted(await directory.members(group))
        # Terminal operators are not Slack users; they cannot be invited.
        return list(dict.fromkeys(p for p in people if SLACK_USER.fullmatch(p)))

    async def _invite(self, channel: str, users: list[str]) -> dict[str, str]:
        """Invite people; return who could not be invited, with Slack's reason."""
        failed: dict[str, str] = {}
        for _ in range(INVITE_ATTEMPTS):
            if not users:
                return failed
            try:
                await self.client.conversations_invite(channel=channel, users=",".join(users))
                return failed
            except SlackApiError as exc:
                # One refused invitation makes Slack invite nobody: again without those.
                per_user = {
                    str(e["user"]): str(e.get("error"))
                    for e in exc.response.get("errors") or []
                    if isinstance(e, dict) and e.get("user")
                }
                if not per_user:
                    return failed | {user: _code(exc) for user in users}
                failed |= {u: code for u, code in per_user.items() if code not in HARMLESS}
                users = [u for u in users if u not in per_user]
        return failed | {user: "not invited" for user in users}

    def _welcome(self, rb: Rollback, people: list[str], not_invited: dict[str, str]) -> str:
        invited = [p for p in people if p not in not_invited]
        text = (
            f":rotating_light: Incident channel of rollback {rb.id}: {rb.service}/"
            f"{rb.environment} `{rb.shown_current}` → `{rb.shown_target}`, severity "
            f"*{rb.severity}*. Moved here from <#{rb.channel_id}>: the card above, its "
            "approvals and its progress continue in this thread."
        )
        if invited:
            text += "\nInvited: " + ", ".join(mention(p) for p in invited) + "."
        if not_invited:
            text += "\n:warning: Could not invite " + ", ".join(
                f"{mention(p)} ({why})" for p, why in not_invited.items()
            )
            text += "."
        return text

    async def _point_to(self, origin: Rollback, channel: str) -> None:
        """Make the original card and thread point to the new channel."""
        if not (origin.channel_id and origin.message_ts and origin.thread_ts):
            return
        await self.client.chat_update(
            channel=origin.channel_id,
            ts=origin.message_ts,
            text=f"Rollback {origin.id} continues in <#{channel}>.",
            blocks=moved_blocks(origin, channel),
        )
        await self.client.chat_postMessage(
            channel=origin.channel_id,
            thread_ts=origin.thread_ts,
            text=f":arrow_right: Rollback {origin.id} moved to <#{channel}>: follow and approve "
            "it there.",
        )


def register(thread: SlackThread) -> None:
    """Open incident channels after the transitions that confirm a severity."""
    thread.hooks.add(IncidentChannels(thread).on_moved)
