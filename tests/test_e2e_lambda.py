"""End to end: the Slack conversation driving the lambda_alias provider on moto."""

from __future__ import annotations

from typing import Any

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import APPROVER, ephemeral_text, ready_to_approve, thread_text
from tests.support.aws import LambdaFunctionFactory, alias_now
from tests.support.slack import text_of
from tests.test_e2e_ecs import StartAwsBot, approve_and_wait, start_aws_bot

__all__ = ["start_aws_bot"]  # the fixture, shared with the ECS conversation


async def test_lambda_alias_rollback_conversation(
    start_aws_bot: StartAwsBot, lambda_function: LambdaFunctionFactory, lambda_client: Any
) -> None:
    # A canary went wrong: alias `live` sends 10 % to the new version 3.
    target = lambda_function(alias_on="v1.2.3", weights={"v1.2.4": 0.1})
    bot, health = await start_aws_bot("checkout", target.settings())

    card = await ready_to_approve(bot, "checkout v1.2.2", "critical_bug")
    shown = text_of(card)
    assert "lambda:UpdateAlias" in shown
    # The preflight: exact identities, the split named, what changes.
    assert f"{target.function}:1 (sha256 " in shown
    assert "published and Active" in shown
    assert "sends 10 % to version 3" in shown and "100 % goes to version 1" in shown
    assert "hunter2" not in shown

    thread = await approve_and_wait(bot, card, "[RESOLVED]")

    assert alias_now(lambda_client, target) == ("1", {})
    assert "Alias `live` set to version 1; reading it back" in thread
    assert "Verification passed" in thread and "checkout health" in thread
    assert health.requests > 0
    (rb,) = await bot.store.find()
    assert (rb.state, rb.current_version, rb.target_version) == (State.SUCCEEDED, "2+3", "1")
    assert await bot.store.locks() == []


async def test_lambda_alias_moved_while_the_card_waits_is_refused_at_approval(
    start_aws_bot: StartAwsBot, lambda_function: LambdaFunctionFactory, lambda_client: Any
) -> None:
    target = lambda_function()
    bot, _ = await start_aws_bot("checkout", target.settings())
    card = await ready_to_approve(bot, "checkout", "critical_bug")  # previous: version 2

    # A pipeline starts a canary while the card waits for approval.
    lambda_client.update_alias(
        FunctionName=target.function,
        Name="live",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.2}},
    )
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    refusal = await bot.fake.wait_for(
        lambda: "changed since this card was shown" in (t := ephemeral_text(bot.fake)) and t
    )

    assert "20 %" in refusal
    (rb,) = await bot.store.find()
    assert rb.state is State.AWAITING_APPROVAL
    assert alias_now(lambda_client, target) == ("3", {"2": 0.2})
    assert "[RESOLVED]" not in thread_text(bot.fake, card)
