"""End to end: signed Slack requests to a running `rollbot serve --http`, a real dockerd."""

from __future__ import annotations

import asyncio
import json

from bot.models import State
from bot.time_words import duration
from handlers.ids import REASON_INPUT, ActionId, BlockId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    OUTSIDER,
    REQUESTER,
    backend_config,
    card_fields,
    cards,
    confirm,
    deploy,
    ephemeral_text,
    has_action,
    ready_to_approve,
    request_card,
    running_image,
    thread_text,
    wait_card,
)
from tests.support.bot import StartBot
from tests.support.docker import ComposeContainerFactory, unique_project, wait_http
from tests.support.slack import text_of


async def test_full_rollback_conversation(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    project = unique_project()
    before = await compose_container(project, "backend", "v1.2.4", env={"APP_MODE": "prod"})
    bot = await start_rollbot(backend_config(project, before.port))
    fake = bot.fake

    card = await request_card(bot, "backend v1.2.3")
    shown = text_of(card)
    assert "v1.2.4" in shown and "v1.2.3" in shown and "Plan" in shown
    assert has_action(card, ActionId.ISSUE_SELECT)

    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    assert "critical" in text_of(card)

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await fake.wait_for(lambda: "[RESOLVED]" in thread_text(fake, card))

    image, info = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.3")
    assert info["Name"] == f"/{before.name}"
    assert info["Config"]["Labels"]["com.docker.compose.service"] == "backend"
    assert "APP_MODE=prod" in info["Config"]["Env"]
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert '"version":"v1.2.3"' in await wait_http(f"{before.url}/health")

    thread = thread_text(fake, card)
    assert "Verification passed" in thread and "backend health" in thread
    assert "Rolled back to v1.2.3" in thread
    broadcast = [m for m in fake.messages(CHANNEL) if m.get("reply_broadcast")]
    assert any("[RESOLVED]" in text_of(m) for m in broadcast)
    final = fake.message(card["channel"], card["ts"])
    assert "succeeded" in text_of(final)
    # The finished card says what runs now and what ran before, not what ran at the request.
    fields = card_fields(final)
    assert fields["Running now"] == "`v1.2.3`"
    assert fields["Before the rollback"] == "`v1.2.4`"
    assert "Roll back to" not in fields

    rollbacks = await bot.store.find()
    assert [(rb.state, rb.target_version) for rb in rollbacks] == [(State.SUCCEEDED, "v1.2.3")]
    # The internal notification says how long it took, to the second when under a minute.
    took = duration(rollbacks[0].finished_at - rollbacks[0].created_at)
    assert f"*Duration:* {took}\n" in thread
    scheduled = {"escalation", "monitoring_started"}  # timed work, its own tests
    kinds = [e.kind for e in await bot.store.events(rollbacks[0].id) if e.kind not in scheduled]
    assert kinds[:5] == ["requested", "severity", "approval", "approved", "started"]
    # A verified rollback freezes the service: the last word of its timeline.
    assert kinds[-3:] == ["verification", "succeeded", "frozen"]
    audit = await bot.store.audit_log(rollbacks[0].id)
    assert {(a.actor, a.action) for a in audit} >= {
        (REQUESTER, "requested"),
        (APPROVER, "approval"),
        ("rollbot", "succeeded"),
    }
    assert await bot.store.locks() == []

    # The thread hears of the outcome before the run's last log line is written.
    await fake.wait_for(lambda: "rollback finished" in bot.log())
    lines = [json.loads(line) for line in bot.log().splitlines() if line.startswith("{")]
    steps = [line for line in lines if line["event"] == "step"]
    assert steps and all(
        line["rollback_id"] == rollbacks[0].id
        and line["service"] == "backend"
        and line["environment"] == "production"
        for line in steps
    )
    assert any(line["event"] == "rollback finished" and line["duration_s"] > 0 for line in lines)


async def test_self_approval_refused_for_non_critical(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before, bot = await deploy(start_rollbot, compose_container)
    card = await ready_to_approve(bot, "backend v1.2.3", "performance_degradation")

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=REQUESTER)
    await bot.fake.wait_for(lambda: "someone else must approve" in ephemeral_text(bot.fake))
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=OUTSIDER)
    await bot.fake.wait_for(lambda: "not an approver" in ephemeral_text(bot.fake))

    (rb,) = await bot.store.find()
    assert rb.state is State.AWAITING_APPROVAL
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.4")


async def test_break_glass_self_approval_for_critical_needs_a_reason(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    approvers = {"users": [APPROVER, REQUESTER]}  # break-glass is for approvers only
    before, bot = await deploy(start_rollbot, compose_container, approvers=approvers)
    card = await ready_to_approve(bot, "backend v1.2.3", "security_vulnerability")

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=REQUESTER)
    view = await bot.fake.wait_for(lambda: bot.fake.views and next(iter(bot.fake.views.values())))
    await bot.slack.submit_view(
        view["id"],
        {BlockId.REASON: {REASON_INPUT: "Credentials leak, approvers asleep"}},
        user=REQUESTER,
    )
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    (rb,) = await bot.store.find()
    assert rb.state is State.SUCCEEDED
    assert rb.break_glass_reason == "Credentials leak, approvers asleep"
    audit = await bot.store.audit_log(rb.id)
    assert any(a.action == "break_glass" and a.actor == REQUESTER for a in audit)
    assert "break-glass" in thread_text(bot.fake, card)
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.3")


async def test_reject_and_cancel_change_nothing(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before, bot = await deploy(start_rollbot, compose_container)

    card = await request_card(bot, "backend v1.2.3")
    await confirm(bot, card, "feature_broken")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.REJECT))
    await bot.slack.click(card["channel"], card["ts"], ActionId.REJECT, user=APPROVER)
    rejected = await wait_card(bot, card, lambda m: "rejected" in text_of(m))
    fields = card_fields(rejected)
    assert (fields["Running now"], fields["Would have rolled back to"]) == ("`v1.2.4`", "`v1.2.3`")

    second = await request_card(bot, "backend v1.2.2")
    assert second["ts"] != card["ts"]
    await bot.slack.click(second["channel"], second["ts"], ActionId.CANCEL, user=REQUESTER)
    await wait_card(bot, second, lambda m: "cancelled" in text_of(m))

    states = sorted(rb.state.value for rb in await bot.store.find())
    assert states == ["cancelled", "rejected"]
    await bot.fake.wait_for(lambda: "Nothing was changed" in thread_text(bot.fake, second))
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.4")


async def test_dry_run_stops_before_approval(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before, bot = await deploy(start_rollbot, compose_container)
    card = await request_card(bot, "backend --dry-run")
    assert "Dry run" in text_of(card)
    assert "v1.2.3" in text_of(card)  # the previous stable version
    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: "cancelled" in text_of(m))
    assert not has_action(card, ActionId.APPROVE)
    fields = card_fields(card)
    assert (fields["Running now"], fields["Would roll back to"]) == ("`v1.2.4`", "`v1.2.3`")
    await bot.fake.wait_for(lambda: "Dry run complete" in thread_text(bot.fake, card))
    (rb,) = await bot.store.find()
    assert rb.dry_run and rb.state is State.CANCELLED
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.4")


async def test_fix_forward_needs_an_override_reason(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    _before, bot = await deploy(start_rollbot, compose_container)
    card = await request_card(bot, "backend v1.2.3")
    await confirm(bot, card, "minor_ui_bug")
    view = await bot.fake.wait_for(lambda: bot.fake.views and next(iter(bot.fake.views.values())))
    (rb,) = await bot.store.find()
    assert rb.state is State.REQUESTED  # nothing moves without the reason

    await bot.slack.submit_view(
        view["id"],
        {BlockId.REASON: {REASON_INPUT: "UI bug blocks checkout for EU users"}},
        user=REQUESTER,
    )
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    assert "overridden" in text_of(card)
    (rb,) = await bot.store.find()
    assert rb.state is State.AWAITING_APPROVAL
    assert rb.override_reason == "UI bug blocks checkout for EU users"


async def test_two_concurrent_approvals_run_once(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    _before, bot = await deploy(start_rollbot, compose_container)
    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")

    await asyncio.gather(
        bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER),
        bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user="U_APPROVER2"),
        bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER),
    )
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    (rb,) = await bot.store.find()
    started = [e for e in await bot.store.events(rb.id) if e.kind == "started"]
    assert len(started) == 1
    assert thread_text(bot.fake, card).count("Rolling back now") == 1
    assert "already" in ephemeral_text(bot.fake)


async def test_second_rollback_of_a_busy_service_is_refused(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _before, bot = await deploy(start_rollbot, compose_container)
    first = await request_card(bot, "backend v1.2.3", user=REQUESTER)
    status, _ = await bot.slack.command("backend v1.2.2", user="U_OTHER", channel=CHANNEL)
    assert status == 200
    message = await bot.fake.wait_for(
        lambda: "already has rollback" in (t := ephemeral_text(bot.fake)) and t
    )
    assert f"<@{REQUESTER}>" in message
    assert len(cards(bot.fake)) == 1 and cards(bot.fake)[0]["ts"] == first["ts"]


async def test_missing_target_image_changes_nothing(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before, bot = await deploy(start_rollbot, compose_container)
    await bot.slack.command("backend v0.0.1", user=REQUESTER, channel=CHANNEL)
    message = await bot.fake.wait_for(
        lambda: "not available" in (t := ephemeral_text(bot.fake)) and t
    )
    assert "v1.2.3" in message  # it lists what is available
    assert cards(bot.fake) == []
    assert await bot.store.find() == []
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.4")


async def test_failing_new_container_restores_the_old_one(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    before, bot = await deploy(start_rollbot, compose_container)
    card = await ready_to_approve(bot, "backend v9.9.9-broken", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "What to do next" in thread_text(bot.fake, card))

    thread = thread_text(bot.fake, card)
    assert "failed" in thread
    assert "v1.2.4" in thread  # the state it is in now
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED and rb.target_state
    # The failed card claims nothing runs that does not: it says what was tried, and where
    # the service stands as the platform told.
    fields = card_fields(await wait_card(bot, card, lambda m: "failed" in text_of(m)))
    assert "Running now" not in fields
    assert fields["Before the rollback"] == "`v1.2.4`"
    assert fields["Tried to roll back to"] == "`v9.9.9-broken`"
    assert "v1.2.4" in fields["State now"]
    assert await bot.store.locks() == []
    image, _ = await running_image(docker_host, before.project)
    assert image.endswith(":v1.2.4")
    assert '"version":"v1.2.4"' in await wait_http(f"{before.url}/health")
