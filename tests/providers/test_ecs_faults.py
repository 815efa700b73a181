"""Fault matrix: every fault AWS can answer, on every call an ECS or blue/green rollback makes.

Each case runs a rollback through the stand-in endpoint (tests/support/aws_standin.py,
AWS-shaped errors picked by operation) in front of moto. A one-off transient fault on a
read is retried and the rollback ends on the target; anything else fails with a message
that names the cause, and the state the error or describe_state gives agrees with what
moto holds. Writes (UpdateService, ModifyListener) are never retried.
"""

from __future__ import annotations

from typing import Any

import pytest

from providers.base import Provider, ProviderError
from tests.support.aws import (
    AlbListenerFactory,
    AwsEndpointFactory,
    EcsServiceFactory,
    ProviderFactory,
    listener_actions,
    service_task_definition,
)
from tests.support.aws_standin import AwsStandIn
from tests.support.faults import ALL_FAULTS, TRANSIENT, Fault, assert_names_cause
from tests.support.progress import Recorder

WRITES = frozenset({"UpdateService", "ModifyListener"})
# (operation, how many of its calls go through before the fault), in the rollback's order.
ECS_CALLS = [
    ("DescribeServices", 0),
    ("ListTaskDefinitions", 0),
    ("DescribeTaskDefinition", 0),
    ("UpdateService", 0),
    ("DescribeServices", 1),  # the first poll after the update
]
BLUE_GREEN_CALLS = [
    ("DescribeListeners", 0),
    ("DescribeTargetHealth", 0),
    ("ModifyListener", 0),
    ("DescribeListeners", 1),  # the first read after the switch
    ("DescribeTargetHealth", 1),
]
# Short enough to find a held request (2 s) quickly, long enough for moto on a busy machine.
FAST = {"api_timeout_seconds": 1.0}


def recovers(fault: Fault, action: str) -> bool:
    """A one-off transient fault on a read is retried; nothing else is."""
    return fault in TRANSIENT and action not in WRITES


async def run(provider: Provider, target: str) -> ProviderError | None:
    try:
        await provider.rollback(target, Recorder())
    except ProviderError as exc:
        return exc
    return None


async def test_the_matrix_covers_every_call_a_rollback_makes(
    ecs_service: EcsServiceFactory,
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
) -> None:
    endpoint = await aws_endpoint()
    await aws_provider(ecs_service(), endpoint_url=endpoint.endpoint_url).rollback(
        "v1.2.3", Recorder()
    )
    assert set(endpoint.actions) == {action for action, _ in ECS_CALLS}
    assert endpoint.actions.count("DescribeServices") > 1

    endpoint = await aws_endpoint()
    await aws_provider(alb_listener(), endpoint_url=endpoint.endpoint_url).rollback(
        "green", Recorder()
    )
    assert set(endpoint.actions) == {action for action, _ in BLUE_GREEN_CALLS}


@pytest.mark.parametrize("fault", ALL_FAULTS, ids=str)
@pytest.mark.parametrize(("action", "after"), ECS_CALLS, ids=lambda v: str(v))
async def test_ecs_rollback_under_fault(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
    fault: Fault,
    action: str,
    after: int,
) -> None:
    target = ecs_service()
    endpoint: AwsStandIn = await aws_endpoint(hang_seconds=2)
    endpoint.inject(fault, action=action, after=after)
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url, **FAST)

    error = await run(provider, "v1.2.3")

    now = service_task_definition(ecs_client, target).rpartition(":")[2]
    assert endpoint.intercepted == [action]
    if recovers(fault, action):
        assert error is None, error.message if error else ""
        assert now == "2"
        return
    assert error is not None, "the rollback succeeded through a fault that cannot be retried"
    assert_names_cause(fault, error.message)
    assert now == ("2" if (action, after) == ("DescribeServices", 1) else "3")
    state = error.target_state or await provider.describe_state()
    assert f"is set to {target.family}:{now} " in state, state
    assert endpoint.actions.count("UpdateService") <= 1


@pytest.mark.parametrize("fault", ALL_FAULTS, ids=str)
@pytest.mark.parametrize(("action", "after"), BLUE_GREEN_CALLS, ids=lambda v: str(v))
async def test_blue_green_rollback_under_fault(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    elbv2_client: Any,
    fault: Fault,
    action: str,
    after: int,
) -> None:
    target = alb_listener()
    endpoint: AwsStandIn = await aws_endpoint(hang_seconds=2)
    endpoint.inject(fault, action=action, after=after)
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url, **FAST)

    error = await run(provider, "green")

    forwards = listener_actions(elbv2_client, target)[0]["TargetGroupArn"]
    now = "green" if forwards == target.green_arn else "blue"
    assert endpoint.intercepted == [action]
    if recovers(fault, action):
        assert error is None, error.message if error else ""
        assert now == "green"
        return
    assert error is not None, "the rollback succeeded through a fault that cannot be retried"
    assert_names_cause(fault, error.message)
    assert now == ("green" if after else "blue")
    state = error.target_state or await provider.describe_state()
    assert state.endswith(f"forwards to {now}"), state
    assert endpoint.actions.count("ModifyListener") <= 1


async def test_an_update_applied_whose_answer_was_lost_is_read_back_and_followed(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service()
    endpoint = await aws_endpoint()
    endpoint.lose_answer("UpdateService")
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url, **FAST)

    outcome = await provider.rollback("v1.2.3", Recorder())

    assert "now runs" in outcome.summary
    assert endpoint.actions.count("UpdateService") == 1
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:2")


async def test_a_switch_applied_whose_answer_was_lost_is_read_back_and_followed(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener()
    endpoint = await aws_endpoint()
    endpoint.lose_answer("ModifyListener")
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url, **FAST)

    outcome = await provider.rollback("green", Recorder())

    assert outcome.summary.startswith("Listener now forwards all traffic to green")
    assert endpoint.actions.count("ModifyListener") == 1
    assert listener_actions(elbv2_client, target)[0]["TargetGroupArn"] == target.green_arn
