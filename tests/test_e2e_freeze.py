"""End to end: after a verified rollback the service is frozen until an approver unfreezes it."""

from __future__ import annotations

from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    deploy,
    ephemeral_text,
    ready_to_approve,
    thread_text,
    wait_card,
)
from tests.support.bot import StartBot
from tests.support.docker import ComposeContainerFactory
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
