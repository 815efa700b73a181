"""End to end: after a verified rollback the service is frozen until an approver unfreezes it."""

from __future__ import annotations

import aiodocker

from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    backend_config,
    deploy,
    ephemeral_text,
    has_action,
    ready_to_approve,
    thread_text,
    wait_card,
)
from tests.support.bot import StartBot
from tests.support.docker import ComposeContainerFactory, unique_project
from tests.support.slack import text_of


async def test_a_rollback_freezes_the_service_until_an_approver_unfreezes_it(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _, bot = await deploy(start_rollbot, compose_container)
    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    # The card and the status say what is kept out, and how to end it.
    done = await wait_card(bot, card, lambda m: "Freeze:" in text_of(m))
    assert "v1.2.4 is kept out of backend/production" in text_of(done)
    await bot.slack.command("status", user=APPROVER, channel=CHANNEL)
    await bot.fake.wait_for(lambda: "*Frozen:*" in ephemeral_text(bot.fake))
    (rb,) = await bot.store.find()
    assert rb.freeze is not None and rb.freeze.active and rb.freeze.bad == "v1.2.4"
    assert "frozen" in [e.action for e in await bot.store.audit_log(rb.id)]

    # Only an approver other than the requester ends it.
    await bot.slack.command("unfreeze backend", user=REQUESTER, channel=CHANNEL)
    await bot.fake.wait_for(lambda: "someone else must unfreeze it" in ephemeral_text(bot.fake))
    (rb,) = await bot.store.find()
    assert rb.freeze is not None and rb.freeze.active

    await bot.slack.command("unfreeze backend", user=APPROVER, channel=CHANNEL)
    await bot.fake.wait_for(lambda: "Unfrozen by" in thread_text(bot.fake, card))
    (rb,) = await bot.store.find()
    assert rb.freeze is not None and not rb.freeze.active and rb.freeze.ended_by == APPROVER
    assert "unfrozen" in [e.action for e in await bot.store.audit_log(rb.id)]
    await bot.slack.command("unfreeze backend", user=APPROVER, channel=CHANNEL)
    await bot.fake.wait_for(lambda: "is not frozen" in ephemeral_text(bot.fake))


async def test_a_redeploy_of_the_bad_version_is_posted_with_roll_back_again_and_unfreeze(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(before.project, before.port)
    config["runtime"] |= {"freeze_watch_seconds": 0.5, "scheduler_tick_seconds": 0.2}
    bot = await start_rollbot(config)
    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    # The pipeline deploys the bad version again behind rollbot's back.
    async with aiodocker.Docker(url=docker_host) as docker:
        (running,) = await docker.containers.list(
            filters={"label": [f"com.docker.compose.project={before.project}"]}
        )
        await running.delete(force=True)
    await compose_container(before.project, "backend", "v1.2.4", port=before.port)

    alert = await bot.fake.wait_for(
        lambda: next(
            (
                m
                for m in bot.fake.thread(card["channel"], card["ts"])
                if "is frozen, but" in text_of(m)
            ),
            None,
        ),
        timeout=30,
    )
    assert "now runs v1.2.4: the bad version" in text_of(alert)
    assert has_action(alert, ActionId.ROLLBACK_AGAIN) and has_action(alert, ActionId.UNFREEZE)
    (rb,) = await bot.store.find()
    assert "drift" in [e.action for e in await bot.store.audit_log(rb.id)]

    # Accepting the version ends the freeze; the watch stops posting.
    await bot.slack.click(card["channel"], alert["ts"], ActionId.UNFREEZE, user=APPROVER)
    await bot.fake.wait_for(lambda: "Unfrozen by" in thread_text(bot.fake, card))
    (rb,) = await bot.store.find()
    assert rb.freeze is not None and not rb.freeze.active
