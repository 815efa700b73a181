"""What the fake Slack and the user's side share: identities, element kinds, message shapes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

Json = dict[str, Any]

TEAM_ID = "T1"
TEAM_DOMAIN = "rollbot-test"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A_ROLLBOT"
VERIFICATION_TOKEN = "legacy-verification-token"  # noqa: S105  (deprecated field, no secret)

ACK_DEADLINE = 3.0  # Slack shows the user "operation_timeout" after this

# What each stateful element reports in state.values; buttons and overflows report nothing.
STATE_KEYS = {
    "static_select": "selected_option",
    "radio_buttons": "selected_option",
    "multi_static_select": "selected_options",
    "checkboxes": "selected_options",
    "users_select": "selected_user",
    "conversations_select": "selected_conversation",
    "channels_select": "selected_channel",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
    "plain_text_input": "value",
    "number_input": "value",
    "email_text_input": "value",
    "url_text_input": "value",
}


def text_of(message: Json) -> str:
    """All the text a message shows: its text and every text inside its blocks."""
    parts = [message.get("text", "")]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                parts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.get("blocks", []))
    return "\n".join(p for p in parts if p)


def interactive(block: Json) -> Iterator[Json]:
    """Elements of a block that carry an action_id (not images, not rich text)."""
    for element in [*block.get("elements", []), block.get("accessory"), block.get("element")]:
        kind = element.get("type", "") if isinstance(element, dict) else ""
        if kind in STATE_KEYS or kind in ("button", "overflow") or kind.endswith("select"):
            yield element


def flag(value: Any) -> bool:
    """A boolean as JSON or as a form field ("true", "1")."""
    return value is True or value in ("true", "1", 1)


def as_sent(message: Json) -> Json:
    """A message as Slack shows it in API answers and payloads."""
    shown = {k: v for k, v in message.items() if k not in ("channel", "reply_broadcast")}
    return without_none(copy.deepcopy(shown))


def without_none(values: Json) -> Json:
    return {k: v for k, v in values.items() if v is not None}


class SlackError(Exception):
    """An error Slack reports in the body: `ok: false` with an error code."""

    def __init__(self, error: str, *messages: str) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages

    def body(self) -> Json:
        """The JSON body Slack answers with."""
        body: Json = {"ok": False, "error": self.error}
        if self.messages:
            body["response_metadata"] = {"messages": [f"[ERROR] {m}" for m in self.messages]}
        return body


def required(args: Json, name: str) -> Any:
    """Return a method argument Slack requires; without it Slack answers invalid_arguments."""
    if not args.get(name):
        raise SlackError("invalid_arguments", f"missing required field: {name}")
    return args[name]
