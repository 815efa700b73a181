"""Turning errors into what the user sees: one reporter for every listener."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from slack_bolt.async_app import AsyncAck, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import Busy, RollbotError
from bot.text import escape

log = structlog.get_logger(__name__)

SLACK_ERRORS = {
    "not_in_channel": "I am not in this channel: invite me with `/invite @rollbot` and retry.",
    "channel_not_found": "I cannot see this channel: invite me with `/invite @rollbot`.",
    "expired_trigger_id": "That took too long for Slack; click the button again.",
}

Work = Callable[[dict[str, Any], AsyncWebClient, AsyncRespond], Awaitable[None]]


def user_message(error: BaseException) -> str:
    """Turn an exception into what the user sees; unknown ones get a logged error id."""
    cause = error.__cause__ if isinstance(error.__cause__, RollbotError) else error
    if isinstance(cause, RollbotError):
        log.info("refused", reason=cause.message)
        return cause.message
    if isinstance(error, SlackApiError):
        code = str(error.response.get("error", "unknown"))
        log.warning("slack api error", error=code)
        return SLACK_ERRORS.get(code, f"Slack refused a call ({code}). Nothing else changed.")
    error_id = secrets.token_hex(4)
    log.error("unexpected error", error_id=error_id, exc_info=error)
    return (
        f"Something went wrong (error id `{error_id}`). "
        "The rollback's card and thread show its real state."
    )


async def report(
    error: BaseException,
    body: dict[str, Any],
    respond: AsyncRespond | None,
    client: AsyncWebClient | None,
    channel: str | None = None,
) -> None:
    """Tell the user who acted what went wrong, privately."""
    text: str = escape(user_message(error))
    cause = error.__cause__ if isinstance(error.__cause__, Busy) else error
    if isinstance(cause, Busy) and client is not None:
        text += await card_link(client, cause)
    user = (body.get("user") or {}).get("id") or body.get("user_id")
    if respond is not None and body.get("response_url"):
        await respond(text=text, response_type="ephemeral", replace_original=False)
    elif client is not None and channel and user:
        await client.chat_postEphemeral(channel=channel, user=user, text=text)
    else:
        log.warning("error reply dropped: nowhere to answer", text=text)


async def card_link(client: AsyncWebClient, busy: Busy) -> str:
    """Say where the card of the rollback that blocks a request is, with a link if Slack has one."""
    if busy.channel_id and busy.message_ts:
        try:
            found = await client.chat_getPermalink(
                channel=busy.channel_id, message_ts=busy.message_ts
            )
            return f" Its card: {found['permalink']}"
        except SlackApiError as exc:
            log.info("no permalink", error=str(exc.response.get("error")))
    if busy.channel_id:
        return f" Its card is in <#{busy.channel_id}>."
    return " It was started from the terminal and has no card."


class Echoing:
    """`respond`, each of whose answers opens with the line saying what it answers."""

    def __init__(self, respond: AsyncRespond, said: str) -> None:
        self.respond = respond
        self.said = said

    async def __call__(self, text: str = "", **kwargs: Any) -> Any:
        """Answer through the wrapped `respond`, the echo first."""
        return await self.respond(text=self.said + text if text else text, **kwargs)


def acked(
    work: Work,
    *,
    at_once: Callable[[dict[str, Any]], str | None] | None = None,
    echo: Callable[[dict[str, Any]], str] | None = None,
) -> Callable[..., Awaitable[None]]:
    """Make a listener that acks at once, then does the work and reports its errors.

    Errors are reported here rather than left to Bolt: Bolt's runner resets an ack that
    was already sent when the listener fails within its 10 ms polling window, and Slack
    then sees no answer at all.

    `at_once` answers a request that needs nothing but its own text (help, a typo) in the
    ack itself: Slack shows the user that answer privately, and no reply has to follow.
    `echo` gives the line that opens every private answer (a slash command's own text,
    which Slack shows nobody once sent).
    """

    async def listener(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        said = echo(body) if echo is not None else ""
        answer = at_once(body) if at_once is not None else None
        if answer is not None:
            await ack(text=said + answer, response_type="ephemeral")
            return
        await ack()
        answering = cast(AsyncRespond, Echoing(respond, said)) if said else respond
        try:
            await work(body, client, answering)
        except Exception as exc:
            await report(exc, body, answering, client)

    # Not functools.wraps: Bolt reads the signature (following __wrapped__) to decide
    # which arguments to pass, and must see this listener's, not the work's.
    listener.__name__ = work.__name__
    return listener
