"""End to end: the card's preflight, and what the card showed is what gets approved."""

from __future__ import annotations

from pathlib import Path

import aiodocker

from bot.models import State
from handlers.ids import REASON_INPUT, ActionId, BlockId
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
from tests.support.migrations import INIT, PrismaProject
from tests.support.slack import text_of
from tests.test_e2e_migrations import migrations_config


async def test_a_deploy_between_card_and_click_refuses_the_approval_and_redraws_the_card(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before, bot = await deploy(start_rollbot, compose_container)
    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    assert "v1.2.4" in text_of(card)
    # The compose file the bot cannot read is said once, in the preflight.
    assert text_of(card).count("Could not check the compose file") == 1
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


async def test_a_failing_preflight_takes_break_glass_naming_the_check(
    start_rollbot: StartBot, prisma_db: PrismaProject, tmp_path: Path
) -> None:
    # The backup folder is a file: pg_dump could not write there, so the rollback cannot run.
    blocked = tmp_path / "backups"
    blocked.write_text("not a folder")
    config = migrations_config(prisma_db, blocked)
    bot = await start_rollbot(config, extra_env={"DATABASE_URL": prisma_db.dsn})
    before = await prisma_db.snapshot()

    card = await ready_to_approve(bot, f"db {INIT}", "failed_migration")
    shown = text_of(card)
    assert ":x: `backup-writable`" in shown and "Preflight failed: break-glass" in shown
    assert "*Exactly:* `migration " in shown and "↳ migrations undone:" in shown

    # A reason that does not name the failing check is refused; nothing is approved.
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    view = await bot.fake.wait_for(lambda: bot.fake.views and list(bot.fake.views.values())[-1])
    reason = {BlockId.REASON: {REASON_INPUT: "the database is on fire"}}
    await bot.slack.submit_view(view["id"], reason, user=APPROVER)
    await bot.fake.wait_for(lambda: "missing: backup-writable" in ephemeral_text(bot.fake))
    (rb,) = await bot.store.find()
    assert rb.state is State.AWAITING_APPROVAL

    # Named, the override goes through and is recorded; the rollback then meets the cause.
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    view = await bot.fake.wait_for(
        lambda: len(bot.fake.views) > 1 and list(bot.fake.views.values())[-1]
    )
    named = "backup-writable: the backup is taken by hand, go ahead"
    await bot.slack.submit_view(view["id"], {BlockId.REASON: {REASON_INPUT: named}}, user=APPROVER)
    await bot.fake.wait_for(lambda: "What to do next" in thread_text(bot.fake, card))

    (rb,) = await bot.store.find()
    assert rb.break_glass_reason == named
    audit = await bot.store.audit_log(rb.id)
    assert any(a.action == "preflight_override" and a.actor == APPROVER for a in audit)
    assert rb.state is State.FAILED and "Nothing was changed" in (rb.error or "")
    assert await prisma_db.snapshot() == before
