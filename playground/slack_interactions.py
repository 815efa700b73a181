"""What a user's interaction hands the bot in the fake Slack: trigger_ids and response_urls.

A trigger_id opens one modal (views.open) within `TRIGGER_TTL`; views.update and the
bot's answer to a view_submission change the modals a user sees. A response_url takes
`RESPONSE_URL_USES` posts that replace, delete or answer the message it came from.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from typing import Any

from aiohttp import web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.views import View

from playground.slack_limits import MESSAGE_BLOCKS_MAX, VIEW_BLOCKS_MAX, check_text
from playground.slack_messages import MessageStore
from playground.slack_model import APP_ID, BOT_ID, TEAM_ID, Json, SlackError, flag, required

TRIGGER_TTL = 3.0  # a trigger_id expires this long after the interaction
RESPONSE_URL_USES = 5  # a response_url accepts this many posts


class Interactions(MessageStore):
    """Trigger_ids and the modals they open, response_urls and what their posts do."""

    def __init__(self) -> None:
        super().__init__()
        self.responses: list[tuple[str, Json]] = []
        self.response_errors: list[str] = []  # what Slack answered response_url posts it refused
        self.views: dict[str, Json] = {}
        self._triggers: dict[str, float] = {}
        self._trigger_users: dict[str, str] = {}  # who acted, so their client shows the modal
        self.view_users: dict[str, str] = {}  # view id -> the user whose client shows it
        self._used_triggers: set[str] = set()
        self._response_targets: dict[str, Json] = {}
        self._closed_views: set[str] = set()

    def start_over(self) -> None:
        """Forget modals, trigger_ids and response_urls, with everything Slack kept before."""
        super().start_over()
        self.responses.clear()
        self.response_errors.clear()
        self.views.clear()
        self.view_users.clear()
        self._triggers.clear()
        self._trigger_users.clear()
        self._response_targets.clear()
        self._closed_views.clear()

    def new_trigger_id(self, user: str | None = None) -> str:
        """Issue a trigger_id, as Slack does with every interaction (by `user`, if known)."""
        trigger_id = f"{next(self._ids)}.{int(time.time())}.{secrets.token_hex(8)}"
        self._triggers[trigger_id] = time.monotonic()
        if user is not None:
            self._trigger_users[trigger_id] = user
        return trigger_id

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

    # --- response_url ----------------------------------------------------------------------

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

    def command_answer(self, response_url: str, answer: str) -> None:
        """Show what a bot acked a slash command with, as Slack does: a message to the user.

        A JSON body is a message (private unless `response_type` is `in_channel`); any
        other body is its text. It does not use up one of the response_url's posts.
        """
        token = response_url.rsplit("/", 1)[-1]
        try:
            body = json.loads(answer)
        except ValueError:
            body = {"text": answer}
        if not isinstance(body, dict):
            body = {"text": answer}
        self.responses.append((token, body))
        target = self._response_targets.get(token)
        if target is not None:
            self._apply_response(target, body)

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
        self.views[view_id] = self._stored_view(required(args, "view"), view_id)
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
        self.views[view_id] = self._stored_view(required(args, "view"), view_id)
        return {"view": copy.deepcopy(self.views[view_id])}

    # --- state helpers ---------------------------------------------------------------------

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
