"""End to end: after a verified rollback the service is frozen until an approver unfreezes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiodocker

from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    backend_config,
    cards,
    confirm,
    deploy,
    ephemeral_text,
    has_action,
    ready_to_approve,
    running_image,
    thread_text,
    wait_card,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.docker import ComposeContainerFactory, unique_project
from tests.support.slack import text_of
from tests.test_e2e_incident_report import in_order


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
    assert has_action(done, ActionId.UNFREEZE) and "Unfreeze" in text_of(done)
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
    assert [e.action for e in await bot.store.audit_log(rb.id)][-2:] == ["drift", "unfrozen"]

    # The incident report made afterwards tells the freeze, the drift and the unfreeze.
    await bot.slack.command(f"report {rb.id}", user=APPROVER, channel=CHANNEL)
    uploads = await bot.fake.wait_for(
        lambda: (u := bot.fake.uploads(CHANNEL, card["ts"]))[1:] and u
    )
    timeline = uploads[-1]["content"].split("## Timeline", 1)[1].split("\n## ", 1)[0]
    assert in_order(
        timeline, ["v1.2.4 is kept out of", "now runs v1.2.4: the bad version", "Unfrozen by"]
    )


async def test_roll_back_again_and_a_later_rollback_keep_the_setting_from_before_the_first_freeze(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    docker_host: str,
    tmp_path: Path,
) -> None:
    before = await compose_container(unique_project(), "backend", "v1.2.4")
    override = tmp_path / "compose.rollbot.yaml"
    config = backend_config(before.project, before.port)
    environment = config["services"]["backend"]["environments"]["production"]
    environment["provider"]["freeze_file"] = str(override)
    config["runtime"] |= {"freeze_watch_seconds": 0.5, "scheduler_tick_seconds": 0.2}
    bot = await start_rollbot(config)
    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    assert "image: " in override.read_text() and "v1.2.3" in override.read_text()
    (first,) = await bot.store.find()
    rb_first = first.id

    # The pipeline puts the bad version back; "Roll back again" asks for the same target.
    await _redeploy(docker_host, before.project)
    await compose_container(before.project, "backend", "v1.2.4", port=before.port)
    alert = await bot.fake.wait_for(lambda: _alert(bot, card), timeout=30)
    count = len(cards(bot.fake))
    await bot.slack.click(card["channel"], alert["ts"], ActionId.ROLLBACK_AGAIN, user=REQUESTER)
    again = await bot.fake.wait_for(lambda: len(found := cards(bot.fake)) > count and found[-1])
    assert "v1.2.3" in text_of(again)
    await confirm(bot, again, "critical_bug")
    again = await wait_card(bot, again, lambda m: has_action(m, ActionId.APPROVE))
    await bot.slack.click(again["channel"], again["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, again))
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.3")

    # Then a rollback to an older version replaces that freeze with its own.
    await _redeploy(docker_host, before.project)
    await compose_container(before.project, "backend", "v1.2.4", port=before.port)
    third = await ready_to_approve(bot, "backend v1.2.2", "critical_bug")
    await bot.slack.click(third["channel"], third["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, third))
    assert "v1.2.2" in override.read_text() and "v1.2.3" not in override.read_text()
    frozen = [rb for rb in await bot.store.find() if rb.freeze is not None and rb.freeze.active]
    assert [rb.target_version for rb in frozen] == ["v1.2.2"]
    (second,) = [rb for rb in await bot.store.find() if rb.id not in {frozen[0].id, rb_first}]
    said = [e.text for e in await bot.store.events(second.id) if e.kind == "unfrozen"]
    assert any("Freeze replaced by the one of rollback" in text for text in said), said
    # rollbot's own rollback to v1.2.2 was not drift.
    assert "now runs v1.2.2" not in thread_text(bot.fake, again)

    # Unfreezing (the card's button) puts the file back as before the first freeze: absent.
    shown = await wait_card(bot, third, lambda m: has_action(m, ActionId.UNFREEZE))
    assert "Unfreeze (resume what the freeze paused)" in text_of(shown)
    await bot.slack.click(third["channel"], third["ts"], ActionId.UNFREEZE, user=APPROVER)
    await bot.fake.wait_for(lambda: "Unfrozen by" in thread_text(bot.fake, third))
    assert not override.exists()


async def _redeploy(docker_host: str, project: str) -> None:
    """Remove the project's container, as a pipeline does before starting a new one."""
    async with aiodocker.Docker(url=docker_host) as docker:
        (running,) = await docker.containers.list(
            filters={"label": [f"com.docker.compose.project={project}"]}
        )
        await running.delete(force=True)


def _alert(bot: RunningBot, card: dict[str, Any]) -> dict[str, Any] | None:
    """Return the freeze watch's drift alert in a card's thread, once posted."""
    return next(
        (m for m in bot.fake.thread(card["channel"], card["ts"]) if "is frozen, but" in text_of(m)),
        None,
    )
