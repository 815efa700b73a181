"""End to end: a platform failing mid-rollback, as the on-call engineer sees it in Slack.

The Docker engine is reached through the fault proxy, which answers the rollback's first
write (creating the new container) with a fault. Whatever the fault, the thread must say
what happened in words that name it, what runs now (asked from the engine), and what to
do; the service must be free for the next attempt; and the old container must still serve.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    backend_config,
    ready_to_approve,
    running_image,
    thread_text,
)
from tests.support.bot import StartBot
from tests.support.docker import ComposeContainerFactory, unique_project, wait_http
from tests.support.faults import Fault, FaultProxy, assert_names_cause


@pytest.fixture
async def engine_proxy(docker_host: str) -> AsyncIterator[FaultProxy]:
    """The fault proxy in front of the test Docker engine."""
    async with FaultProxy(docker_host, hang_seconds=8) as proxy:
        yield proxy


@pytest.mark.parametrize(
    "fault",
    [
        Fault.FORBIDDEN,
        Fault.NOT_FOUND,
        Fault.CONFLICT,
        Fault.SERVER_ERROR,
        Fault.BAD_GATEWAY_HTML,
        Fault.TIMEOUT,
        Fault.RESET,
    ],
)
async def test_a_fault_mid_rollback_is_explained_and_the_service_is_free_again(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    docker_host: str,
    engine_proxy: FaultProxy,
    fault: Fault,
) -> None:
    before = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(before.project, before.port)
    provider = config["services"]["backend"]["environments"]["production"]["provider"]
    provider["docker_host"] = engine_proxy.url.replace("http://", "tcp://")
    bot = await start_rollbot(config)
    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    engine_proxy.inject(fault, method="POST", path=r"/containers/create", times=None)

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "What to do next" in thread_text(bot.fake, card))

    assert engine_proxy.faulted, "the rollback never reached the faulted call"
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED
    assert_names_cause(fault, rb.error or "")
    thread = thread_text(bot.fake, card)
    assert rb.error and rb.error[:40] in thread
    assert "State of backend/production now:" in thread and "v1.2.4" in thread
    assert "<html" not in thread.lower()
    assert await bot.store.locks() == []
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.4")
    assert '"version":"v1.2.4"' in await wait_http(f"{before.url}/health")
