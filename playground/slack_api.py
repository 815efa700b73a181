"""A local fake of Slack: the Web API the bot calls, and what Slack sends the bot.

`FakeSlack` is an aiohttp server that answers `/api/<method>` the way Slack does (HTTP 200
with `ok: false` for errors, 429 with Retry-After when rate limited), keeps the state the
bot builds and records every call. Its parts: channels and people in `slack_workspace`,
messages and files in `slack_messages`, modals and `response_url`s in `slack_interactions`,
Socket Mode in `slack_socket`. The user's side (`UserActions`) is in `slack_users`, its
deliveries (`SignedSlack`, `SocketSlack`) in `slack_clients`, Slack's limits in
`slack_limits`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from playground.slack_clients import SignedSlack, SocketSlack
from playground.slack_interactions import Interactions
from playground.slack_limits import MANIFEST_SCOPES, RateLimits, check_scopes
from playground.slack_messages import UPLOAD_PATH
from playground.slack_model import (
    ACK_DEADLINE,
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    STATE_KEYS,
    TEAM_DOMAIN,
    TEAM_ID,
    VERIFICATION_TOKEN,
    Json,
    SlackError,
    text_of,
    without_none,
)
from playground.slack_socket import SOCKET_PATH, SocketModeServer
from playground.slack_users import UserActions
from playground.slack_workspace import CHANNEL_NAME

# What the playground and the tests import from here.
__all__ = [
    "ACK_DEADLINE",
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "CHANNEL_NAME",
    "STATE_KEYS",
    "TEAM_DOMAIN",
    "TEAM_ID",
    "VERIFICATION_TOKEN",
    "Call",
    "FakeSlack",
    "Json",
    "SignedSlack",
    "SlackError",
    "SocketSlack",
    "UserActions",
    "text_of",
    "without_none",
]

T = TypeVar("T")

POLL_INTERVAL = 0.02

# Methods called with an app-level token (xapp-); every other method wants xoxb- or xoxp-.
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})

# Slack accepts these as JSON strings inside form-encoded bodies.
JSON_FIELDS = ("blocks", "attachments", "view", "metadata")


@dataclass(frozen=True)
class Call:
    """One Web API call the fake received, with what it answered."""

    method: str
    args: Json
    time: float
    status: int
    response: Json


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int


class FakeSlack(SocketModeServer, Interactions):
    """Slack's Web API and response URLs on 127.0.0.1, recording every call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        # The bot token's scopes: take one away to see the bot without it.
        self.scopes: set[str] = set(MANIFEST_SCOPES)
        self.rate_limits = RateLimits()  # rate_limits.enable() for Slack's documented tiers
        self.url = ""
        self._failures: dict[str, list[_Failure]] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[Json], Json]] = {
            "apps.connections.open": self._connections_open,
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._get_permalink,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "usergroups.users.list": self._usergroup_users,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "conversations.create": self._conversations_create,
            "conversations.invite": self._conversations_invite,
            "conversations.join": self._conversations_join,
        }

    @property
    def base_url(self) -> str:
        """What `AsyncWebClient(base_url=...)` takes."""
        return f"{self.url}/api/"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{token}", self._response)
        app.router.add_post(UPLOAD_PATH + "{token}", self._upload)
        app.router.add_get(SOCKET_PATH, self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Close the server and its connections, websockets first (they would hold it open)."""
        await self._close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- test controls -------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        status: int = 429,
        retry_after: int = 1,
        *,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` fail the way Slack fails them."""
        self._failures.setdefault(method, []).extend(
            _Failure(error, status, retry_after) for _ in range(times)
        )

    def start_over(self) -> None:
        """Forget what people and the bot did here, and the calls recorded; people stay."""
        # The id and ts counters go on: an old card's ts or id must never name something new.
        super().start_over()
        self.calls.clear()
        self._failures.clear()

    # --- queries ---------------------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        """Calls of one Web API method, in order."""
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 20.0) -> T:
        """Poll until `predicate` returns something truthy and return it."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"condition not met within {timeout} s\n{self.dump()}")
            await asyncio.sleep(POLL_INTERVAL)

    def dump(self, last: int = 30) -> str:
        """Recent calls and responses, readable in a failed assertion."""
        lines = [f"last {min(last, len(self.calls))} of {len(self.calls)} Slack API calls:"]
        for call in self.calls[-last:]:
            outcome = "ok" if call.response.get("ok") else call.response.get("error")
            lines.append(f"  {call.method} {_short(call.args)} -> {call.status} {outcome}")
        lines.append(f"response_url posts: {len(self.responses)}")
        lines.extend(f"  {token} {_short(body)}" for token, body in self.responses[-last:])
        if self.connections_opened:
            lines.append(
                f"socket mode: {self.connections_opened} connections, {len(self.envelopes)} "
                f"envelopes, {len(self.acks)} acked, open now: {self.connected}"
            )
        return "\n".join(lines)

    # --- HTTP ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        token = _bearer(request) or args.get("token")
        args.pop("token", None)
        status, body, headers = self._answer(method, args, token)
        self.calls.append(Call(method, args, time.monotonic(), status, body))
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, args: Json, token: str | None
    ) -> tuple[int, Json, dict[str, str]]:
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        allowed = ("xapp-",) if method in APP_TOKEN_METHODS else ("xoxb-", "xoxp-")
        if not token.startswith(allowed):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        pending = self._failures.get(method)
        if pending:
            failure = pending.pop(0)
            headers = {"Retry-After": str(failure.retry_after)} if failure.status == 429 else {}
            return failure.status, {"ok": False, "error": failure.error}, headers
        handler = self._handlers.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        retry_after = self.rate_limits.retry_after(method, args)
        if retry_after is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
        try:
            if method not in APP_TOKEN_METHODS:
                check_scopes(method, self.scopes)
            return 200, {"ok": True, **handler(args)}, {}
        except SlackError as exc:
            return 200, exc.body(), {}

    def _auth_test(self, args: Json) -> Json:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Rollbot Test",
            "user": "rollbot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }


async def _read_args(request: web.Request) -> Json:
    """Arguments from the query string and a JSON or form body, JSON fields decoded."""
    args: Json = dict(request.query)
    if request.content_type == "application/json":
        args.update(await request.json())
    elif request.can_read_body:
        args.update((await request.post()).items())
    for key in JSON_FIELDS:
        if isinstance(args.get(key), str):
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                pass  # left as a string; the method reports it the way Slack would
    return args


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme == "Bearer" and token else None


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
