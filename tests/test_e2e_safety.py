"""Holes an on-call engineer must never fall into, each tried through the real bot.

Signed requests reach `rollbot serve --http`; the fake Slack records what people see; the
store on disk is what the bot recorded. Each test was written against the holes it names.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse

from bot.models import Rollback, State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    OUTSIDER,
    REQUESTER,
    backend_config,
    cards,
    deploy,
    ephemeral_text,
    ready_to_approve,
    request_card,
    running_image,
    thread_text,
    unechoed,
    wait_card,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.docker import ComposeContainerFactory, unique_project
from tests.support.slack import text_of


async def test_two_concurrent_requests_for_one_service_get_one_card(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _container, bot = await deploy(start_rollbot, compose_container)
    answers = await asyncio.gather(
        *(
            bot.slack.command(f"backend {version}", user=REQUESTER, channel=CHANNEL)
            for version in ("v1.2.3", "v1.2.2", "v1.2.3")
        )
    )
    assert [status for status, _ in answers] == [200, 200, 200]
    await bot.fake.wait_for(lambda: len(bot.fake.responses) == 2 and ephemeral_text(bot.fake))
    (card,) = await bot.fake.wait_for(lambda: cards(bot.fake) or None)
    (winner,) = await bot.store.find()
    assert winner.message_ts == card["ts"]
    # The losers are told which rollback holds the service and where its card is: a link
    # once the card is up, else its channel.
    for _, body in bot.fake.responses:
        assert f"already has rollback {winner.id}" in body["text"]
        assert "Its card: http" in body["text"] or "Its card is in <#C_OPS>" in body["text"]
    refused = [e for e in await bot.store.audit_log() if e.action == "refused"]
    assert len(refused) == 2 and {e.details["what"] for e in refused} == {"request"}


async def test_approving_from_two_tabs_at_once_runs_and_records_once(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container, bot = await deploy(start_rollbot, compose_container)
    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    clicks = [
        bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=user)
        for user in (APPROVER, APPROVER, "U_APPROVER2", APPROVER)
    ]
    assert [status for status, _ in await asyncio.gather(*clicks)] == [200] * 4
    await wait_card(bot, card, lambda m: ":large_green_circle:" in text_of(m))
    (rb,) = await bot.store.find()
    audit = [e.action for e in await bot.store.audit_log(rb.id)]
    assert audit.count("approved") == 1 and audit.count("started") == 1
    assert audit.count("succeeded") == 1
    assert audit.count("refused") == 3
    timeline = [e.kind for e in await bot.store.events(rb.id)]
    assert timeline.count("approved") == 1 and timeline.count("started") == 1
    assert thread_text(bot.fake, card).count("Rolling back now") == 1
    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    await bot.fake.wait_for(lambda: "already" in ephemeral_text(bot.fake) or None)


async def test_a_request_slack_delivers_twice_is_handled_once(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    _container, bot = await deploy(start_rollbot, compose_container)
    fields = bot.slack.command_fields("backend v1.2.3", user=REQUESTER, channel=CHANNEL)
    body = urllib.parse.urlencode(fields).encode()
    first = await bot.slack.raw(body, bot.slack.signed_headers(body))
    # Slack's retry: the same body, signed again, with its retry headers.
    retry_headers = {
        **bot.slack.signed_headers(body),
        "X-Slack-Retry-Num": "1",
        "X-Slack-Retry-Reason": "http_timeout",
    }
    second = await bot.slack.raw(body, retry_headers)
    assert (first[0], second[0]) == (200, 200)
    await bot.fake.wait_for(lambda: cards(bot.fake) or None)
    await asyncio.sleep(1)  # time for a second card, were one coming
    assert len(cards(bot.fake)) == 1
    assert len(await bot.store.find()) == 1
    assert "already has rollback" not in ephemeral_text(bot.fake)


async def test_read_commands_answer_only_people_who_may_read(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    bot = await start_rollbot(
        backend_config(container.project, container.port, requesters={"users": [REQUESTER]})
    )
    card = await request_card(bot, "backend v1.2.3")
    (rb,) = await bot.store.find()
    for text in ("status", "history backend", f"report {rb.id}", "list backend"):
        status, _ = await bot.slack.command(text, user=OUTSIDER, channel="C_ELSEWHERE")
        assert status == 200
    await bot.fake.wait_for(lambda: len(bot.fake.responses) == 4 or None)
    refusals = [unechoed(body["text"]) for _, body in bot.fake.responses]
    assert all(text.startswith("You may not read") for text in refusals), refusals
    assert not any(rb.id in text for text in refusals)
    assert bot.fake.calls_of("files.completeUploadExternal") == []
    refused = [
        (e.actor, e.details["what"]) for e in await bot.store.audit_log() if e.action == "refused"
    ]
    assert sorted(refused) == [
        (OUTSIDER, "history"),
        (OUTSIDER, "report"),
        (OUTSIDER, "status"),
        (OUTSIDER, "versions"),
    ]

    # The requester reads; the report goes to the rollback's thread, not where they typed.
    status, _ = await bot.slack.command(f"report {rb.id}", user=REQUESTER, channel="C_ELSEWHERE")
    assert status == 200
    upload = await bot.fake.wait_for(
        lambda: bot.fake.calls_of("files.completeUploadExternal") or None
    )
    args = upload[0].args if hasattr(upload[0], "args") else upload[0]
    assert json.dumps(args).count(CHANNEL) >= 1 and "C_ELSEWHERE" not in json.dumps(args)
    assert card["ts"] in json.dumps(args)


async def test_a_second_bot_on_the_same_store_leaves_a_running_rollback_alone(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port)
    production = config["services"]["backend"]["environments"]["production"]
    # A check that keeps failing holds the rollback in "verifying" for a while.
    production["checks"] = [{"name": "health", "type": "http", "url": "http://127.0.0.1:9/health"}]
    config["runtime"] |= {"verify_deadline_seconds": 8, "verify_interval_seconds": 0.5}
    first = await start_rollbot(config)
    card = await ready_to_approve(first, "backend v1.2.3", "critical_bug")
    await first.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await until_state(first, State.VERIFYING)

    second = await start_rollbot(config)  # its start-up sweep runs now
    await asyncio.sleep(1)
    (rb,) = await second.store.find()
    assert rb.state.value == "verifying"
    (lease,) = await second.store.locks()
    assert lease.rollback_id == rb.id

    await wait_card(first, card, lambda m: ":red_circle:" in text_of(m))
    audit = [e.action for e in await second.store.audit_log(rb.id)]
    assert "interrupted" not in audit and audit.count("failed") == 1
    assert "Interrupted" not in thread_text(first.fake, card)


async def test_a_rate_limited_slack_never_holds_up_the_rollback(
    start_rollbot: StartBot, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container, bot = await deploy(start_rollbot, compose_container)
    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    # From the approval on, Slack answers the next posts and card updates with 429 and
    # Retry-After: 2, twice each, as it does under load: every reply lands seconds late.
    bot.fake.fail_next("chat.postMessage", retry_after=2, times=2)
    bot.fake.fail_next("chat.update", retry_after=2, times=2)
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)

    done = await until_state(bot, State.SUCCEEDED)
    # The rollback finished before Slack let the first line of its thread through.
    assert ":gear:" not in thread_text(bot.fake, card)
    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    # Everything still reaches the thread afterwards, in order.
    await wait_card(bot, card, lambda m: ":large_green_circle:" in text_of(m))
    thread = thread_text(bot.fake, card)
    assert thread.index("Rolling back now") < thread.index(":gear:") < thread.index("RESOLVED")
    assert done.finished_at is not None


async def until_state(bot: RunningBot, state: State) -> Rollback:
    """Wait until the bot's one rollback is in `state`, as recorded in its store."""
    for _ in range(400):
        found = await bot.store.find()
        if found and found[0].state is state:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no rollback reached {state.value}: {found}")
