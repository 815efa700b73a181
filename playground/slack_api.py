"""A local fake of Slack: the Web API the bot calls, and what Slack sends the bot.

`FakeSlack` is an aiohttp server that answers `/api/<method>` the way Slack does (HTTP 200
with `ok: false` for errors, 429 with Retry-After when rate limited), keeps the state the
bot builds (messages, ephemerals, modals), serves `response_url`s and Socket Mode
(`apps.connections.open` and the websocket it hands out). The user's side (`UserActions`,
`SignedSlack`, `SocketSlack`) is in `slack_users`, Slack's limits in `slack_limits`.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from playground.slack_limits import (
    MANIFEST_SCOPES,
    MESSAGE_BLOCKS_MAX,
    VIEW_BLOCKS_MAX,
    RateLimits,
    check_scopes,
    check_text,
)
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
    as_sent,
    flag,
    interactive,
    text_of,
    without_none,
)
from playground.slack_users import SignedSlack, SocketSlack, UserActions

# What the playground and the tests import from here.
__all__ = [
    "ACK_DEADLINE",
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
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

TRIGGER_TTL = 3.0  # a trigger_id expires this long after the interaction
RESPONSE_URL_USES = 5  # a response_url accepts this many posts
POLL_INTERVAL = 0.02

# conversations.create: "Channel names may only contain lowercase letters, numbers, hyphens,
# and underscores, and must be 80 characters or less"; these words are Slack's own mentions.
CHANNEL_NAME_MAX = 80
CHANNEL_NAME = re.compile(r"[a-z0-9_-]+")
RESERVED_CHANNEL_NAMES = frozenset({"here", "channel", "everyone", "group"})
INVITE_USERS_MAX = 1000
USER_ID = re.compile(r"[UW][A-Z0-9_]{1,20}")

# Methods called with an app-level token (xapp-); every other method wants xoxb- or xoxp-.
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
SOCKET_PATH = "/link"
UPLOAD_PATH = "/upload/v1/"  # where files.getUploadURLExternal sends the bytes

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


class _InviteError(SlackError):
    """conversations.invite refused: the first user's error, and each user's in `errors`."""

    def __init__(self, errors: list[Json]) -> None:
        super().__init__(str(errors[0]["error"]))
        self.errors = errors

    def body(self) -> Json:
        """The body with the per-user errors Slack lists."""
        return {**super().body(), "errors": self.errors}


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int


class FakeSlack:
    """Slack's Web API and response URLs on 127.0.0.1, recording every call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.responses: list[tuple[str, Json]] = []
        self.response_errors: list[str] = []  # what Slack answered response_url posts it refused
        self.ephemerals: list[Json] = []
        self.views: dict[str, Json] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, Json] = {}  # overrides merged into users.info answers
        self.channels: dict[str, Json] = {}  # overrides merged into conversations.info answers
        self.files: dict[str, Json] = {}  # file id -> the file, its bytes and where it went
        self.conversations: dict[str, Json] = {}  # channels that exist: created, or made by a test
        self._members: dict[str, set[str]] = {}
        # The bot token's scopes: take one away to see the bot without it.
        self.scopes: set[str] = set(MANIFEST_SCOPES)
        self.rate_limits = RateLimits()  # rate_limits.enable() for Slack's documented tiers
        # Off: a channel nobody created exists and holds the bot, as the older tests expect.
        # On: only created channels exist; others answer channel_not_found.
        self.strict_channels = False
        self.url = ""
        self._messages: dict[tuple[str, str], Json] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._triggers: dict[str, float] = {}
        self._trigger_users: dict[str, str] = {}  # who acted, so their client shows the modal
        self.view_users: dict[str, str] = {}  # view id -> the user whose client shows it
        self._used_triggers: set[str] = set()
        self._response_targets: dict[str, Json] = {}
        self._closed_views: set[str] = set()
        self._ids = itertools.count(1)
        self._ts_counter = itertools.count(1)
        self._runner: web.AppRunner | None = None
        # Socket Mode: what went over the websockets, and the open ones.
        self.envelopes: list[Json] = []  # envelopes sent to the app, in order
        self.acks: dict[str, Json] = {}  # envelope_id -> the first ack the app sent for it
        self.socket_received: list[Json] = []  # every message the app sent, acks included
        self.connections_opened = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._tickets: set[str] = set()
        self._ack_waiters: dict[str, asyncio.Future[Json]] = {}
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
        for socket in list(self._sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
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

    def create_channel(
        self,
        name: str,
        *,
        members: tuple[str, ...] = (BOT_USER_ID,),
        is_private: bool = False,
        is_archived: bool = False,
        creator: str = "U_SOMEONE",
    ) -> str:
        """Make a channel exist, as a person would have created it; return its id."""
        channel = self._new_channel(name, is_private=is_private, creator=creator)
        channel["is_archived"] = is_archived
        self._members[channel["id"]] = set(members)
        return str(channel["id"])

    def members(self, channel: str) -> set[str]:
        """Who is in a channel now (the bot included when it is)."""
        return set(self._members.get(channel, set()))

    def channel_named(self, name: str) -> Json | None:
        """The channel with this name, if one exists."""
        return next((dict(c) for c in self.conversations.values() if c["name"] == name), None)

    def new_trigger_id(self, user: str | None = None) -> str:
        """Issue a trigger_id, as Slack does with every interaction (by `user`, if known)."""
        trigger_id = f"{next(self._ids)}.{int(time.time())}.{secrets.token_hex(8)}"
        self._triggers[trigger_id] = time.monotonic()
        if user is not None:
            self._trigger_users[trigger_id] = user
        return trigger_id

    def register_user(self, user_id: str, name: str, *, real_name: str | None = None) -> None:
        """Make users.info know a person by name, as their Slack profile would."""
        shown = real_name or name
        self.users[user_id] = {
            **self.users.get(user_id, {}),
            "name": name,
            "real_name": shown,
            "profile": {"display_name": name, "real_name": shown},
        }

    def open_views(self, user: str) -> list[Json]:
        """Modals open in `user`'s client now, oldest first (the last one is on top)."""
        return [
            copy.deepcopy(v)
            for view_id, v in self.views.items()
            if self.view_users.get(view_id) == user and view_id not in self._closed_views
        ]

    def close_view(self, view_id: str) -> Json:
        """Close a modal as its Close button does, and return it as it was."""
        view = self.find_view(view_id)
        self._closed_views.add(view_id)
        return view

    def response_url_for(self, token: str) -> str:
        """The URL a response_url with this token has on this server."""
        return f"{self.url}/response/{token}"

    def new_response_url(
        self, *, channel: str, user: str, message_ts: str | None = None, ephemeral: bool = False
    ) -> str:
        """Issue a response_url whose posts act on this channel and, if given, message."""
        token = f"R{next(self._ids):06d}"
        self._response_targets[token] = {
            "channel": channel,
            "user": user,
            "message_ts": message_ts,
            "ephemeral": ephemeral,
            "uses": 0,
        }
        return self.response_url_for(token)

    def settle_submission(self, view_id: str, status: int, body: str) -> None:
        """Apply the bot's answer to a view_submission as Slack does: close, update or keep."""
        answer = json.loads(body) if status == 200 and body.strip() else {}
        action = answer.get("response_action")
        if action == "update":
            self.views[view_id] = self._stored_view(answer["view"], view_id)
        elif action == "push":
            new_id = self._new_view_id()
            self.views[new_id] = self._stored_view(answer["view"], new_id)
            if view_id in self.view_users:
                self.view_users[new_id] = self.view_users[view_id]
        elif action == "clear":
            self._closed_views.update(self.views)
        elif action != "errors" and status == 200:
            self._closed_views.add(view_id)

    # --- Socket Mode -----------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """How many Socket Mode connections are open now."""
        return sum(not s.closed for s in self._sockets)

    @property
    def connected(self) -> bool:
        """Whether an app holds an open Socket Mode connection."""
        return self.open_connections > 0

    async def wait_connected(self, timeout: float = 10.0, *, opened: int = 1) -> None:
        """Wait until `opened` connections were made in all and one of them is open."""
        await self.wait_for(
            lambda: self.connections_opened >= opened and self.connected, timeout=timeout
        )

    async def push_envelope(
        self, kind: str, payload: Json, *, timeout: float = ACK_DEADLINE
    ) -> Json:
        """Send the app an envelope over Socket Mode and return its ack, due within `timeout`."""
        socket = self._open_socket()
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": True,
            "payload": payload,
        }
        waiter = asyncio.get_running_loop().create_future()
        self._ack_waiters[envelope_id] = waiter
        self.envelopes.append(envelope)
        try:
            await socket.send_json(envelope)
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise AssertionError(
                f"the app did not ack {kind} envelope {envelope_id} within {timeout} s; "
                f"Slack would show the user operation_timeout\n{self.dump()}"
            ) from None
        finally:
            self._ack_waiters.pop(envelope_id, None)

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect, as Slack does every few hours ("refresh_requested")."""
        await self._open_socket().send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        )

    def unacked(self) -> list[Json]:
        """Envelopes sent that the app never acked."""
        return [e for e in self.envelopes if e["envelope_id"] not in self.acks]

    def _open_socket(self) -> web.WebSocketResponse:
        """The newest open connection: Slack sends each envelope over one of them."""
        for socket in reversed(self._sockets):
            if not socket.closed:
                return socket
        raise AssertionError(f"no app holds a Socket Mode connection\n{self.dump()}")

    # --- queries ---------------------------------------------------------------------------

    def messages(self, channel: str | None = None) -> list[Json]:
        """Messages as they are now (thread replies included), in the order they were posted."""
        return [
            copy.deepcopy(m)
            for (c, _), m in self._messages.items()
            if channel is None or c == channel
        ]

    def thread(self, channel: str, thread_ts: str) -> list[Json]:
        """Replies in a thread, oldest first, without the parent."""
        return [
            m
            for m in self.messages(channel)
            if m["thread_ts"] == thread_ts and m["ts"] != thread_ts
        ]

    def message(self, channel: str, ts: str) -> Json:
        """The message at (channel, ts) as it is now."""
        found = self._messages.get((channel, ts))
        if found is None:
            raise AssertionError(f"no message {channel}/{ts}; have {list(self._messages)}")
        return copy.deepcopy(found)

    def uploads(self, channel: str | None = None, thread_ts: str | None = None) -> list[Json]:
        """Files shared with files.completeUploadExternal, in order, with their `content`."""
        return [
            copy.deepcopy(f)
            for f in self.files.values()
            if f["shared"]
            and (channel is None or f["channel"] == channel)
            and (thread_ts is None or f["thread_ts"] == thread_ts)
        ]

    def calls_of(self, method: str) -> list[Call]:
        """Calls of one Web API method, in order."""
        return [c for c in self.calls if c.method == method]

    def ephemerals_for(self, user: str) -> list[Json]:
        """Ephemeral messages only `user` sees, in order."""
        return [copy.deepcopy(e) for e in self.ephemerals if e["user"] == user]

    def find_view(self, view_id_or_callback_id: str) -> Json:
        """An open view by id, or the latest open one with that callback_id."""
        if view_id_or_callback_id in self.views:
            view = self.views[view_id_or_callback_id]
        else:
            matches = [v for v in self.views.values() if v["callback_id"] == view_id_or_callback_id]
            if not matches:
                raise AssertionError(f"no view {view_id_or_callback_id!r}; have {self._view_ids()}")
            view = matches[-1]
        if view["id"] in self._closed_views:
            raise AssertionError(f"view {view['id']} ({view['callback_id']}) is closed")
        return copy.deepcopy(view)

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

    async def _response(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        self.responses.append((token, body))
        target = self._response_targets.get(token)
        if target is None:
            return web.Response(text="ok")
        target["uses"] += 1
        if target["uses"] > RESPONSE_URL_USES:
            # Slack documents the limit, not the exact error text.
            self.response_errors.append("used_url")
            return web.Response(status=404, text="used_url")
        try:
            self._apply_response(target, body)
        except SlackError as exc:
            self.response_errors.append(exc.error)
            return web.Response(status=400, text=exc.error)
        return web.Response(text="ok")

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: raw bytes or a multipart form; Slack answers 200 once it has them."""
        file = next(
            (f for f in self.files.values() if f["upload_token"] == request.match_info["token"]),
            None,
        )
        if file is None or file["shared"]:
            return web.Response(status=404, text="upload_url_not_found")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            fields = [v for v in form.values() if isinstance(v, web.FileField)]
            if not fields:
                return web.Response(status=400, text="no_file_data")
            data = fields[0].file.read()
        else:
            data = await request.read()
        file["content"] = data.decode("utf-8", errors="replace")
        file["size"] = len(data)
        file["uploaded"] = True
        return web.Response(text=f"OK - {len(data)}")

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        """A Socket Mode connection: hello, then envelopes out and acks in."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid_ticket")
        self._tickets.discard(ticket)  # a URL from apps.connections.open works once
        socket = web.WebSocketResponse(autoping=True)  # answers the app's pings as Slack does
        await socket.prepare(request)
        self._sockets.append(socket)
        self.connections_opened += 1
        try:
            await socket.send_json(
                {
                    "type": "hello",
                    "num_connections": self.open_connections,
                    "debug_info": {
                        "host": "applink-fake",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": APP_ID},
                }
            )
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    self._received(message.data)
        finally:
            self._sockets.remove(socket)
        return socket

    def _received(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            message = {"unparsed": data}
        self.socket_received.append(message)
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if not envelope_id:
            return
        self.acks.setdefault(envelope_id, message)
        waiter = self._ack_waiters.get(envelope_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    def _apply_response(self, target: Json, body: Json) -> None:
        original = self._original(target)
        if original is not None and flag(body.get("delete_original")):
            if target["ephemeral"]:
                self.ephemerals.remove(original)
            else:
                del self._messages[(target["channel"], target["message_ts"])]
        elif original is not None and flag(body.get("replace_original")):
            check_text(body)
            original["text"] = body.get("text", "")
            original["blocks"] = self._checked_blocks(body.get("blocks"), MESSAGE_BLOCKS_MAX)
        elif body.get("response_type") == "in_channel":
            self._post_message({**body, "channel": target["channel"]})
        else:
            self._post_ephemeral({**body, "channel": target["channel"], "user": target["user"]})

    def _original(self, target: Json) -> Json | None:
        ts = target["message_ts"]
        if ts is None:
            return None
        if not target["ephemeral"]:
            return self._messages.get((target["channel"], ts))
        for ephemeral in self.ephemerals:
            if (ephemeral["channel"], ephemeral["user"], ephemeral["ts"]) == (
                target["channel"],
                target["user"],
                ts,
            ):
                return ephemeral
        return None

    # --- Web API methods -------------------------------------------------------------------

    def _connections_open(self, args: Json) -> Json:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        ws_url = "ws" + self.url.removeprefix("http")
        return {"url": f"{ws_url}{SOCKET_PATH}?ticket={ticket}"}

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

    def _post_message(self, args: Json) -> Json:
        channel = _require(args, "channel")
        self._check_writable(channel)
        check_text(args)
        blocks = self._checked_blocks(args.get("blocks"), MESSAGE_BLOCKS_MAX)
        if not (args.get("text") or blocks or args.get("attachments")):
            raise SlackError("no_text")
        ts = self._next_ts()
        message: Json = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": args.get("text", ""),
            "blocks": blocks,
            "attachments": args.get("attachments", []),
            "thread_ts": args.get("thread_ts"),
            "reply_broadcast": flag(args.get("reply_broadcast")),
        }
        self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": as_sent(message)}

    def _update(self, args: Json) -> Json:
        channel, ts = _require(args, "channel"), _require(args, "ts")
        self._check_writable(channel, updating=True)
        check_text(args)
        message = self._messages.get((channel, ts))
        if message is None:
            raise SlackError("message_not_found")
        # Fields left out keep their previous value, as chat.update documents.
        if "blocks" in args:
            message["blocks"] = self._checked_blocks(args["blocks"], MESSAGE_BLOCKS_MAX)
        if "text" in args:
            message["text"] = args["text"]
        if "attachments" in args:
            message["attachments"] = args["attachments"]
        return {"channel": channel, "ts": ts, "text": message["text"], "message": as_sent(message)}

    def _delete(self, args: Json) -> Json:
        channel, ts = _require(args, "channel"), _require(args, "ts")
        if self._messages.pop((channel, ts), None) is None:
            raise SlackError("message_not_found")
        return {"channel": channel, "ts": ts}

    def _get_permalink(self, args: Json) -> Json:
        # Slack answers message_not_found for a ts it does not hold in that channel.
        channel, ts = _require(args, "channel"), _require(args, "message_ts")
        if (channel, ts) not in self._messages:
            raise SlackError("message_not_found")
        link = f"{self.url}/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _post_ephemeral(self, args: Json) -> Json:
        channel, user = _require(args, "channel"), _require(args, "user")
        self._check_writable(channel, updating=True)
        check_text(args)
        blocks = self._checked_blocks(args.get("blocks"), MESSAGE_BLOCKS_MAX)
        if not (args.get("text") or blocks or args.get("attachments")):
            raise SlackError("no_text")
        ts = self._next_ts()
        self.ephemerals.append(
            {
                "channel": channel,
                "user": user,
                "ts": ts,
                "text": args.get("text", ""),
                "blocks": blocks,
                "thread_ts": args.get("thread_ts"),
            }
        )
        return {"message_ts": ts}

    def _views_open(self, args: Json) -> Json:
        trigger_id = str(args.get("trigger_id") or args.get("interactivity_pointer") or "")
        if trigger_id in self._used_triggers:
            raise SlackError("trigger_exchanged")
        issued = self._triggers.pop(trigger_id, None)
        if issued is None:
            raise SlackError("invalid_trigger_id")
        self._used_triggers.add(trigger_id)
        if time.monotonic() - issued > TRIGGER_TTL:
            raise SlackError("expired_trigger_id")
        view_id = self._new_view_id()
        self.views[view_id] = self._stored_view(_require(args, "view"), view_id)
        user = self._trigger_users.pop(trigger_id, None)
        if user is not None:
            self.view_users[view_id] = user
        return {"view": copy.deepcopy(self.views[view_id])}

    def _views_update(self, args: Json) -> Json:
        view_id = args.get("view_id") or next(
            (v["id"] for v in self.views.values() if v["external_id"] == args.get("external_id")),
            None,
        )
        if view_id not in self.views:
            raise SlackError("not_found")
        if args.get("hash") and args["hash"] != self.views[view_id]["hash"]:
            raise SlackError("hash_conflict")
        self.views[view_id] = self._stored_view(_require(args, "view"), view_id)
        return {"view": copy.deepcopy(self.views[view_id])}

    def _usergroup_users(self, args: Json) -> Json:
        group = _require(args, "usergroup")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _users_info(self, args: Json) -> Json:
        user_id = _require(args, "user")
        name = user_id.lower()
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": name,
            "deleted": False,
            "is_bot": user_id == BOT_USER_ID,
            "tz": "UTC",
            "profile": {"display_name": name, "real_name": name},
        }
        return {"user": {**user, **self.users.get(user_id, {})}}

    def _conversations_info(self, args: Json) -> Json:
        channel_id = _require(args, "channel")
        if self.strict_channels and channel_id not in self.conversations:
            raise SlackError("channel_not_found")
        channel = {
            "id": channel_id,
            "name": channel_id.lower(),
            "is_channel": True,
            "is_private": False,
            "is_archived": False,
            "is_member": True,
        }
        known = self.conversations.get(channel_id, {})
        return {"channel": {**channel, **known, **self.channels.get(channel_id, {})}}

    def _conversations_create(self, args: Json) -> Json:
        """Create a channel as Slack does, naming its errors the way the method documents them."""
        name = str(args.get("name") or "")
        if not name:
            raise SlackError("invalid_name_required")
        if len(name) > CHANNEL_NAME_MAX:
            raise SlackError("invalid_name_maxlength")
        if not CHANNEL_NAME.fullmatch(name):
            raise SlackError("invalid_name_specials")
        if not name.strip("-_"):
            raise SlackError("invalid_name_punctuation")
        if name in RESERVED_CHANNEL_NAMES:
            raise SlackError("invalid_name")
        if self.channel_named(name) is not None:
            raise SlackError("name_taken")
        channel = self._new_channel(name, is_private=flag(args.get("is_private")))
        self._members[channel["id"]] = {BOT_USER_ID}  # the creator is its first member
        return {"channel": copy.deepcopy(channel)}

    def _conversations_invite(self, args: Json) -> Json:
        """Invite users: one that cannot be invited fails the call for all, unless `force`."""
        channel_id = _require(args, "channel")
        users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
        if not users:
            raise SlackError("no_user")
        if len(users) > INVITE_USERS_MAX:
            raise SlackError("too_many_users")
        channel = self.conversations.get(channel_id)
        if channel is None:
            raise SlackError("channel_not_found")
        if channel["is_archived"]:
            raise SlackError("is_archived")
        members = self._members.setdefault(channel_id, set())
        if BOT_USER_ID not in members:
            raise SlackError("not_in_channel")
        errors = [
            {"user": user, "ok": False, "error": error}
            for user in users
            if (error := self._invite_error(user, members))
        ]
        failed = {e["user"] for e in errors}
        if errors and not flag(args.get("force")):
            raise _InviteError(errors)
        members.update(u for u in users if u not in failed)
        answer: Json = {"channel": {**copy.deepcopy(channel), "num_members": len(members)}}
        if errors:
            answer["errors"] = errors
        return answer

    def _conversations_join(self, args: Json) -> Json:
        """Join a public channel; private ones take an invitation from a member."""
        channel_id = _require(args, "channel")
        channel = self.conversations.get(channel_id)
        if channel is None:
            if self.strict_channels:
                raise SlackError("channel_not_found")
            return {"channel": {"id": channel_id, "is_member": True}}
        if channel["is_archived"]:
            raise SlackError("is_archived")
        if channel["is_private"]:
            raise SlackError("method_not_supported_for_channel_type")
        members = self._members.setdefault(channel_id, set())
        already = BOT_USER_ID in members
        members.add(BOT_USER_ID)
        answer: Json = {"channel": {**copy.deepcopy(channel), "is_member": True}}
        if already:
            answer["warning"] = "already_in_channel"
        return answer

    def _check_writable(self, channel_id: str, *, updating: bool = False) -> None:
        """Refuse a post where Slack would: gone, archived, or a channel the bot is not in.

        With chat:write.public a bot posts in public channels it never joined; a private
        channel it is not in looks to it as if it did not exist.
        """
        channel = self.conversations.get(channel_id)
        if channel is None:
            if self.strict_channels:
                raise SlackError("channel_not_found")
            return
        if channel["is_archived"]:
            raise SlackError("is_archived")
        if BOT_USER_ID in self._members.get(channel_id, set()):
            return
        if channel["is_private"]:
            raise SlackError("channel_not_found")
        if not updating and "chat:write.public" not in self.scopes:
            raise SlackError("not_in_channel")

    def _invite_error(self, user: str, members: set[str]) -> str | None:
        if user == BOT_USER_ID:
            return "cant_invite_self"
        if not USER_ID.fullmatch(user) or self.users.get(user, {}).get("deleted"):
            return "user_not_found"
        if user in members:
            return "already_in_channel"
        return None

    def _new_channel(self, name: str, *, is_private: bool, creator: str = BOT_USER_ID) -> Json:
        channel_id = f"C{next(self._ids):08d}"
        self.conversations[channel_id] = {
            "id": channel_id,
            "name": name,
            "name_normalized": name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "is_archived": False,
            "is_general": False,
            "is_shared": False,
            "is_member": True,
            "created": int(time.time()),
            "creator": creator,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
        }
        return self.conversations[channel_id]

    def _get_upload_url(self, args: Json) -> Json:
        filename = _require(args, "filename")
        try:
            length = int(_require(args, "length"))
        except ValueError:
            raise SlackError("invalid_arguments", "length must be an integer") from None
        if length < 1:
            raise SlackError("invalid_arguments", "length must be a positive integer")
        file_id = f"F{next(self._ids):08d}"
        token = secrets.token_urlsafe(12)
        self.files[file_id] = {
            "id": file_id,
            "name": filename,
            "title": filename,
            "length": length,
            "size": 0,
            "content": None,
            "upload_token": token,
            "uploaded": False,
            "shared": False,
            "channel": None,
            "thread_ts": None,
            "initial_comment": None,
        }
        return {"upload_url": f"{self.url}{UPLOAD_PATH}{token}", "file_id": file_id}

    def _complete_upload(self, args: Json) -> Json:
        files = _require(args, "files")
        if isinstance(files, str):
            try:
                files = json.loads(files)
            except ValueError:
                raise SlackError("invalid_arguments", "files must be a JSON array") from None
        if not isinstance(files, list) or not all(
            isinstance(f, dict) and f.get("id") for f in files
        ):
            raise SlackError("invalid_arguments", "files must be an array of objects with an id")
        channel = args.get("channel_id") or None
        channels = [c for c in str(args.get("channels") or "").split(",") if c]
        thread_ts = args.get("thread_ts") or None
        if thread_ts and len([c for c in [channel, *channels] if c]) != 1:
            raise SlackError("invalid_arguments", "thread_ts needs exactly one channel")
        found = [self.files.get(str(f["id"])) for f in files]
        # Completing works once per upload, and only after the bytes reached the upload URL.
        if any(f is None or f["shared"] or not f["uploaded"] for f in found):
            raise SlackError("file_not_found")
        target = channel or (channels[0] if channels else None)
        if target is not None:
            self._check_writable(target)
        shared: list[Json] = []
        for given, file in zip(files, found, strict=True):
            assert file is not None
            file.update(
                shared=True,
                title=given.get("title") or file["name"],
                channel=target,
                thread_ts=thread_ts,
                initial_comment=args.get("initial_comment"),
            )
            shared.append({"id": file["id"], "title": file["title"]})
        if target is not None:
            ts = self._next_ts()
            self._messages[(target, ts)] = {
                "type": "message",
                "subtype": "file_share",
                "channel": target,
                "ts": ts,
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "text": args.get("initial_comment") or "",
                "blocks": [],
                "files": [
                    {"id": f["id"], "name": f["name"], "title": f["title"], "size": f["size"]}
                    for f in found
                    if f is not None
                ],
                "thread_ts": thread_ts,
                "reply_broadcast": False,
            }
        return {"files": shared}

    # --- state helpers ---------------------------------------------------------------------

    def _next_ts(self) -> str:
        micros = 1_700_000_000_000_000 + 100 * next(self._ts_counter)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _new_view_id(self) -> str:
        return f"V{next(self._ids):08d}"

    def _view_ids(self) -> list[tuple[str, str]]:
        return [(v["id"], v["callback_id"]) for v in self.views.values()]

    def _stored_view(self, view: Any, view_id: str) -> Json:
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments", "view must be a JSON object")
        try:
            View(**view).to_dict()
        except (SlackObjectFormationError, TypeError) as exc:
            raise SlackError("invalid_arguments", str(exc)) from exc
        previous = self.views.get(view_id, {})
        return {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": view.get("type", "modal"),
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": self._checked_blocks(view.get("blocks"), VIEW_BLOCKS_MAX),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{next(self._ids)}",
            "clear_on_close": view.get("clear_on_close", False),
            "notify_on_close": view.get("notify_on_close", False),
            "root_view_id": previous.get("root_view_id", view_id),
            "previous_view_id": None,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }

    def _checked_blocks(self, blocks: Any, limit: int) -> list[Json]:
        """Validate blocks like Slack does and fill in the ids Slack assigns."""
        if blocks is None:
            return []
        if not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        if len(blocks) > limit:
            raise SlackError(
                "invalid_blocks", f"no more than {limit} items allowed [json-pointer:]"
            )
        blocks = copy.deepcopy(blocks)
        block_ids: set[str] = set()
        for index, block in enumerate(blocks):
            try:
                parsed = Block.parse(block) if isinstance(block, dict) else None
                if parsed is None:
                    raise SlackObjectFormationError(f"unknown block {block!r}")
                parsed.to_dict()
            except (SlackObjectFormationError, TypeError) as exc:
                raise SlackError("invalid_blocks", f"{exc} [json-pointer:/blocks/{index}]") from exc
            block.setdefault("block_id", f"b{next(self._ids)}")
            if block["block_id"] in block_ids:
                raise SlackError("invalid_blocks", f"duplicate block_id {block['block_id']!r}")
            block_ids.add(block["block_id"])
            action_ids: set[str] = set()
            for element in interactive(block):
                element.setdefault("action_id", f"a{next(self._ids)}")
                if element["action_id"] in action_ids:
                    raise SlackError(
                        "invalid_blocks", f"duplicate action_id {element['action_id']!r}"
                    )
                action_ids.add(element["action_id"])
        return blocks


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


def _require(args: Json, name: str) -> Any:
    if not args.get(name):
        raise SlackError("invalid_arguments", f"missing required field: {name}")
    return args[name]


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
