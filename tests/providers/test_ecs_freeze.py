"""Freezing an ECS target: watch only, nothing on AWS changes (ECS has no setting to freeze)."""

from __future__ import annotations

from typing import Any

from providers.capabilities import Freeze
from tests.support.aws import (
    AlbListenerFactory,
    AwsEndpointFactory,
    EcsServiceFactory,
    ProviderFactory,
    listener_actions,
)


def service_settings(ecs_client: Any, cluster: str, service: str) -> dict[str, Any]:
    (described,) = ecs_client.describe_services(cluster=cluster, services=[service])["services"]
    return {
        "taskDefinition": described["taskDefinition"],
        "deploymentConfiguration": described.get("deploymentConfiguration"),
    }


async def test_the_freeze_is_watch_only_and_changes_nothing_on_aws(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service()
    endpoint = await aws_endpoint()
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)
    assert isinstance(provider, Freeze)
    before = service_settings(ecs_client, target.cluster, target.service)

    record = await provider.freeze("v1.2.4", "v1.2.3")
    again = await provider.freeze("v1.2.4", "v1.2.3")
    said = await provider.unfreeze(record)

    assert record.action.startswith("watch only: ")
    assert "circuit breaker" in record.action and "v1.2.3" in record.action
    assert record.saved == {}
    assert again == record
    assert "Nothing to restore" in said
    assert endpoint.actions == []  # not a single call: no write, no permission needed
    assert service_settings(ecs_client, target.cluster, target.service) == before


async def test_a_blue_green_freeze_is_watch_only_and_leaves_the_listener(
    alb_listener: AlbListenerFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    elbv2_client: Any,
) -> None:
    target = alb_listener()
    endpoint = await aws_endpoint()
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)
    assert isinstance(provider, Freeze)
    before = listener_actions(elbv2_client, target)

    record = await provider.freeze("green", "blue")
    said = await provider.unfreeze(record)

    assert record.action.startswith("watch only: ")
    assert "load balancer" in record.action
    assert record.saved == {}
    assert "Nothing to restore" in said
    assert endpoint.actions == []
    assert listener_actions(elbv2_client, target) == before
