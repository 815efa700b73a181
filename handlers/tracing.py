"""One trace per Slack request: its id and what was asked, in every log line it causes.

Bolt's global middlewares run one after another before the listener, not around it, so
a middleware cannot hold a context open for the listener's work. The app's dispatch
can: HTTP and Socket Mode both hand each request to it, and the listener (and whatever
it does after its ack, a rollback run included) runs in tasks started inside it, which
copy the bound context.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.tracing import traced


def _id(value: Any) -> str | None:
    """Return a Slack id from a string or from an object's `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def describe(body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Name a Slack request (the span's name) and what identifies it (logged with it)."""
    event = body.get("event") if isinstance(body.get("event"), dict) else None
    if "command" in body:
        kind, name = "command", str(body["command"])
    elif body.get("type") == "block_actions":
        actions = body.get("actions") or [{}]
        kind, name = "action", str(actions[0].get("action_id", ""))
    elif isinstance(body.get("view"), dict):
        kind, name = "view", str(body["view"].get("callback_id", ""))
    elif event is not None:
        kind, name = "event", str(event.get("type", ""))
    else:
        kind, name = str(body.get("type") or "request"), str(body.get("callback_id") or "")
    source = event or body
    user = _id(source.get("user")) or _id(body.get("user_id"))
    channel = _id(source.get("channel")) or _id(body.get("channel_id"))
    fields = {"slack_" + kind: name, "user": user, "channel": channel}
    return f"slack {kind} {name}".rstrip(), {k: v for k, v in fields.items() if v}


class TracedApp(AsyncApp):
    """The Bolt app, each request of which runs in a trace of its own."""

    async def async_dispatch(self, req: AsyncBoltRequest) -> BoltResponse:
        """Dispatch a request inside its trace, the work after its ack included."""
        name, fields = describe(req.body)
        attributes = {f"slack.{key.removeprefix('slack_')}": value for key, value in fields.items()}
        with traced(name, root=True, log_fields=fields, attributes=attributes):
            return await super().async_dispatch(req)
