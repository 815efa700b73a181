"""Exactly once from Slack: a request seen before (a retry, a replay) does nothing again.

Slack retries a request it got no timely answer for, with the same body and an
`X-Slack-Retry-Num` header; a proxy or a second replica may deliver one twice. Every
command and interaction carries a `trigger_id` unique to that user action, so claiming
it in the store, shared by every replica, lets exactly one delivery through. The engine's
compare-and-set transitions make double clicks (two trigger ids) harmless on their own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.engine import Engine
from bot.models import utcnow
from bot.store import StoreUnavailable
from bot.text import escape

log = structlog.get_logger(__name__)

# Slack retries within minutes; a day is far past any retry or replay window.
KEEP = timedelta(days=1)
CLAIM_SECONDS = 2.0
SLOW = "rollbot's database did not answer in time. Nothing was changed; try again in a moment."


def request_key(body: dict[str, Any]) -> str | None:
    """Return the idempotency key of a command or interaction, or None when it has none."""
    trigger = body.get("trigger_id")
    if isinstance(trigger, str) and trigger:
        return f"{body.get('type') or 'command'}:{trigger}"
    return None


class Once(AsyncMiddleware):
    """Lets each Slack request through once: its key is claimed in the store first.

    A request `exempt` says needs nothing but its own text (the help, a typo's usage) is
    let through unclaimed: answering it twice changes nothing, and it is answered while
    the store is down.
    """

    def __init__(self, engine: Engine, exempt: Callable[[dict[str, Any]], bool]) -> None:
        self.engine = engine
        self.exempt = exempt

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        """Go on with a request seen for the first time; ack a repeat and do nothing."""
        if self.exempt(req.body):
            return await next()
        key = request_key(req.body)
        try:
            # Slack wants an answer within 3 s: a database that hangs gets 2 of them.
            async with asyncio.timeout(CLAIM_SECONDS):
                fresh = key is None or await self.engine.deliveries.claim_request(
                    key, utcnow(), KEEP
                )
        except StoreUnavailable as exc:
            return unavailable(req.body, exc)
        except TimeoutError:
            return unavailable(req.body, StoreUnavailable(SLOW))
        if fresh:
            return await next()
        retry = (req.headers.get("x-slack-retry-num") or [""])[0]
        log.info("duplicate slack request ignored", key=key, retry=retry)
        # Answered as an ack: Slack must not retry again, and nothing runs twice.
        return BoltResponse(status=200, body="")


def register(app: AsyncApp, engine: Engine, exempt: Callable[[dict[str, Any]], bool]) -> None:
    """Add the middleware that lets each Slack request through once."""
    app.middleware(Once(engine, exempt))


# Replies sent beside the ack while the store is down, kept so they are not collected.
_replies: set[asyncio.Task[Any]] = set()


def unavailable(body: dict[str, Any], error: StoreUnavailable) -> BoltResponse:
    """Answer a request that arrived while the store is down: privately, within the ack.

    Nothing ran, so nothing can be half-done: the user is told to try again. A command
    gets the answer in the ack itself; a click gets it through its response_url.
    """
    text = escape(error.message)
    if "command" in body:
        answer = {"response_type": "ephemeral", "text": text}
        return BoltResponse(
            status=200, body=json.dumps(answer), headers={"content-type": "application/json"}
        )
    url = body.get("response_url") or next(
        (u.get("response_url") for u in body.get("response_urls") or [] if isinstance(u, dict)),
        None,
    )
    if isinstance(url, str) and url:
        reply = AsyncWebhookClient(url).send(
            text=text, response_type="ephemeral", replace_original=False
        )
        task = asyncio.ensure_future(reply)
        _replies.add(task)
        task.add_done_callback(_replies.discard)
    return BoltResponse(status=200, body="")
