"""End to end: a critical rollback opens a channel of its own and its thread moves there."""

from __future__ import annotations

from typing import Any

from bot.models import State
from handlers.ids import ActionId
from handlers.incident_channel import channel_name
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    backend_config,
    cards,
    confirm,
    has_action,
    ready_to_approve,
    request_card,
    running_image,
    thread_text,
)
from tests.support.bot import StartBot
from tests.support.docker import ComposeContainer, ComposeContainerFactory, unique_project
from tests.support.slack import BOT_USER_ID, FakeSlack, text_of

ONCALL = ["U_ONCALL1", "U_ONCALL2"]


def incident_config(container: ComposeContainer) -> dict[str, Any]:
    """backend in production; critical rollbacks get a channel; S_ONCALL is on call."""
    config = backend_config(container.project, container.port)
    config["slack"] = {
        "oncall_group": "S_ONCALL",
        "channel_per_incident": {"severities": ["critical"]},
    }
    return config


def card_in(fake: FakeSlack, channel: str) -> dict[str, Any] | None:
    """The one card rollbot posted in a channel, once there is one."""
    found = cards(fake, channel)
    return found[0] if found else None


async def test_critical_rollback_continues_in_its_own_channel(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    bot = await start_rollbot(incident_config(container))
    fake = bot.fake
    fake.usergroups["S_ONCALL"] = ONCALL
    fake.users["U_APPROVER2"] = {"deleted": True}  # left the company; still in the policy

    original = await request_card(bot, "backend v1.2.3")
    (rb,) = await bot.store.find()
    taken = channel_name("inc", rb)
    assert taken == f"inc-{rb.created_at:%Y%m%d}-backend-{rb.id.replace('-', '')}"
    fake.create_channel(taken)  # someone else's channel already has the name

    await confirm(bot, original, "critical_bug")
    opened = await fake.wait_for(lambda: fake.channel_named(f"{taken}-2"))
    channel = opened["id"]
    moved = await fake.wait_for(
        lambda: (m := card_in(fake, channel)) and has_action(m, ActionId.APPROVE) and m
    )
    assert "Rollback backend/production" in text_of(moved)
    welcome = await fake.wait_for(lambda: "Invited:" in (t := thread_text(fake, moved)) and t)
    assert f"Moved here from <#{CHANNEL}>" in welcome
    assert fake.members(channel) == {BOT_USER_ID, REQUESTER, APPROVER, *ONCALL}
    assert "Could not invite <@U_APPROVER2> (user_not_found)" in welcome
    assert len(fake.calls_of("conversations.invite")) == 2  # Slack invites nobody on the first
    assert [c.response.get("error") for c in fake.calls_of("conversations.create")] == [
        "name_taken",
        None,
    ]

    old = await fake.wait_for(
        lambda: f"<#{channel}>" in text_of(m := fake.message(CHANNEL, original["ts"])) and m
    )
    assert not has_action(old, ActionId.APPROVE)
    await fake.wait_for(lambda: f"moved to <#{channel}>" in thread_text(fake, original))

    await bot.slack.click(channel, moved["ts"], ActionId.APPROVE, user=APPROVER)
    await fake.wait_for(lambda: "[RESOLVED]" in thread_text(fake, moved))
    assert "Verification passed" in thread_text(fake, moved)
    assert "Verification passed" not in thread_text(fake, original)
    await fake.wait_for(lambda: "succeeded" in text_of(fake.message(channel, moved["ts"])))

    (done,) = await bot.store.find()
    assert done.state is State.SUCCEEDED
    assert (done.channel_id, done.message_ts) == (channel, moved["ts"])
    events = await bot.store.events(done.id)
    assert [e.text for e in events if e.kind == "incident_channel"] == [
        f"Incident channel #{taken}-2 opened"
    ]
    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")


async def test_other_severities_and_a_refusing_slack_keep_the_thread(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    bot = await start_rollbot(incident_config(container))
    fake = bot.fake

    high = await ready_to_approve(bot, "backend v1.2.3", "performance_degradation")
    await bot.slack.click(high["channel"], high["ts"], ActionId.CANCEL, user=REQUESTER)
    await fake.wait_for(lambda: "Nothing was changed" in thread_text(fake, high))
    assert fake.calls_of("conversations.create") == []

    fake.fail_next("conversations.create", "missing_scope", status=200)
    card = await ready_to_approve(bot, "backend v1.2.3", "security_vulnerability")
    said = await fake.wait_for(
        lambda: "could not open an incident channel" in (t := thread_text(fake, card)) and t
    )
    assert "missing_scope" in said and "channels:manage" in said
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await fake.wait_for(lambda: "[RESOLVED]" in thread_text(fake, card))
    assert len(fake.calls_of("conversations.create")) == 1  # once per rollback, not per step

    rollback = (await bot.store.find())[0]
    assert rollback.state is State.SUCCEEDED and rollback.channel_id == CHANNEL
    kinds = [e.kind for e in await bot.store.events(rollback.id)]
    assert kinds.count("incident_channel_refused") == 1
    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
