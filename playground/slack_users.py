"""The user's side of the fake Slack: what a person does, delivered as Slack delivers it.

`UserActions` plays the user's Slack client: it builds slash commands, clicks, selects and
view submissions from what the fake really holds. Its subclasses in `slack_clients` deliver
them: `SignedSlack` as signed HTTP requests, `SocketSlack` as Socket Mode envelopes.
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from playground.slack_model import (
    ACK_DEADLINE,
    APP_ID,
    STATE_KEYS,
    TEAM_DOMAIN,
    TEAM_ID,
    VERIFICATION_TOKEN,
    Json,
    as_sent,
    interactive,
    without_none,
)

if TYPE_CHECKING:
    from playground.slack_api import FakeSlack


class UserActions(ABC):
    """What a user does in Slack, built from what the fake shows them; subclasses deliver it.

    Every delivery answers `(status, body)`: what the bot acked with, within Slack's deadline.
    """

    def __init__(self, fake: FakeSlack, *, ack_timeout: float = ACK_DEADLINE) -> None:
        self.fake = fake
        self.ack_timeout = ack_timeout
        self.sent: list[Json] = []  # every payload or command form sent, for inspection
        # (channel, ts) -> (block_id, action_id) -> state entry, as the user's client keeps it
        self._selections: dict[tuple[str, str], dict[tuple[str, str], Any]] = {}

    @abstractmethod
    async def send_payload(self, payload: Json) -> tuple[int, str]:
        """Deliver an interactivity payload (block_actions, view_submission) and record it."""

    @abstractmethod
    async def send_command(self, fields: Mapping[str, str]) -> tuple[int, str]:
        """Deliver a slash command's fields."""

    # --- slash commands --------------------------------------------------------------------

    def command_fields(
        self, text: str, *, user: str = "U_REQ", channel: str = "C_OPS", command: str = "/rollback"
    ) -> dict[str, str]:
        """The form Slack posts for a slash command."""
        return {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel,
            "channel_name": self._channel_name(channel),
            "user_id": user,
            "user_name": self._user_name(user),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self.fake.new_response_url(channel=channel, user=user),
            "trigger_id": self.fake.new_trigger_id(user),
        }

    async def command(
        self, text: str, *, user: str = "U_REQ", channel: str = "C_OPS", command: str = "/rollback"
    ) -> tuple[int, str]:
        """Run a slash command as `user` in `channel`."""
        fields = self.command_fields(text, user=user, channel=channel, command=command)
        self.sent.append(fields)
        status, body = await self.send_command(fields)
        if status == 200 and body.strip():
            self.fake.command_answer(fields["response_url"], body)
        return status, body

    # --- interactivity ---------------------------------------------------------------------

    async def click(
        self, channel: str, ts: str, action_id: str, *, user: str, value: str | None = None
    ) -> tuple[int, str]:
        """Click a button that the message at (channel, ts) shows to `user` right now."""
        message, ephemeral = self._shown_message(channel, ts, user)
        block, element = _find_element(message, action_id)
        if element["type"] in STATE_KEYS:
            raise AssertionError(f"{action_id!r} is a {element['type']}; use select()")
        action = {
            "type": element["type"],
            "action_id": action_id,
            "block_id": block["block_id"],
            "text": element.get("text"),
            "value": element.get("value") if value is None else value,
            "style": element.get("style"),
            "action_ts": _action_ts(),
        }
        payload = self._block_actions(channel, message, ephemeral, user, without_none(action))
        return await self.send_payload(payload)

    async def select(
        self, channel: str, ts: str, action_id: str, option_value: str, *, user: str
    ) -> tuple[int, str]:
        """Pick an option of a select the message at (channel, ts) shows; later clicks carry it."""
        message, ephemeral = self._shown_message(channel, ts, user)
        block, element = _find_element(message, action_id)
        if STATE_KEYS.get(element["type"]) != "selected_option":
            raise AssertionError(f"{action_id!r} is a {element['type']}, not a single select")
        option = _option(element, option_value)
        self._selections.setdefault((channel, ts), {})[(block["block_id"], action_id)] = option
        action = {
            "type": element["type"],
            "action_id": action_id,
            "block_id": block["block_id"],
            "selected_option": option,
            "placeholder": element.get("placeholder"),
            "action_ts": _action_ts(),
        }
        payload = self._block_actions(channel, message, ephemeral, user, without_none(action))
        return await self.send_payload(payload)

    async def toggle_checkbox(
        self, channel: str, ts: str, action_id: str, option_value: str, *, user: str
    ) -> tuple[int, str]:
        """Tick or untick one box of a checkboxes element the message at (channel, ts) shows.

        As in Slack, the action and state.values carry every box of that element ticked
        after the click (`selected_options`), not only the one clicked. The boxes start from
        what the user's client holds: their own earlier clicks on the same block, else the
        element's initial_options as the message shows them now.
        """
        message, ephemeral = self._shown_message(channel, ts, user)
        block, element = _find_checkbox(message, action_id, option_value)
        key = (block["block_id"], action_id)
        chosen = self._selections.setdefault((channel, ts), {})
        shown = chosen[key] if key in chosen else element.get("initial_options") or []
        before = {o["value"] for o in shown}
        after = before ^ {option_value}
        selected = [dict(o) for o in element["options"] if o["value"] in after]
        chosen[key] = selected
        action = {
            "type": element["type"],
            "action_id": action_id,
            "block_id": block["block_id"],
            "selected_options": selected,
            "action_ts": _action_ts(),
        }
        payload = self._block_actions(channel, message, ephemeral, user, action)
        return await self.send_payload(payload)

    def selections(self, channel: str, ts: str) -> dict[tuple[str, str], Any]:
        """What the client holds for the message at (channel, ts): (block_id, action_id) -> pick."""
        return copy.deepcopy(self._selections.get((channel, ts), {}))

    async def close_view(self, view_id: str, *, user: str) -> tuple[int, str] | None:
        """Press a modal's Close; Slack tells the app only when the view asked (notify_on_close)."""
        view = self.fake.close_view(view_id)
        if not view.get("notify_on_close"):
            return None
        payload = {**self._interaction("view_closed", user), "view": view, "is_cleared": False}
        del payload["trigger_id"]  # view_closed payloads carry none
        return await self.send_payload(payload)

    async def submit_view(
        self, view_id_or_callback_id: str, values: Mapping[str, Mapping[str, Any]], *, user: str
    ) -> tuple[int, str]:
        """Fill the inputs of an open modal and press its submit button."""
        view = self.fake.find_view(view_id_or_callback_id)
        inputs = {
            (b["block_id"], b["element"]["action_id"]): b
            for b in view["blocks"]
            if b["type"] == "input"
        }
        chosen: dict[tuple[str, str], Any] = {}
        for block_id, actions in values.items():
            for action_id, raw in actions.items():
                if (block_id, action_id) not in inputs:
                    raise AssertionError(
                        f"view {view['id']} has no input {block_id}/{action_id}; has {list(inputs)}"
                    )
                chosen[(block_id, action_id)] = _state_value(
                    inputs[(block_id, action_id)]["element"], raw
                )
        state = _state_values(view["blocks"], chosen)
        for (block_id, action_id), block in inputs.items():
            entry = state[block_id][action_id]
            if not block.get("optional") and not entry[STATE_KEYS[entry["type"]]]:
                raise AssertionError(
                    f"Slack would not submit: required {block_id}/{action_id} empty"
                )
        view["state"] = {"values": state}
        payload = {**self._interaction("view_submission", user), "view": view, "response_urls": []}
        status, body = await self.send_payload(payload)
        self.fake.settle_submission(view["id"], status, body)
        return status, body

    # --- payload building ------------------------------------------------------------------

    def _interaction(self, kind: str, user: str) -> Json:
        return {
            "type": kind,
            "user": {
                "id": user,
                "username": self._user_name(user),
                "name": self._user_name(user),
                "team_id": TEAM_ID,
            },
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self.fake.new_trigger_id(user),
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _block_actions(
        self, channel: str, message: Json, ephemeral: bool, user: str, action: Json
    ) -> Json:
        ts = message["ts"]
        payload = {
            **self._interaction("block_actions", user),
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            },
            "channel": {"id": channel, "name": self._channel_name(channel)},
            "state": {
                "values": _state_values(message["blocks"], self._selections.get((channel, ts), {}))
            },
            "response_url": self.fake.new_response_url(
                channel=channel, user=user, message_ts=ts, ephemeral=ephemeral
            ),
            "actions": [action],
        }
        # Slack leaves the message out of payloads from ephemeral messages.
        if not ephemeral:
            payload["message"] = as_sent(message)
        return payload

    def _shown_message(self, channel: str, ts: str, user: str) -> tuple[Json, bool]:
        """The message `user` sees at (channel, ts), and whether it is ephemeral."""
        for ephemeral in self.fake.ephemerals_for(user):
            if (ephemeral["channel"], ephemeral["ts"]) == (channel, ts):
                return ephemeral, True
        return self.fake.message(channel, ts), False

    def _user_name(self, user: str) -> str:
        return str(self.fake.users.get(user, {}).get("name", user.lower()))

    def _channel_name(self, channel: str) -> str:
        return str(self.fake.channels.get(channel, {}).get("name", channel.lower()))


def _find_element(message: Json, action_id: str) -> tuple[Json, Json]:
    """The block and element with `action_id`, or an AssertionError naming what is shown."""
    shown = []
    for block in message["blocks"]:
        for element in interactive(block):
            if element["action_id"] == action_id:
                return block, element
            shown.append(element["action_id"])
    raise AssertionError(f"message {message['ts']} shows no {action_id!r}; it shows {shown}")


def _find_checkbox(message: Json, action_id: str, value: str) -> tuple[Json, Json]:
    """The block and checkboxes element with `action_id` that offers the option `value`."""
    for block in message["blocks"]:
        for element in interactive(block):
            if element["action_id"] != action_id or element["type"] != "checkboxes":
                continue
            if any(o["value"] == value for o in element.get("options", [])):
                return block, element
    raise AssertionError(f"message {message['ts']} shows no {action_id!r} box {value!r}")


def _option(element: Json, value: str) -> Json:
    options = [*element.get("options", [])]
    for group in element.get("option_groups", []):
        options.extend(group["options"])
    for option in options:
        if option["value"] == value:
            return dict(option)
    raise AssertionError(
        f"{element['action_id']!r} has no option {value!r}; has {[o['value'] for o in options]}"
    )


def _state_value(element: Json, raw: Any) -> Any:
    """What state.values holds for an element given the value a user entered or picked."""
    key = STATE_KEYS.get(element["type"])
    if key is None:
        raise AssertionError(f"{element['action_id']!r} is a {element['type']}, it holds no value")
    if key == "selected_option":
        return _option(element, raw)
    if key == "selected_options":
        return [_option(element, v) for v in raw]
    return raw


def _state_values(blocks: list[Json], chosen: Mapping[tuple[str, str], Any]) -> Json:
    """state.values for every stateful element: the user's choice, else its initial value."""
    values: Json = {}
    for block in blocks:
        for element in interactive(block):
            key = STATE_KEYS.get(element["type"])
            if key is None:
                continue
            initial = element.get("initial_" + key.removeprefix("selected_"))
            if initial is None and key == "selected_options":
                initial = []
            value = chosen.get((block["block_id"], element["action_id"]), initial)
            values.setdefault(block["block_id"], {})[element["action_id"]] = {
                "type": element["type"],
                key: value,
            }
    return values


def _action_ts() -> str:
    return f"{time.time():.6f}"
