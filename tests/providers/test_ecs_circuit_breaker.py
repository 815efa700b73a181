"""The ecs provider and ECS's own deployment circuit breaker, on moto behind the stand-in.

moto never fails a deployment; the stand-in adds what describe_services shows when the
breaker tripped (shapes as in the ECS API reference: a PRIMARY deployment with
rolloutStateReason "ECS deployment circuit breaker: rolling back to deploymentId ...",
the failed one ACTIVE with rolloutState FAILED, and the service events).
"""

from __future__ import annotations

from typing import Any

import pytest

from providers.base import Conflicting, RollbackFailed
from tests.support.aws import (
    AwsEndpointFactory,
    EcsServiceFactory,
    ProviderFactory,
    breaker_tripped,
    service_task_definition,
)
from tests.support.progress import Recorder


async def test_a_rollback_ecs_is_running_is_labelled_and_not_fought(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service()
    # ECS set the service back to :2 itself when :3's tasks failed.
    ecs_client.update_service(
        cluster=target.cluster, service=target.service, taskDefinition=f"{target.family}:2"
    )
    endpoint = await aws_endpoint()
    endpoint.edit_services(breaker_tripped(target, good=2, bad=3, done=False))
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)

    versions = {v.name: v for v in await provider.list_versions()}
    assert versions["v1.2.3"].current
    assert (
        f"ECS's circuit breaker is rolling back to {target.family}:2 since 03:12 UTC"
        in versions["v1.2.3"].detail
    )
    assert "tasks failed to start" in versions["v1.2.4"].detail

    for attempt in ("v1.2.2", "v1.2.4"):
        with pytest.raises(Conflicting) as refused:
            await provider.plan(attempt)
        assert "ECS's circuit breaker is rolling" in refused.value.message
        assert "wait until it completes" in refused.value.message
    with pytest.raises(Conflicting) as refused:
        await provider.rollback("v1.2.2", Recorder())
    assert "would replace ECS's own rollback" in refused.value.message
    assert "IN_PROGRESS (1/2 running, 1 pending)" in (refused.value.target_state or "")
    assert "UpdateService" not in endpoint.actions
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:2")


async def test_a_rollback_ecs_finished_is_labelled_and_going_further_back_is_warned(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service()
    ecs_client.update_service(
        cluster=target.cluster, service=target.service, taskDefinition=f"{target.family}:2"
    )
    endpoint = await aws_endpoint()
    endpoint.edit_services(breaker_tripped(target, good=2, bad=3, done=True))
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)

    versions = {v.name: v for v in await provider.list_versions()}
    assert (
        f"ECS's circuit breaker already rolled back to {target.family}:2 at 03:12 UTC "
        "(deployment ecs-svc/3333 failed: tasks failed to start)" in versions["v1.2.3"].detail
    )
    plan = await provider.plan("v1.2.2")
    assert any(
        f"ECS's circuit breaker already rolled back `{target.service}` to "
        f"{target.family}:2 (v1.2.3) at 03:12 UTC"
        in w
        and "goes further back" in w
        for w in plan.warnings
    ), plan.warnings
    await provider.rollback("v1.2.2", Recorder())
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:1")


async def test_a_rollback_the_breaker_stops_says_what_ecs_did(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service(running=1)
    endpoint = await aws_endpoint()
    tripped = breaker_tripped(target, good=3, bad=2, done=False)

    def after_the_update(service: dict[str, Any]) -> None:
        if service["taskDefinition"].endswith(f"{target.family}:2"):
            # ECS sets the service back to :3 as its rollback starts.
            service["taskDefinition"] = service["taskDefinition"][:-1] + "3"
            tripped(service)

    endpoint.edit_services(after_the_update)
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback("v1.2.3", Recorder())

    message = failed.value.message
    assert "ECS's circuit breaker stopped this rollback" in message
    assert "tasks failed to start" in message
    assert f"rolling the service back to {target.family}:3 (v1.2.4)" in message
