"""The bot's own Slack calls on Slack's bad days: the rollback runs once, its record is whole.

A fault proxy (tests/support/faults.py) stands between the bot and the fake Slack and
answers one call of a kind with a fault: a 429 with Retry-After, an `internal_error` 500,
a CDN's HTML 502 page, a connection reset, or no answer in time. Whatever Slack answered,
the rollback ran exactly once, its audit log is complete, and the thread shows the
outcome once Slack answers again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    backend_config,
    confirm,
    has_action,
    request_card,
    running_image,
    thread_text,
    wait_card,
)
from tests.support.bot import StartBot
from tests.support.docker import ComposeContainerFactory, unique_project
from tests.support.faults import Fault, FaultProxy
from tests.support.slack import FakeSlack, text_of

FAULTS = [
    Fault.RATE_LIMITED,
    Fault.SERVER_ERROR,
    Fault.BAD_GATEWAY_HTML,
    Fault.RESET,
    Fault.TIMEOUT,
]
# The one warning every start-up logs (Bolt is given both a client and a token).
STARTUP_WARNINGS = ("As you gave `client` as well, `token` will be unused.",)
# The calls a run makes: thread replies (progress, outcome) and card and progress edits.
CALLS = {"post": r"^/api/chat\.postMessage", "update": r"^/api/chat\.update"}


@pytest.fixture
async def slack_proxy(fake_slack: FakeSlack) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the fake Slack's Web API."""
    async with FaultProxy(fake_slack.url, hang_seconds=2.0) as proxy:
        yield proxy


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name.lower() for f in FAULTS])
async def test_a_slack_fault_during_a_run_leaves_the_rollback_whole(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    slack_proxy: FaultProxy,
    docker_host: str,
    fault: Fault,
    call: str,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port)
    bot = await start_rollbot(config, extra_env={"SLACK_API_URL": f"{slack_proxy.url}/api/"})
    card = await request_card(bot, "backend v1.2.3")
    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))

    slack_proxy.inject(fault, method="POST", path=CALLS[call], times=1)
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)

    fake = bot.fake
    await fake.wait_for(lambda: "RESOLVED" in thread_text(fake, card), timeout=40)
    assert slack_proxy.faulted, "the fault never bit"
    (rb,) = await bot.store.find()
    assert rb.state is State.SUCCEEDED
    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    audit = [e.action for e in await bot.store.audit_log(rb.id)]
    assert audit.count("started") == 1 and "succeeded" in audit, audit
    if fault in (Fault.SERVER_ERROR, Fault.BAD_GATEWAY_HTML) or (fault, call) == (
        Fault.RESET,
        "post",
    ):
        # Not retried: the log says that a Slack call failed, and why, wherever it was
        # made (the outbox, a hook, a durable job, a listener answering a request).
        records = [json.loads(line) for line in bot.log().splitlines()]
        failures = [
            r
            for r in records
            if r["level"] in ("warning", "error") and r["event"] not in STARTUP_WARNINGS
        ]
        assert failures, (slack_proxy.faulted, bot.log())


async def test_a_reply_whose_answer_was_lost_is_not_posted_twice(
    start_rollbot: StartBot,
    compose_container: ComposeContainerFactory,
    slack_proxy: FaultProxy,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port)
    bot = await start_rollbot(config, extra_env={"SLACK_API_URL": f"{slack_proxy.url}/api/"})
    card = await request_card(bot, "backend v1.2.3")
    await confirm(bot, card, "critical_bug")
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    # Slack posts the reply, but the connection drops before its answer reaches the bot.
    slack_proxy.inject(Fault.RESET, method="POST", path=CALLS["post"], times=None, applied=True)

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)

    fake = bot.fake
    await fake.wait_for(lambda: "RESOLVED" in thread_text(fake, card), timeout=40)
    replies = [text_of(m) for m in fake.thread(card["channel"], card["ts"])]
    assert len(slack_proxy.faulted) >= 2
    assert len(replies) == len(set(replies)), replies
