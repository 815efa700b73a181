"""The ecs_blue_green provider against moto's ELBv2 in server mode, over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from providers.base import AuthRejected, NotFound, Refused, RollbackFailed
from providers.ecs_blue_green import EcsBlueGreenSettings
from tests.support.aws import (
    AlbListenerFactory,
    AwsEndpointFactory,
    ProviderFactory,
    listener_actions,
)
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


async def test_plan_warns_when_the_other_group_has_no_healthy_target(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory
) -> None:
    provider = aws_provider(alb_listener(green_targets=0))
    plan = await provider.plan("green")
    assert "no registered targets" in plan.steps[1]
    assert plan.warnings == [
        "green has no healthy target: after the switch the listener sends traffic to "
        "nothing healthy."
    ]


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
    assert progress.messages == ["Listener switched from blue to green; confirming…"]
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
    provider = aws_provider(target, endpoint_url=proxy.endpoint_url)

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
