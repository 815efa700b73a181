"""The bot on Slack's bad days: scopes it lacks, channels it is not in, rate limits.

Whatever Slack answers, the rollback's own record (its row, events and audit log) is
written, and what Slack would not take reaches the user another way.
"""

from __future__ import annotations

import pytest

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    REQUESTER,
    cards,
    confirm,
    deploy,
    ephemeral_text,
    has_action,
    request_card,
    running_image,
    thread_text,
    wait_card,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.docker import ComposeContainerFactory
from tests.support.slack import BOT_USER_ID, text_of


async def run_to_success(bot: RunningBot) -> dict:
    """Request, confirm and approve a rollback to v1.2.3; return its card once it succeeded."""
    card = await request_card(bot, "backend v1.2.3")
    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    return await wait_card(bot, card, lambda m: ":large_green_circle:" in text_of(m))


async def test_without_users_read_and_files_write_the_report_is_posted_with_ids(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container, bot = await deploy(start_rollbot, compose_container)
    bot.fake.scopes -= {"users:read", "files:write"}

    card = await run_to_success(bot)

    fake = bot.fake
    head = await fake.wait_for(
        lambda: next(
            (
                m
                for m in fake.thread(card["channel"], card["ts"])
                if "Not attached as `incident-" in m["text"]
            ),
            None,
        )
    )
    assert "lacks the `files:write` scope" in head["text"]
    assert "People appear as Slack ids: rollbot lacks the `users:read` scope" in head["text"]
    await fake.wait_for(lambda: "## Action Items" in thread_text(fake, card))
    report = thread_text(fake, card)
    assert f"| Requested by | <@{REQUESTER}> |" in report
    assert f"| Approved by | <@{APPROVER}> |" in report
    # Live mentions, outside code: Slack clients show each person's name.
    (people,) = [
        m for m in fake.thread(card["channel"], card["ts"]) if "| Requested by" in m["text"]
    ]
    assert "```" not in people["text"]
    assert fake.uploads() == []
    # users.info was asked at most once a person, and refused.
    asked = fake.calls_of("users.info")
    assert 1 <= len(asked) <= 2
    assert {c.response["error"] for c in asked} == {"missing_scope"}
    # The rollback itself is untouched by what Slack refused.
    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    (rb,) = await bot.store.find()
    assert rb.state is State.SUCCEEDED and rb.reported
    assert [e.kind for e in await bot.store.events(rb.id)].count("step") >= 1
    assert await bot.store.audit_log(rb.id)


async def test_a_channel_the_bot_is_not_in_is_joined_when_the_scope_allows(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _, bot = await deploy(start_rollbot, compose_container)
    fake = bot.fake
    channel = fake.create_channel("deploys", members=(REQUESTER,))
    fake.scopes = (fake.scopes - {"chat:write.public"}) | {"channels:join"}

    status, _ = await bot.slack.command("backend v1.2.3", user=REQUESTER, channel=channel)

    assert status == 200
    (card,) = await fake.wait_for(lambda: cards(fake, channel))
    assert BOT_USER_ID in fake.members(channel)
    errors = [c.response.get("error") for c in fake.calls_of("chat.postMessage")]
    assert "not_in_channel" in errors, fake.dump()
    (rb,) = await bot.store.find()
    assert rb.state is State.REQUESTED
    assert "backend" in text_of(card)


@pytest.mark.parametrize("private", [False, True], ids=["public-no-join-scope", "private"])
async def test_a_channel_the_bot_cannot_enter_tells_the_user_how_to_let_it_in(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, private: bool
) -> None:
    _, bot = await deploy(start_rollbot, compose_container)
    fake = bot.fake
    channel = fake.create_channel("deploys", members=(REQUESTER,), is_private=private)
    fake.scopes.discard("chat:write.public")

    status, _ = await bot.slack.command("backend v1.2.3", user=REQUESTER, channel=channel)

    assert status == 200
    told = await fake.wait_for(lambda: "/invite @rollbot" in (t := ephemeral_text(fake)) and t)
    if not private:
        assert "lacks the `channels:join` scope" in told
    assert fake.messages(channel) == []
    # The request is kept, closed: it never blocks the next one once the bot is invited.
    (rb,) = await bot.store.find()
    assert rb.state is State.CANCELLED
    assert await bot.store.audit_log(rb.id)


async def test_with_slacks_rate_limits_on_a_rollback_runs_and_its_thread_catches_up(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container, bot = await deploy(start_rollbot, compose_container)
    bot.fake.rate_limits.enable()
    bot.fake.rate_limits.set("chat.update", per_minute=20, burst=2)

    card = await run_to_success(bot)

    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    fake = bot.fake
    await fake.wait_for(lambda: "RESOLVED" in thread_text(fake, card), timeout=30)
    thread = thread_text(fake, card)
    assert thread.index(":gear:") < thread.index("RESOLVED")
    replies = [text_of(m) for m in fake.thread(card["channel"], card["ts"])]
    assert len([r for r in replies if r.startswith(":gear:")]) == 1
    assert any(c.status == 429 for c in fake.calls), "the limits never bit"
    (rb,) = await bot.store.find()
    assert rb.state is State.SUCCEEDED
