"""End to end: the Slack conversation driving the ecs and ecs_blue_green providers on moto."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    cards,
    ephemeral_text,
    ready_to_approve,
    request_card,
    service_config,
    thread_text,
    wait_card,
)
from tests.support.aws import (
    AlbListenerFactory,
    AwsEndpointFactory,
    EcsServiceFactory,
    listener_actions,
    service_task_definition,
)
from tests.support.bot import RunningBot, StartBot
from tests.support.services import FakeHttpServer, HttpServerFactory
from tests.support.slack import text_of


def aws_config(service: str, provider: dict[str, Any], check_url: str) -> dict[str, Any]:
    """A config with one AWS-backed service verified over HTTP."""
    return service_config(service, provider, check_url)


StartAwsBot = Callable[[str, dict[str, Any]], Awaitable[tuple[RunningBot, FakeHttpServer]]]


@pytest.fixture
def start_aws_bot(
    start_rollbot: StartBot, http_server: HttpServerFactory, aws_env: dict[str, str]
) -> StartAwsBot:
    """Start a bot for one AWS-backed service, verified against a local HTTP server."""

    async def start(service: str, provider: dict[str, Any]) -> tuple[RunningBot, FakeHttpServer]:
        health = await http_server(200, '{"status":"ok"}')
        bot = await start_rollbot(aws_config(service, provider, health.url), aws_env)
        return bot, health

    return start


async def approve_and_wait(bot: RunningBot, card: dict[str, Any], text: str) -> str:
    """Approve the card and return its thread once `text` shows up in it."""
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: text in thread_text(bot.fake, card))
    return thread_text(bot.fake, card)


async def test_ecs_rollback_conversation(
    start_aws_bot: StartAwsBot,
    ecs_service: EcsServiceFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service()
    bot, health = await start_aws_bot("backend", target.settings())

    card = await ready_to_approve(bot, "backend v1.2.3", "critical_bug")
    shown = text_of(card)
    assert "v1.2.4" in shown and "v1.2.3" in shown and "ecs:UpdateService" in shown

    thread = await approve_and_wait(bot, card, "[RESOLVED]")

    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:2")
    assert "Tasks: 2 running, 0 pending of 2 desired" in thread
    assert "Verification passed" in thread and "backend health" in thread
    assert health.requests > 0
    (rb,) = await bot.store.find()
    assert (rb.state, rb.current_version, rb.target_version) == (
        State.SUCCEEDED,
        "v1.2.4",
        "v1.2.3",
    )
    assert await bot.store.locks() == []


async def test_ecs_bare_revision_number_names_a_version(
    start_aws_bot: StartAwsBot, ecs_service: EcsServiceFactory, ecs_client: Any
) -> None:
    target = ecs_service()
    bot, _ = await start_aws_bot("backend", target.settings())

    card = await request_card(bot, "backend 1")
    assert "v1.2.2" in text_of(card)  # the card shows the version, not the number
    await bot.slack.click(card["channel"], card["ts"], ActionId.CANCEL, user=REQUESTER)
    await wait_card(bot, card, lambda m: "cancelled" in text_of(m))

    (rb,) = await bot.store.find()
    assert (rb.state, rb.target_version) == (State.CANCELLED, "v1.2.2")
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:3")


async def test_ecs_failing_tasks_fail_the_rollback(
    start_aws_bot: StartAwsBot,
    ecs_service: EcsServiceFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service(running=0, failed_tasks=3)
    bot, health = await start_aws_bot("backend", target.settings())

    card = await ready_to_approve(bot, "backend", "critical_bug")  # the previous stable one
    thread = await approve_and_wait(bot, card, "What to do next")

    assert "failed" in thread and "3 tasks of the new deployment failed" in thread
    # The state now, as the provider read it: set to the target, no task running.
    assert f"is set to {target.family}:2 (v1.2.3): 0 running, 2 pending" in thread
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:2")
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED and rb.target_state and "0 running" in rb.target_state
    assert await bot.store.locks() == []
    assert health.requests == 0  # nothing to verify after a failed rollback


async def test_blue_green_rollback_conversation(
    start_aws_bot: StartAwsBot,
    alb_listener: AlbListenerFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener()
    bot, health = await start_aws_bot("web", target.settings())

    card = await ready_to_approve(bot, "web", "performance_degradation")  # the other group
    shown = text_of(card)
    assert "blue" in shown and "green" in shown and "elbv2:ModifyListener" in shown

    thread = await approve_and_wait(bot, card, "[RESOLVED]")

    assert listener_actions(elbv2_client, target) == [
        {"Type": "forward", "TargetGroupArn": target.green_arn}
    ]
    assert "Listener now forwards all traffic to green" in thread
    assert "Verification passed" in thread and health.requests > 0
    (rb,) = await bot.store.find()
    assert (rb.state, rb.target_version) == (State.SUCCEEDED, "green")
    assert await bot.store.locks() == []


async def test_blue_green_unknown_listener_is_caught_at_request_time(
    start_aws_bot: StartAwsBot,
    alb_listener: AlbListenerFactory,
) -> None:
    target = alb_listener()
    missing = target.listener_arn[:-4] + "0000"
    bot, _ = await start_aws_bot("web", target.settings(listener_arn=missing))

    await bot.slack.command("web green", user=REQUESTER, channel=CHANNEL)
    await bot.fake.wait_for(lambda: "Could not read versions" in ephemeral_text(bot.fake))
    message = ephemeral_text(bot.fake)

    assert "ListenerNotFound" in message and missing in message
    assert cards(bot.fake) == []
    assert await bot.store.find() == []
    assert await bot.store.locks() == []


async def test_blue_green_switched_by_someone_else_is_refused_at_approval(
    start_aws_bot: StartAwsBot,
    alb_listener: AlbListenerFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener()
    bot, _ = await start_aws_bot("web", target.settings())
    card = await ready_to_approve(bot, "web green", "critical_bug")

    # Someone switches the listener by hand while the card waits for approval.
    elbv2_client.modify_listener(
        ListenerArn=target.listener_arn,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": target.green_arn}],
    )
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    refusal = await bot.fake.wait_for(
        lambda: "changed since this card was shown" in (t := ephemeral_text(bot.fake)) and t
    )

    # The card showed the listener forwarding to blue; it forwards to green now.
    assert "blue" in refusal and "green" in refusal
    (rb,) = await bot.store.find()
    assert rb.state is State.AWAITING_APPROVAL
    assert await bot.store.locks() == []
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.green_arn


async def test_blue_green_switch_that_does_not_stick_fails(
    start_aws_bot: StartAwsBot,
    alb_listener: AlbListenerFactory,
    aws_endpoint: AwsEndpointFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener()
    # ELBv2 accepts the ModifyListener call, but the listener keeps forwarding to blue.
    proxy = await aws_endpoint(action="ModifyListener")
    bot, health = await start_aws_bot("web", target.settings(endpoint_url=proxy.endpoint_url))

    card = await ready_to_approve(bot, "web green", "critical_bug")
    thread = await approve_and_wait(bot, card, "What to do next")

    assert "failed" in thread and "does not forward to green" in thread
    assert f"Listener {target.listener_arn} forwards to blue" in thread
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED and rb.target_state and rb.target_state.endswith("blue")
    assert await bot.store.locks() == []
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.blue_arn
    assert health.requests == 0
