"""How the user's actions reach the bot: signed HTTP requests or Socket Mode envelopes.

`SignedSlack` posts what Slack posts to a bot's request URL, signed with the signing
secret; `SocketSlack` pushes it over the fake's Socket Mode connection and awaits the ack.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

import aiohttp

from playground.slack_model import ACK_DEADLINE, Json
from playground.slack_users import UserActions

if TYPE_CHECKING:
    from playground.slack_api import FakeSlack


class SignedSlack(UserActions):
    """Sends the bot what Slack sends it when a user acts: signed, form-encoded requests."""

    def __init__(
        self,
        events_url: str,
        signing_secret: str,
        fake: FakeSlack,
        *,
        ack_timeout: float = ACK_DEADLINE,
    ) -> None:
        super().__init__(fake, ack_timeout=ack_timeout)
        self.events_url = events_url
        self.signing_secret = signing_secret

    # --- signing and transport -------------------------------------------------------------

    def signed_headers(
        self, body: bytes, *, timestamp: int | None = None, secret: str | None = None
    ) -> dict[str, str]:
        """Slack's headers for `body`; pass an old timestamp or another secret to forge."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        key = (self.signing_secret if secret is None else secret).encode()
        digest = hmac.new(key, b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
        }

    async def raw(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """POST `body` with exactly these headers; the bot must answer within Slack's deadline."""
        timeout = aiohttp.ClientTimeout(total=self.ack_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.events_url, data=body, headers=dict(headers)) as response,
            ):
                return response.status, await response.text()
        except TimeoutError:
            raise AssertionError(
                f"the bot did not answer within {self.ack_timeout} s; "
                "Slack would show the user operation_timeout"
            ) from None

    async def send(
        self, fields: Mapping[str, str], *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[int, str]:
        """Form-encode `fields`, sign and POST them."""
        body = urllib.parse.urlencode(fields).encode()
        return await self.raw(body, self.signed_headers(body, timestamp=timestamp, secret=secret))

    async def send_payload(self, payload: Json) -> tuple[int, str]:
        """POST an interactivity payload as Slack does: one form field `payload`."""
        self.sent.append(payload)
        return await self.send({"payload": json.dumps(payload)})

    async def send_command(self, fields: Mapping[str, str]) -> tuple[int, str]:
        """POST a slash command's form, signed."""
        return await self.send(fields)


class SocketSlack(UserActions):
    """Sends the bot what Slack sends it in Socket Mode: envelopes over the fake's websocket.

    Each delivery waits for the bot's ack (`{"envelope_id", "payload"?}`) and answers
    `(200, the ack's payload as JSON or "")`, the way an HTTP answer would carry it.
    """

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the bot holds a Socket Mode connection."""
        await self.fake.wait_connected(timeout)

    async def send_payload(self, payload: Json) -> tuple[int, str]:
        """Send an interactivity payload in an `interactive` envelope."""
        self.sent.append(payload)
        return await self._push("interactive", payload)

    async def send_command(self, fields: Mapping[str, str]) -> tuple[int, str]:
        """Send a slash command in a `slash_commands` envelope."""
        return await self._push("slash_commands", dict(fields))

    async def _push(self, kind: str, payload: Json) -> tuple[int, str]:
        ack = await self.fake.push_envelope(kind, payload, timeout=self.ack_timeout)
        return 200, json.dumps(ack["payload"]) if ack.get("payload") is not None else ""
