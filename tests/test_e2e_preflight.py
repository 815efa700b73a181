"""End to end: what the card showed is what gets approved (no time-of-check/time-of-use gap)."""

from __future__ import annotations

import aiodocker

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    deploy,
    ephemeral_text,
    ready_to_approve,
    running_image,
    thread_text,
    wait_card,
)
from tests.support.bot import StartBot
from tests.support.docker import ComposeContainerFactory, wait_http
from tests.support.slack import text_of


async def test_a_deploy_between_card_and_click_refuses_the_approval_and_redraws_the_card(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before, bot = await deploy(start_rollbot, compose_container)
    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    assert "v1.2.4" in text_of(card)
    # Someone deploys v1.2.2 while the card waits for its approval.
    async with aiodocker.Docker(url=docker_host) as docker:
        await docker.containers.container(before.id).delete(force=True)
    await compose_container(before.project, "backend", "v1.2.2", port=before.port)

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)

    refusal = await bot.fake.wait_for(
        lambda: "changed since this card was shown" in (t := ephemeral_text(bot.fake)) and t
    )
    assert "v1.2.4" in refusal and "v1.2.2" in refusal
    redrawn = await wait_card(bot, card, lambda m: "`v1.2.2`" in text_of(m))
    assert "Running now" in text_of(redrawn)
    (rb,) = await bot.store.find()
    assert rb.state is State.AWAITING_APPROVAL and rb.current_version == "v1.2.2"
    assert "refused" in [e.action for e in await bot.store.audit_log(rb.id)]
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.2")  # nothing ran

    # Approved again on the card that shows what runs, it goes ahead.
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.3")
    assert '"version":"v1.2.3"' in await wait_http(f"{before.url}/health")
