"""Building blocks of the end-to-end conversations: configs and reading the card."""

from __future__ import annotations

from typing import Any

from handlers.ids import ActionId
from tests.support.slack import FakeSlack, text_of

CHANNEL = "C_OPS"
REQUESTER = "U_REQ"
APPROVER = "U_APPROVER"
OUTSIDER = "U_NOBODY"


def backend_config(project: str, port: int, **approval: Any) -> dict[str, Any]:
    """A config with one docker_compose service verified over HTTP."""
    return {
        "approval": {
            "approvers": {"users": [APPROVER, "U_APPROVER2"], "groups": ["S_ONCALL"]},
            "required_approvals": 1,
            **approval,
        },
        "runtime": {"verify_deadline_seconds": 20, "verify_interval_seconds": 0.5},
        "services": {
            "backend": {
                "environments": {
                    "production": {
                        "provider": {
                            "provider": "docker_compose",
                            "project": project,
                            "service": "backend",
                            "healthy_timeout_seconds": 20,
                        },
                        "checks": [
                            {
                                "name": "backend health",
                                "type": "http",
                                "url": f"http://127.0.0.1:{port}/health",
                                "expect_status": [200],
                                "body_contains": '"status":"ok"',
                            }
                        ],
                    }
                }
            }
        },
    }


def cards(fake: FakeSlack, channel: str = CHANNEL) -> list[dict[str, Any]]:
    """Return the thread roots rollbot posted in a channel."""
    return [m for m in fake.messages(channel) if not m.get("thread_ts") and m.get("blocks")]


def has_action(message: dict[str, Any], action_id: ActionId) -> bool:
    """Return True when a message shows an element with this action_id."""
    return any(
        element.get("action_id") == action_id
        for block in message.get("blocks") or []
        for element in (block.get("elements") or []) + [block.get("accessory") or {}]
    )


def thread_text(fake: FakeSlack, card: dict[str, Any]) -> str:
    """Return all text of a card's thread replies."""
    return "\n".join(text_of(m) for m in fake.thread(card["channel"], card["ts"]))


def ephemeral_text(fake: FakeSlack) -> str:
    """Return every ephemeral reply the bot sent through response URLs or the API."""
    parts = [str(body.get("text", "")) for _, body in fake.responses]
    parts += [text_of(m) for m in fake.ephemerals]
    return "\n".join(parts)
