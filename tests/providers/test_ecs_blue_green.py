"""The ecs_blue_green provider against moto's ELBv2 in server mode, over real HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from providers.base import AuthRejected, NotFound, Refused, RollbackFailed, TimedOut
from providers.ecs_blue_green import EcsBlueGreenSettings
from tests.support.aws import (
    AlbListenerFactory,
    AwsEndpointFactory,
    ProviderFactory,
    listener_actions,
)
from tests.support.aws_standin import HEALTHY, INITIAL, MISMATCH, NOT_IN_USE, TIMED_OUT
from tests.support.progress import Recorder


async def test_versions_are_the_two_target_groups(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory
) -> None:
    target = alb_listener()
    provider = aws_provider(target)

    versions = await provider.list_versions()

    assert [(v.name, v.current, v.previous_stable) for v in versions] == [
        ("blue", True, False),
        ("green", False, True),
    ]
    assert target.green_arn in versions[1].detail and "target group green-" in versions[1].detail
    assert versions[1].aliases[0].startswith("green-")  # its target group's name
    assert await provider.current_version() == "blue"
    assert await provider.describe_state() == f"Listener {target.listener_arn} forwards to blue"


async def test_plan_shows_both_target_groups_and_changes_nothing(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory, elbv2_client: Any
) -> None:
    target = alb_listener(green_targets=2)
    provider = aws_provider(target)

    plan = await provider.plan("green")

    text = "\n".join(plan.steps)
    assert "forwards to blue (blue-" in text and "1 healthy" in text
    assert "all traffic to green (green-" in text and "2 healthy" in text
    assert "elbv2:ModifyListener" in text and "describe_listeners" in text
    assert plan.warnings == []
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.blue_arn


async def test_an_empty_target_group_is_refused_before_the_switch(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory, elbv2_client: Any
) -> None:
    target = alb_listener(green_targets=0)
    provider = aws_provider(target)

    with pytest.raises(Refused) as refused:
        await provider.plan("green")
    assert re.search(r"Target group green-\w+ has no registered targets", refused.value.message)
    with pytest.raises(Refused, match="has no registered targets"):
        await provider.rollback("green", Recorder())
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.blue_arn


async def test_an_unhealthy_target_group_is_refused_with_the_reasons_aws_gives(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener(green_targets=2)
    endpoint = await aws_endpoint()
    endpoint.target_health(target.green_arn, [MISMATCH, TIMED_OUT])
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)

    with pytest.raises(Refused) as refused:
        await provider.rollback("green", Recorder())

    message = refused.value.message
    assert "green has no healthy target (2 registered in target group green-" in message
    assert (
        "unhealthy (Target.ResponseCodeMismatch: Health checks failed with these codes: [502])"
        in message
    )
    assert "Target.Timeout: Request timed out" in message
    assert refused.value.target_state == f"Listener {target.listener_arn} forwards to blue"
    assert "ModifyListener" not in endpoint.actions
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.blue_arn


async def test_a_group_no_listener_uses_is_refused_with_what_to_do(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
) -> None:
    target = alb_listener()
    endpoint = await aws_endpoint()
    endpoint.target_health(target.green_arn, [NOT_IN_USE])
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)

    with pytest.raises(Refused) as refused:
        await provider.plan("green")

    assert "1 unused (Target.NotInUse" in refused.value.message
    assert "does not health-check a target group no listener rule uses" in refused.value.message


async def test_some_unhealthy_targets_are_a_warning_in_the_plan(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
) -> None:
    target = alb_listener(green_targets=2)
    endpoint = await aws_endpoint()
    endpoint.target_health(target.green_arn, [HEALTHY, TIMED_OUT])
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)

    plan = await provider.plan("green")

    assert plan.warnings == [
        "Only 1 of 2 targets of green is healthy; the others: 1 unhealthy "
        "(Target.Timeout: Request timed out). The healthy one takes all traffic."
    ]
    assert "wait until it forwards to green and green has healthy targets" in plan.steps[-1]


async def test_after_the_switch_it_waits_for_the_listener_and_healthy_targets(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener(green_targets=2)
    endpoint = await aws_endpoint()
    # Read before the switch, then three polls after it.
    endpoint.target_health(
        target.green_arn,
        [HEALTHY, INITIAL],
        [HEALTHY, INITIAL],
        [HEALTHY, INITIAL],
        [HEALTHY, HEALTHY],
    )
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)
    progress = Recorder()

    outcome = await provider.rollback("green", progress)

    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.green_arn
    assert endpoint.actions.count("DescribeTargetHealth") == 4
    assert "green: 1 healthy, 1 initial (Elb.RegistrationInProgress" in progress.text
    assert "2/2 targets of green healthy" in outcome.summary


async def test_targets_that_never_turn_healthy_after_the_switch_time_out(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener()
    endpoint = await aws_endpoint()
    endpoint.target_health(target.green_arn, [HEALTHY], [MISMATCH])
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url, settle_timeout_seconds=0.5)

    with pytest.raises(TimedOut) as timed_out:
        await provider.rollback("green", Recorder())

    message = timed_out.value.message
    assert "The listener forwards to green, but green has no healthy target after 0.5 s" in message
    assert "Target.ResponseCodeMismatch" in message
    assert timed_out.value.target_state == f"Listener {target.listener_arn} forwards to green"
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.green_arn


async def test_rollback_switches_the_listener_and_back(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory, elbv2_client: Any
) -> None:
    target = alb_listener()
    provider = aws_provider(target)
    progress = Recorder()

    outcome = await provider.rollback("green", progress)

    assert listener_actions(elbv2_client, target) == [
        {"Type": "forward", "TargetGroupArn": target.green_arn}
    ]
    assert outcome.summary.startswith("Listener now forwards all traffic to green")
    assert progress.messages == [
        "Listener switched from blue to green; waiting for it to forward there and for "
        "green's targets to be healthy…",
        "green: 1 healthy.",
    ]
    assert await provider.current_version() == "green"
    assert (await provider.describe_state()).endswith("forwards to green")

    await provider.rollback("blue", Recorder())
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.blue_arn


async def test_weighted_forward_goes_wholly_to_the_other_group(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory, elbv2_client: Any
) -> None:
    target = alb_listener(weighted=True)
    provider = aws_provider(target)
    assert await provider.current_version() == "blue"  # the heavier group (90 vs 10)
    assert "(weights: blue 90, green 10)" in await provider.describe_state()

    await provider.rollback("green", Recorder())

    (action,) = listener_actions(elbv2_client, target)
    assert action["ForwardConfig"]["TargetGroups"] == [
        {"TargetGroupArn": target.green_arn, "Weight": 1}
    ]
    assert action["ForwardConfig"]["TargetGroupStickinessConfig"] == {
        "Enabled": True,
        "DurationSeconds": 300,
    }
    assert "TargetGroupArn" not in action


async def test_unknown_or_current_version_is_refused(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory, elbv2_client: Any
) -> None:
    target = alb_listener()
    provider = aws_provider(target)
    with pytest.raises(NotFound, match=r"available: blue, green"):
        await provider.plan("purple")
    with pytest.raises(Refused, match="already forwards to blue"):
        await provider.rollback("blue", Recorder())
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.blue_arn


async def test_a_listener_forwarding_elsewhere_is_refused(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory, elbv2_client: Any
) -> None:
    target, other = alb_listener(), alb_listener()
    provider = aws_provider(target, blue_target_group_arn=other.blue_arn)
    with pytest.raises(Refused, match="neither the blue nor the green"):
        await provider.current_version()


async def test_a_missing_listener_is_not_found(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory
) -> None:
    target = alb_listener()
    provider = aws_provider(target, listener_arn=target.listener_arn[:-4] + "0000")
    with pytest.raises(NotFound, match="ListenerNotFound"):
        await provider.list_versions()


async def test_a_change_that_does_not_stick_fails_with_the_state_now(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener()
    proxy = await aws_endpoint(action="ModifyListener")
    provider = aws_provider(target, endpoint_url=proxy.endpoint_url, settle_timeout_seconds=0.5)

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback("green", Recorder())

    assert "does not forward to green" in failed.value.message
    assert failed.value.target_state == f"Listener {target.listener_arn} forwards to blue"
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.blue_arn


async def test_rejected_credentials(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
) -> None:
    endpoint = await aws_endpoint(
        error=(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    )
    provider = aws_provider(alb_listener(), endpoint_url=endpoint.endpoint_url)
    with pytest.raises(AuthRejected, match="AWS rejected the credentials"):
        await provider.current_version()
    assert endpoint.requests == 1


def test_settings_refuse_one_group_twice() -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/blue/1"
    with pytest.raises(ValidationError, match="must differ"):
        EcsBlueGreenSettings(
            provider="ecs_blue_green",
            listener_arn="arn:listener",
            blue_target_group_arn=arn,
            green_target_group_arn=arn,
            region="us-east-1",
        )
