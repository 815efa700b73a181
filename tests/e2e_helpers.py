"""Building blocks of the end-to-end conversations: configs and reading the card."""

from __future__ import annotations

from typing import Any

import aiodocker

from bot.models import Rollback
from handlers.ids import ActionId
from tests.support.bot import RunningBot, StartBot
from tests.support.docker import (
    LEAKY_CMD,
    LEAKY_DSN,
    ComposeContainer,
    ComposeContainerFactory,
    unique_project,
)
from tests.support.slack import FakeSlack, text_of

CHANNEL = "C_OPS"
REQUESTER = "U_REQ"
APPROVER = "U_APPROVER"
OUTSIDER = "U_NOBODY"


def backend_rollback(rollback_id: str = "rb-0000abcd", **fields: Any) -> Rollback:
    """A rollback of backend/production from v1.2.4 to v1.2.3 by REQUESTER; `fields` override."""
    values: dict[str, Any] = {
        "id": rollback_id,
        "service": "backend",
        "environment": "production",
        "requested_by": REQUESTER,
        "current_version": "v1.2.4",
        "target_version": "v1.2.3",
    }
    return Rollback.model_validate(values | fields)


def service_config(
    service: str,
    provider: dict[str, Any],
    check_url: str,
    *,
    check_name: str | None = None,
    body_contains: str | None = None,
    **approval: Any,
) -> dict[str, Any]:
    """A config with one service in production, verified over HTTP."""
    return {
        "approval": {
            "approvers": {"users": [APPROVER, "U_APPROVER2"], "groups": ["S_ONCALL"]},
            "required_approvals": 1,
            **approval,
        },
        "runtime": {"verify_deadline_seconds": 20, "verify_interval_seconds": 0.5},
        "services": {
            service: {
                "environments": {
                    "production": {
                        "provider": provider,
                        "checks": [
                            {
                                "name": check_name or f"{service} health",
                                "type": "http",
                                "url": check_url,
                                "expect_status": [200],
                                "body_contains": body_contains,
                            }
                        ],
                    }
                }
            }
        },
    }


def backend_config(project: str, port: int, **approval: Any) -> dict[str, Any]:
    """A config with one docker_compose service verified over HTTP."""
    provider = {
        "provider": "docker_compose",
        "project": project,
        "service": "backend",
        "healthy_timeout_seconds": 20,
    }
    url = f"http://127.0.0.1:{port}/health"
    return service_config("backend", provider, url, body_contains='"status":"ok"', **approval)


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


def card_fields(message: dict[str, Any]) -> dict[str, str]:
    """Return the card's fields as a reader sees them: {"Running now": "`v1.2.3`", ...}."""
    fields: dict[str, str] = {}
    for block in message.get("blocks") or []:
        for field in block.get("fields") or []:
            title, _, value = field["text"].partition("\n")
            fields[title.strip("*")] = value
    return fields


def thread_text(fake: FakeSlack, card: dict[str, Any]) -> str:
    """Return all text of a card's thread replies."""
    return "\n".join(text_of(m) for m in fake.thread(card["channel"], card["ts"]))


def unechoed(text: str) -> str:
    """A private answer to a command, without its first line: the command it answers."""
    said, _, answer = text.partition("\n")
    assert said.startswith("`/rollback") and said.endswith("`"), text
    return answer


def ephemeral_text(fake: FakeSlack) -> str:
    """Return every ephemeral reply the bot sent through response URLs or the API."""
    parts = [str(body.get("text", "")) for _, body in fake.responses]
    parts += [text_of(m) for m in fake.ephemerals]
    return "\n".join(parts)


async def deploy(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, **approval: Any
) -> tuple[ComposeContainer, RunningBot]:
    """Run backend v1.2.4 in a new compose project and a bot configured for it."""
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    bot = await start_rollbot(backend_config(container.project, container.port, **approval))
    return container, bot


async def leaky_backend(compose_container: ComposeContainerFactory) -> dict[str, Any]:
    """Run backend v1.2.4 whose other versions print secrets and crash; return its config.

    The config's postgres check names DATABASE_URL, so rollbot knows its value.
    """
    container = await compose_container(
        unique_project(), "backend", "v1.2.4", env={"DATABASE_URL": LEAKY_DSN}, cmd=LEAKY_CMD
    )
    config = backend_config(container.project, container.port)
    checks = config["services"]["backend"]["environments"]["production"]["checks"]
    checks.append({"name": "db", "type": "postgres", "dsn_env": "DATABASE_URL"})
    return config


async def request_card(bot: RunningBot, text: str, user: str = REQUESTER) -> dict[str, Any]:
    """Send the command and return the card it posts."""
    count = len(cards(bot.fake))
    status, _ = await bot.slack.command(text, user=user, channel=CHANNEL)
    assert status == 200
    return await bot.fake.wait_for(lambda: len(found := cards(bot.fake)) > count and found[-1])


async def confirm(bot: RunningBot, card: dict[str, Any], issue: str, user: str = REQUESTER) -> None:
    """Pick an issue type and confirm the severity."""
    await bot.slack.select(card["channel"], card["ts"], ActionId.ISSUE_SELECT, issue, user=user)
    await bot.fake.wait_for(
        lambda: "Severity:" in text_of(bot.fake.message(card["channel"], card["ts"]))
    )
    await bot.slack.click(card["channel"], card["ts"], ActionId.CONFIRM_SEVERITY, user=user)


async def wait_card(bot: RunningBot, card: dict[str, Any], predicate: Any) -> dict[str, Any]:
    """Wait until the stored card satisfies a predicate and return it."""
    return await bot.fake.wait_for(
        lambda: m if predicate(m := bot.fake.message(card["channel"], card["ts"])) else None
    )


async def running_image(docker_host: str, project: str) -> tuple[str, dict[str, Any]]:
    """Return the image and inspect data of the one running container of a project."""
    async with aiodocker.Docker(url=docker_host) as docker:
        found = await docker.containers.list(
            filters={"label": [f"com.docker.compose.project={project}"]}
        )
        assert len(found) == 1, [c["Names"] for c in found]
        info = await found[0].show()
        return info["Config"]["Image"], info


async def ready_to_approve(bot: RunningBot, text: str, issue: str) -> dict[str, Any]:
    """Request a rollback, confirm its severity and return the card showing Approve."""
    card = await request_card(bot, text)
    await confirm(bot, card, issue)
    return await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
