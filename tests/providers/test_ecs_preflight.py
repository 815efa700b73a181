"""The ecs provider's preflight and identity, on moto (behind the stand-in where moto cannot
show a state: a tripped circuit breaker, another deployment controller)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from providers.base import NotFound, Refused
from providers.capabilities import Describe, Preflight, PreflightReport, Verdict
from tests.support.aws import (
    AwsEndpointFactory,
    EcsService,
    EcsServiceFactory,
    ProviderFactory,
    breaker_tripped,
    push_manifest,
    register_revision,
    service_task_definition,
    unique,
)

READS = frozenset({"DescribeServices", "ListTaskDefinitions", "DescribeTaskDefinition"})


def ecr_revisions(ecs_client: Any, ecr_client: Any, target: EcsService) -> dict[str, str]:
    """Revisions on ECR images v2.0.0 (pushed), v2.0.1 (never pushed), v2.0.2 (pushed, current).

    Returns the digests of the pushed tags.
    """
    repository = unique("pmcrm/backend")
    uri = ecr_client.create_repository(repositoryName=repository)["repository"]["repositoryUri"]
    digests = {tag: push_manifest(ecr_client, repository, tag) for tag in ("v2.0.0", "v2.0.2")}
    for tag in ("v2.0.0", "v2.0.1", "v2.0.2"):
        number = register_revision(
            ecs_client, target, tag, sidecar=False, app={"image": f"{uri}:{tag}"}
        )
    ecs_client.update_service(
        cluster=target.cluster, service=target.service, taskDefinition=f"{target.family}:{number}"
    )
    return digests


def verdicts(report: PreflightReport) -> dict[str, Verdict]:
    """Map each check's name to its verdict."""
    return {check.name: check.verdict for check in report.checks}


def why(report: PreflightReport, name: str) -> str:
    """Return the one line of why of the named check."""
    return next(check.why for check in report.checks if check.name == name)


def arn(target: EcsService, number: int) -> str:
    """The task-definition ARN moto gives a revision of the family."""
    return f"arn:aws:ecs:us-east-1:123456789012:task-definition/{target.family}:{number}"


async def test_preflight_names_exact_revisions_passes_and_changes_nothing(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service()
    endpoint = await aws_endpoint()
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)
    assert isinstance(provider, Preflight) and isinstance(provider, Describe)

    report = await provider.preflight("v1.2.3")

    assert report.current is not None
    assert (report.current.version, report.current.exact) == ("v1.2.4", arn(target, 3))
    assert (report.target.version, report.target.exact) == ("v1.2.3", arn(target, 2))
    assert verdicts(report) == {
        "task-definition-active": Verdict.PASS,
        "circuit-breaker": Verdict.PASS,
        "deployment-controller": Verdict.PASS,
        # Neither registry:5000 nor Docker Hub is ECR: said, not checked.
        "image-present": Verdict.WARN,
    }
    assert why(report, "image-present") == (
        "envoy: envoyproxy/envoy:v1.30.1 not checked (not in ECR); "
        "app: registry:5000/pmcrm/backend:v1.2.3 not checked (not in ECR)."
    )
    assert why(report, "task-definition-active") == f"{target.family}:2 is ACTIVE."
    assert report.changes == [
        "app: image: registry:5000/pmcrm/backend:v1.2.4 -> registry:5000/pmcrm/backend:v1.2.3"
    ]
    # Reads only: nothing was registered, updated or deregistered.
    assert set(endpoint.actions) <= READS, endpoint.actions
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:3")


async def test_an_inactive_revision_fails_its_check(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, ecs_client: Any
) -> None:
    target = ecs_service()
    ecs_client.deregister_task_definition(taskDefinition=f"{target.family}:1")
    provider = aws_provider(target)

    report = await provider.preflight("1")

    assert report.target.exact == arn(target, 1)
    assert verdicts(report)["task-definition-active"] is Verdict.FAIL
    assert why(report, "task-definition-active").startswith(
        f"{target.family}:1 is INACTIVE (deregistered): ECS cannot update a service to it"
    )
    # plan still does not offer it.
    with pytest.raises(NotFound):
        await provider.plan("1")


async def test_an_unknown_or_current_version_is_refused_as_plan_does(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory
) -> None:
    provider = aws_provider(ecs_service())
    for version in ("v9.9.9", "99"):
        with pytest.raises(NotFound, match=re.escape("available: v1.2.4, v1.2.3, v1.2.2")):
            await provider.preflight(version)
    with pytest.raises(Refused, match="already set to"):
        await provider.preflight("v1.2.4")


async def test_changes_list_env_names_ports_command_cpu_memory_and_containers(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, ecs_client: Any
) -> None:
    target = ecs_service()
    older = register_revision(
        ecs_client,
        target,
        "v1.3.0",
        sidecar=False,
        cpu="512",
        memory="1024",
        app={
            "environment": [
                {"name": "DATABASE_URL", "value": "postgres://old-secret@db/app"},
                {"name": "FEATURE_X", "value": "on"},
            ],
            "secrets": [{"name": "API_TOKEN", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/t"}],
            "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            "command": ["node", "server.js"],
            "memory": 256,
        },
    )
    newer = register_revision(
        ecs_client,
        target,
        "v1.3.1",
        cpu="1024",
        memory="2048",
        app={
            "environment": [
                {"name": "DATABASE_URL", "value": "postgres://new-secret@db/app"},
                {"name": "OLD_KEY", "value": "value-not-shown"},
            ],
            "secrets": [{"name": "API_TOKEN", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/u"}],
            "portMappings": [{"containerPort": 8081, "protocol": "tcp"}],
            "command": ["node", "dist/server.js", "--port", "8081"],
            "memory": 512,
        },
    )
    ecs_client.update_service(
        cluster=target.cluster, service=target.service, taskDefinition=f"{target.family}:{newer}"
    )
    provider = aws_provider(target)

    report = await provider.preflight("v1.3.0")

    assert report.target.exact == arn(target, older)
    assert report.changes == [
        "task cpu: 1024 -> 512 units",
        "task memory: 2048 -> 1024 MiB",
        "containers removed: envoy",
        "app: image: registry:5000/pmcrm/backend:v1.3.1 -> registry:5000/pmcrm/backend:v1.3.0",
        "app: env names added: FEATURE_X; removed: OLD_KEY",
        "app: ports: 8081/tcp -> 8080/tcp",
        "app: command: node dist/server.js --port 8081 -> node server.js",
        "app: memory: 512 -> 256 MiB",
    ]
    text = "\n".join(report.changes + [c.why for c in report.checks])
    for value in ("secret", "value-not-shown", "parameter/"):
        assert value not in text


async def test_same_settings_and_a_service_scaled_to_zero_are_said(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, ecs_client: Any
) -> None:
    target = ecs_service(desired=0, running=0)
    # :4 re-registers :3's settings and the service moves to it.
    newest = register_revision(ecs_client, target, "v1.2.4")
    ecs_client.update_service(
        cluster=target.cluster, service=target.service, taskDefinition=f"{target.family}:{newest}"
    )
    provider = aws_provider(target)

    report = await provider.preflight("v1.2.4+r3")

    assert report.changes == [
        "containers: the same images, env names, ports, commands, cpu and memory",
        "replicas: 0 desired (the service's setting, unchanged): no task will run the target",
    ]


async def test_identity_now_is_the_revision_the_service_is_set_to(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, ecs_client: Any
) -> None:
    target = ecs_service()
    provider = aws_provider(target)

    identity = await provider.identity_now()
    assert (identity.version, identity.exact) == ("v1.2.4", arn(target, 3))

    # Someone deploys :2 behind rollbot's back: the identity says so.
    ecs_client.update_service(
        cluster=target.cluster, service=target.service, taskDefinition=f"{target.family}:2"
    )
    identity = await provider.identity_now()
    assert (identity.version, identity.exact) == ("v1.2.3", arn(target, 2))


async def test_a_breaker_rolling_back_fails_and_one_that_rolled_back_warns(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service()
    ecs_client.update_service(
        cluster=target.cluster, service=target.service, taskDefinition=f"{target.family}:2"
    )
    rolling = await aws_endpoint()
    rolling.edit_services(breaker_tripped(target, good=2, bad=3, done=False))
    provider = aws_provider(target, endpoint_url=rolling.endpoint_url)

    report = await provider.preflight("v1.2.2")

    assert verdicts(report)["circuit-breaker"] is Verdict.FAIL
    assert why(report, "circuit-breaker") == (
        f"ECS's circuit breaker is rolling back to {target.family}:2 (v1.2.3) since 03:12 UTC "
        f"after {target.family}:3 (v1.2.4) failed (tasks failed to start): a rollback now "
        "would replace ECS's own."
    )
    assert set(rolling.actions) <= READS

    done = await aws_endpoint()
    done.edit_services(breaker_tripped(target, good=2, bad=3, done=True))
    report = await aws_provider(target, endpoint_url=done.endpoint_url).preflight("v1.2.2")

    assert verdicts(report)["circuit-breaker"] is Verdict.WARN
    assert why(report, "circuit-breaker") == (
        f"ECS's circuit breaker already rolled back to {target.family}:2 (v1.2.3) at 03:12 UTC "
        "(deployment ecs-svc/3333 failed: tasks failed to start)."
    )


async def test_another_deployment_controller_fails(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, aws_endpoint: AwsEndpointFactory
) -> None:
    target = ecs_service()
    endpoint = await aws_endpoint()

    def code_deploy(service: dict[str, Any]) -> None:
        service["deploymentController"] = {"type": "CODE_DEPLOY"}

    endpoint.edit_services(code_deploy)
    report = await aws_provider(target, endpoint_url=endpoint.endpoint_url).preflight("v1.2.3")

    assert verdicts(report)["deployment-controller"] is Verdict.FAIL
    assert "CODE_DEPLOY" in why(report, "deployment-controller")


async def test_an_image_missing_from_ecr_fails_and_a_present_one_shows_its_digest(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    ecs_client: Any,
    ecr_client: Any,
) -> None:
    target = ecs_service()
    digests = ecr_revisions(ecs_client, ecr_client, target)
    provider = aws_provider(target)

    present = await provider.preflight("v2.0.0")
    assert verdicts(present)["image-present"] is Verdict.PASS
    assert why(present, "image-present").endswith(f":v2.0.0 is in ECR ({digests['v2.0.0']}).")

    # An image an ECR lifecycle policy expired: ECS would fail every task on the pull.
    missing = await provider.preflight("v2.0.1")
    assert verdicts(missing)["image-present"] is Verdict.FAIL
    assert why(missing, "image-present").endswith(":v2.0.1 is not in ECR (deleted or expired?).")


async def test_an_image_ecr_will_not_describe_warns_instead_of_passing(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
    ecr_client: Any,
) -> None:
    target = ecs_service()
    ecr_revisions(ecs_client, ecr_client, target)
    denied = (400, "AccessDeniedException", "User is not authorized to perform ecr:DescribeImages")
    endpoint = await aws_endpoint(action="DescribeImages", error=denied)

    report = await aws_provider(target, endpoint_url=endpoint.endpoint_url).preflight("v2.0.0")

    assert verdicts(report)["image-present"] is Verdict.WARN
    assert "not checked (no ecr:DescribeImages permission)" in why(report, "image-present")
