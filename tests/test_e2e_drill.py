"""End to end: `/rollback drill` and `/rollback history` through a running bot and dockerd."""

from __future__ import annotations

import copy
import time
from typing import Any

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    backend_config,
    cards,
    ephemeral_text,
    ready_to_approve,
    request_card,
    running_image,
    thread_text,
    unechoed,
    wait_card,
)
from tests.support.bot import StartBot
from tests.support.docker import (
    ComposeContainer,
    ComposeContainerFactory,
    docker_cli,
    unique_project,
    wait_http,
)
from tests.support.slack import FakeSlack, text_of


def staging_config(container: ComposeContainer) -> dict[str, Any]:
    """backend in staging on the container, and a production the drill must never touch."""
    config = backend_config(container.project, container.port)
    environments = config["services"]["backend"]["environments"]
    environments["staging"] = environments["production"]
    environments["production"] = copy.deepcopy(environments["staging"])
    return config


def answer(fake: FakeSlack, start: str) -> str | None:
    """The latest private answer to a command that starts with these words."""
    texts = [unechoed(str(body.get("text", ""))) for _, body in fake.responses]
    return next((t for t in reversed(texts) if t.startswith(start)), None)


def started_images(docker_host: str, project: str, since: float) -> list[str]:
    """Tags of the containers the engine started for a project since then, in order."""
    out = docker_cli(
        docker_host,
        "events",
        "--since",
        f"{since:.6f}",
        "--until",
        str(int(time.time()) + 1),
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--filter",
        "event=start",
        "--format",
        "{{.Actor.Attributes.image}}",
    )
    return [line.rsplit(":", 1)[1] for line in out.split()]


async def test_drill_then_history_lists_rollbacks_and_drills_apart(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    bot = await start_rollbot(staging_config(container))
    fake = bot.fake

    status, _ = await bot.slack.command("drill backend env=production", channel=CHANNEL)
    assert status == 200
    refusal = await fake.wait_for(
        lambda: "never run in a protected environment" in (t := ephemeral_text(fake)) and t
    )
    assert "backend/production is protected" in refusal
    assert cards(fake) == [] and await bot.store.find() == []

    since = time.time()
    card = await request_card(bot, "drill backend")
    assert "Rollback drill backend/staging" in text_of(card)
    assert "`v1.2.4` → `v1.2.3` → `v1.2.4`" in text_of(card)
    await fake.wait_for(lambda: "passed* on backend/staging" in thread_text(fake, card))
    thread = thread_text(fake, card)
    assert thread.index("Leg 1/2") < thread.index("Leg 2/2")
    assert thread.count("Verification passed") == 2
    final = await wait_card(bot, card, lambda m: "succeeded" in text_of(m))
    assert "passed: back in" in text_of(final)
    assert started_images(docker_host, container.project, since) == ["v1.2.3", "v1.2.4"]
    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.4")
    assert '"version":"v1.2.4"' in await wait_http(f"{container.url}/health")
    (drill,) = await bot.store.find()
    assert drill.drill and drill.state is State.SUCCEEDED
    assert drill.drill_back_seconds and drill.drill_forward_seconds
    assert await bot.store.locks() == []

    real = await ready_to_approve(bot, "backend v1.2.3 env=staging", "critical_bug")
    await bot.slack.click(real["channel"], real["ts"], ActionId.APPROVE, user=APPROVER)
    await fake.wait_for(lambda: "[RESOLVED]" in thread_text(fake, real))
    dropped = await request_card(bot, "backend v1.2.2 env=staging")
    await bot.slack.click(dropped["channel"], dropped["ts"], ActionId.CANCEL, user=REQUESTER)
    await wait_card(bot, dropped, lambda m: "cancelled" in text_of(m))
    cancelled, succeeded, _ = await bot.store.find()

    await bot.slack.command("history backend", channel=CHANNEL)
    shown = await fake.wait_for(lambda: answer(fake, "*Rollback history of backend*"))
    rollbacks, drills = shown.split("*Drills*")
    assert rollbacks.index(cancelled.id) < rollbacks.index(succeeded.id)  # newest first
    assert drill.id not in rollbacks and drill.id in drills
    succeeded_line = rollbacks[rollbacks.index(succeeded.id) :]
    assert "*succeeded*, took" in succeeded_line and "(ran " in succeeded_line
    assert "critical" in succeeded_line and f"approved by <@{APPROVER}>" in succeeded_line
    assert f"requested by <@{REQUESTER}>" in succeeded_line
    assert "`v1.2.4` → `v1.2.3`" in succeeded_line
    assert "*cancelled*" in rollbacks and f"Cancelled by <@{REQUESTER}>" in rollbacks
    assert "*passed*, back " in drills and ", forward " in drills

    await bot.slack.command("history nope", channel=CHANNEL)
    await fake.wait_for(lambda: "Unknown service 'nope'" in ephemeral_text(fake))
    await bot.slack.command("history env=qa", channel=CHANNEL)
    await fake.wait_for(lambda: "No service has an environment 'qa'" in ephemeral_text(fake))
    await bot.slack.command("history backend env=production", channel=CHANNEL)
    await fake.wait_for(
        lambda: "No rollbacks or drills recorded for backend/production yet" in ephemeral_text(fake)
    )
