"""The ecs_blue_green provider's preflight and identity, on moto's ELBv2 (behind the
stand-in where a test scripts target health)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from providers.base import NotFound, Refused
from providers.capabilities import Describe, Preflight, PreflightReport, Verdict
from tests.support.aws import (
    AlbListenerFactory,
    AwsEndpointFactory,
    ProviderFactory,
    listener_actions,
)
from tests.support.aws_standin import HEALTHY, INITIAL, MISMATCH, NOT_IN_USE, TIMED_OUT

READS = frozenset({"DescribeListeners", "DescribeTargetGroups", "DescribeTargetHealth"})
CHECK = "target-group-healthy"


def check(report: PreflightReport) -> tuple[Verdict, str]:
    """Return the verdict and the why of the target group's health check."""
    assert [c.name for c in report.checks] == [CHECK]
    return report.checks[0].verdict, report.checks[0].why


async def test_preflight_names_both_groups_passes_and_changes_nothing(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener(green_targets=2)
    endpoint = await aws_endpoint()
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)
    assert isinstance(provider, Preflight) and isinstance(provider, Describe)

    report = await provider.preflight("green")

    assert report.current is not None
    assert report.current.version == "blue"
    assert report.current.exact == f"{target.blue_arn} (targets 10.0.1.10:8080)"
    assert report.target.version == "green"
    assert report.target.exact == f"{target.green_arn} (targets 10.0.1.10:8080, 10.0.1.11:8080)"
    verdict, why = check(report)
    assert verdict is Verdict.PASS
    assert re.fullmatch(r"green \(target group green-\w+\): 2/2 targets healthy\.", why), why
    assert report.changes == [
        "traffic: all to blue -> all to green",
        "replicas: 1 target in blue -> 2 targets in green",
    ]
    assert set(endpoint.actions) <= READS, endpoint.actions
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.blue_arn


async def test_an_empty_group_fails(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory
) -> None:
    target = alb_listener(green_targets=0)

    report = await aws_provider(target).preflight("green")

    verdict, why = check(report)
    assert verdict is Verdict.FAIL
    assert why.endswith("has no registered targets: all traffic would go to nothing.")
    assert report.target.exact == f"{target.green_arn} (no registered targets)"


@pytest.mark.parametrize(
    ("states", "verdict", "said"),
    [
        (
            [MISMATCH, TIMED_OUT],
            Verdict.FAIL,
            "0/2 targets healthy; 1 unhealthy (Target.ResponseCodeMismatch: Health checks "
            "failed with these codes: [502]), 1 unhealthy (Target.Timeout: Request timed out).",
        ),
        (
            [NOT_IN_USE],
            Verdict.FAIL,
            "0/1 targets healthy; 1 unused (Target.NotInUse: Target group is not configured "
            "to receive traffic from the load balancer). AWS does not health-check a group no "
            "listener rule uses.",
        ),
        (
            [INITIAL],
            Verdict.FAIL,
            "0/1 targets healthy; 1 initial (Elb.RegistrationInProgress: Target registration "
            "is in progress).",
        ),
        (
            [HEALTHY, TIMED_OUT],
            Verdict.WARN,
            "1/2 targets healthy; 1 unhealthy (Target.Timeout: Request timed out).",
        ),
    ],
)
async def test_unhealthy_targets_fail_and_some_unhealthy_warn(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    states: list[Any],
    verdict: Verdict,
    said: str,
) -> None:
    target = alb_listener(green_targets=len(states))
    endpoint = await aws_endpoint()
    endpoint.target_health(target.green_arn, states)

    report = await aws_provider(target, endpoint_url=endpoint.endpoint_url).preflight("green")

    found, why = check(report)
    assert found is verdict
    assert why.startswith("green (target group green-") and why.endswith(f"): {said}"), why


async def test_unreadable_target_health_fails_closed(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
) -> None:
    target = alb_listener()
    endpoint = await aws_endpoint()
    endpoint.fail(403, "AccessDenied", "not allowed", action="DescribeTargetHealth")

    report = await aws_provider(target, endpoint_url=endpoint.endpoint_url).preflight("green")

    verdict, why = check(report)
    assert verdict is Verdict.FAIL
    assert why.startswith("green's target health could not be read: ")
    assert "elasticloadbalancing:DescribeTargetHealth" in why
    assert report.current is not None
    assert report.current.exact == f"{target.blue_arn} (targets unknown: unreadable)"


async def test_a_weighted_split_is_a_change(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory
) -> None:
    target = alb_listener(weighted=True)

    report = await aws_provider(target).preflight("green")

    assert report.current is not None
    assert report.current.exact == (
        f"{target.blue_arn} (targets 10.0.1.10:8080; weights blue 90, green 10)"
    )
    assert report.changes == ["traffic: blue 90%, green 10% -> all to green"]


async def test_an_unknown_or_current_label_is_refused_as_plan_does(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory
) -> None:
    provider = aws_provider(alb_listener())
    with pytest.raises(NotFound, match="available: blue, green"):
        await provider.preflight("purple")
    with pytest.raises(Refused, match="already forwards to blue"):
        await provider.preflight("blue")


async def test_identity_now_is_the_forward_group_and_its_targets(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory, elbv2_client: Any
) -> None:
    target = alb_listener(green_targets=3)
    provider = aws_provider(target)

    identity = await provider.identity_now()
    assert (identity.version, identity.exact) == (
        "blue",
        f"{target.blue_arn} (targets 10.0.1.10:8080)",
    )

    # Someone switches the listener behind rollbot's back: the identity says so.
    elbv2_client.modify_listener(
        ListenerArn=target.listener_arn,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": target.green_arn}],
    )
    identity = await provider.identity_now()
    assert identity.version == "green"
    assert identity.exact == (
        f"{target.green_arn} (targets 10.0.1.10:8080, 10.0.1.11:8080, 10.0.1.12:8080)"
    )


async def test_many_targets_are_named_by_a_digest_of_the_set(
    alb_listener: AlbListenerFactory, aws_provider: ProviderFactory, elbv2_client: Any
) -> None:
    target = alb_listener(green_targets=7)
    provider = aws_provider(target)

    exact = (await provider.preflight("green")).target.exact
    assert re.fullmatch(re.escape(target.green_arn) + r" \(7 targets, set [0-9a-f]{12}\)", exact)

    elbv2_client.deregister_targets(
        TargetGroupArn=target.green_arn, Targets=[{"Id": "10.0.1.16", "Port": 8080}]
    )
    elbv2_client.register_targets(
        TargetGroupArn=target.green_arn, Targets=[{"Id": "10.0.1.99", "Port": 8080}]
    )
    again = (await provider.preflight("green")).target.exact
    assert again.endswith(")") and "7 targets" in again and again != exact
