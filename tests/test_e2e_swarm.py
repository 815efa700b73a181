"""End to end: the Slack conversation driving the docker_swarm provider on a real swarm."""

from __future__ import annotations

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import APPROVER, ready_to_approve, service_config, thread_text
from tests.support.bot import StartBot
from tests.support.docker import wait_http
from tests.support.slack import text_of
from tests.support.swarm import Swarm, running_images


async def test_swarm_rollback_conversation(
    start_rollbot: StartBot, swarm: Swarm, docker_host: str
) -> None:
    service = await swarm.create("v1.2.3")
    await swarm.update(service, "v1.2.4")
    provider = {
        "provider": "docker_swarm",
        "service": service.name,
        "docker_host": docker_host,
        "poll_interval_seconds": 0.5,
        "update_timeout_seconds": 60,
    }
    # The task serves on the host network: the check asks it, not a stand-in.
    check = f"{service.url}/health"
    bot = await start_rollbot(
        service_config("backend", provider, check, body_contains='"version":"v1.2.3"')
    )

    card = await ready_to_approve(bot, "backend", "critical_bug")  # the previous spec
    shown = text_of(card)
    assert "v1.2.4" in shown and "v1.2.3" in shown
    assert "rollback=previous" in shown
    assert "`swarm-manager`" in shown and "`update-idle`" in shown and "`image-present`" in shown

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    assert await running_images(swarm.docker, service.name) == [swarm.image("v1.2.3")]
    assert '"version":"v1.2.3"' in await wait_http(check)
    thread = thread_text(bot.fake, card)
    assert f"Tasks on {swarm.image('v1.2.3')}: 1 running" in thread
    assert "Verification passed" in thread and "backend health" in thread
    (rb,) = await bot.store.find()
    assert (rb.state, rb.current_version, rb.target_version) == (
        State.SUCCEEDED,
        "v1.2.4",
        "v1.2.3",
    )
    assert await bot.store.locks() == []
