"""The fake Slack's Socket Mode: apps.connections.open and the websocket it hands out.

A URL from apps.connections.open works once; the connection starts with `hello`, then
carries envelopes to the app and its acks back. `disconnect` asks the app to reconnect.
"""

# A fake's waits take their own deadlines, as in the other fakes (`playground/*_api.py`).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from playground.slack_model import ACK_DEADLINE, APP_ID, Json

T = TypeVar("T")

SOCKET_PATH = "/link"


class SocketModeServer:
    """Socket Mode connections, the envelopes sent over them and the acks received."""

    url: str  # FakeSlack's own, where it listens

    if TYPE_CHECKING:
        # FakeSlack's own: its polling, and its recent calls for a failed assertion.
        async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 20.0) -> T: ...

        def dump(self, last: int = 30) -> str: ...

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Json] = []  # envelopes sent to the app, in order
        self.acks: dict[str, Json] = {}  # envelope_id -> the first ack the app sent for it
        self.socket_received: list[Json] = []  # every message the app sent, acks included
        self.connections_opened = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._tickets: set[str] = set()
        self._ack_waiters: dict[str, asyncio.Future[Json]] = {}

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

    async def _close_sockets(self) -> None:
        """Close every connection: an open websocket would hold the server open."""
        for socket in list(self._sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    def _open_socket(self) -> web.WebSocketResponse:
        """The newest open connection: Slack sends each envelope over one of them."""
        for socket in reversed(self._sockets):
            if not socket.closed:
                return socket
        raise AssertionError(f"no app holds a Socket Mode connection\n{self.dump()}")

    def _connections_open(self, args: Json) -> Json:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        ws_url = "ws" + self.url.removeprefix("http")
        return {"url": f"{ws_url}{SOCKET_PATH}?ticket={ticket}"}

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
