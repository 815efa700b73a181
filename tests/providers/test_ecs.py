"""The ecs provider against moto in server mode, over real HTTP (no mocks)."""

from __future__ import annotations

from typing import Any

import pytest

from providers.base import (
    AuthRejected,
    NotFound,
    ProviderError,
    RateLimited,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
)
from tests.support.aws import (
    AwsEndpointFactory,
    EcsServiceFactory,
    ProviderFactory,
    service_task_definition,
)
from tests.support.progress import Recorder


def counts(progress: Recorder) -> list[str]:
    """Return the task-count lines a rollback posted."""
    return [m for m in progress.messages if m.startswith("Tasks:")]


async def test_versions_are_revisions_named_by_image_tag(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory
) -> None:
    target = ecs_service()
    provider = aws_provider(target)

    versions = await provider.list_versions()

    assert [v.name for v in versions] == ["v1.2.4", "v1.2.3", "v1.2.2"]
    assert [v.name for v in versions if v.current] == ["v1.2.4"]
    assert [v.name for v in versions if v.previous_stable] == ["v1.2.3"]
    assert versions[1].detail == (
        f"revision {target.family}:2, image registry:5000/pmcrm/backend:v1.2.3"
    )
    assert versions[1].answers_to("2")  # `/rollback backend 2`
    assert await provider.current_version() == "v1.2.4"


async def test_shared_tags_and_bare_revision_numbers(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, ecs_client: Any
) -> None:
    # Revision 3 re-registered v1.2.3 with other settings: the newest keeps the bare tag.
    target = ecs_service(("v1.2.2", "v1.2.3", "v1.2.3", "v1.2.4"))
    provider = aws_provider(target)

    names = [v.name for v in await provider.list_versions()]
    assert names == ["v1.2.4", "v1.2.3", "v1.2.3+r2", "v1.2.2"]
    plan = await provider.plan("v1.2.3+r2")
    assert f"taskDefinition {target.family}:2" in plan.steps[0]

    # A bare revision number names a revision too: `/rollback backend 1`.
    plan = await provider.plan("1")
    assert f"taskDefinition {target.family}:1 (v1.2.2, image" in plan.steps[0]
    await provider.rollback("1", Recorder())
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:1")
    assert await provider.current_version() == "v1.2.2"


async def test_plan_describes_the_update_and_changes_nothing(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, ecs_client: Any
) -> None:
    target = ecs_service()
    provider = aws_provider(target)

    plan = await provider.plan("v1.2.3")

    assert "ecs:UpdateService" in plan.steps[0]
    described = f"{target.family}:2 (v1.2.3, image registry:5000/pmcrm/backend:v1.2.3)"
    assert f"taskDefinition {described}; it is set to {target.family}:3 (v1.2.4," in plan.steps[0]
    assert "2/2 tasks running" in plan.steps[-1]
    assert plan.warnings == []
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:3")


async def test_rollback_updates_the_service_and_waits_until_stable(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, ecs_client: Any
) -> None:
    target = ecs_service()
    provider = aws_provider(target)
    progress = Recorder()

    outcome = await provider.rollback("v1.2.3", progress)

    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:2")
    assert "now runs" in outcome.summary and "v1.2.3" in outcome.summary
    assert counts(progress) == ["Tasks: 2 running, 0 pending of 2 desired (rollout COMPLETED)."]
    assert await provider.current_version() == "v1.2.3"
    assert f"is set to {target.family}:2 (v1.2.3)" in await provider.describe_state()


async def test_failing_tasks_fail_the_rollback_with_the_state_now(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, ecs_client: Any
) -> None:
    target = ecs_service(running=0, failed_tasks=3)
    provider = aws_provider(target)
    progress = Recorder()

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback("v1.2.3", progress)

    assert "3 tasks of the new deployment failed" in failed.value.message
    state = failed.value.target_state or ""
    assert f"is set to {target.family}:2 (v1.2.3)" in state
    assert "0 running, 2 pending of 2 desired" in state
    assert counts(progress) == [
        "Tasks: 0 running, 2 pending of 2 desired, 3 failed (rollout IN_PROGRESS)."
    ]
    # The mutation went through once; what the service is set to is read back from moto.
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:2")


async def test_a_deployment_that_never_completes_times_out(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory
) -> None:
    target = ecs_service(running=1)
    provider = aws_provider(target, stable_timeout_seconds=1, poll_interval_seconds=0.1)
    progress = Recorder()

    with pytest.raises(TimedOut) as timed_out:
        await provider.rollback("v1.2.3", progress)

    assert "did not complete within 1 s" in timed_out.value.message
    assert "1 running, 1 pending of 2 desired" in (timed_out.value.target_state or "")
    # Several polls, one line: counts are posted only when they change.
    assert len(counts(progress)) == 1


async def test_unknown_version_is_not_found_and_lists_what_exists(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, ecs_client: Any
) -> None:
    target = ecs_service()
    provider = aws_provider(target)

    for version in ("v9.9.9", "99"):
        with pytest.raises(NotFound) as missing:
            await provider.plan(version)
        assert "available: v1.2.4, v1.2.3, v1.2.2" in missing.value.message
    with pytest.raises(NotFound):
        await provider.rollback("v9.9.9", Recorder())
    with pytest.raises(Refused, match="already set to"):
        await provider.plan("3")
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:3")


async def test_missing_service_or_cluster_is_not_found(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory
) -> None:
    target = ecs_service()
    with pytest.raises(NotFound, match="was not found"):
        await aws_provider(target, service="nope").list_versions()
    with pytest.raises(NotFound, match="ClusterNotFoundException"):
        await aws_provider(target, cluster="nope").describe_state()


async def test_a_service_of_another_family_is_refused(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory
) -> None:
    target = ecs_service()
    with pytest.raises(Refused, match="configured for `other`"):
        await aws_provider(target, family="other").current_version()


@pytest.mark.parametrize(
    ("status", "code", "expected", "attempts"),
    [
        (400, "UnrecognizedClientException", AuthRejected, 1),
        (400, "AccessDeniedException", AuthRejected, 1),
        (400, "ThrottlingException", RateLimited, 4),
        (503, "ServiceUnavailable", Transient, 4),
    ],
)
async def test_aws_errors_are_translated_and_only_transient_reads_retried(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    status: int,
    code: str,
    expected: type[ProviderError],
    attempts: int,
) -> None:
    endpoint = await aws_endpoint(error=(status, code, "say no"))
    provider = aws_provider(ecs_service(), endpoint_url=endpoint.endpoint_url)

    with pytest.raises(expected) as raised:
        await provider.list_versions()

    assert code in raised.value.message
    # botocore's own retries are off: every attempt is one of ours.
    assert endpoint.requests == attempts


async def test_a_failed_update_is_not_retried_and_says_where_the_service_stands(
    ecs_service: EcsServiceFactory,
    aws_provider: ProviderFactory,
    aws_endpoint: AwsEndpointFactory,
    ecs_client: Any,
) -> None:
    target = ecs_service()
    endpoint = await aws_endpoint(action="UpdateService", error=(503, "ServerException", "oops"))
    provider = aws_provider(target, endpoint_url=endpoint.endpoint_url)

    with pytest.raises(Transient) as failed:
        await provider.rollback("v1.2.3", Recorder())

    # Read back before answering: the update did not reach ECS.
    assert "It was not applied" in failed.value.message
    assert endpoint.intercepted == ["UpdateService"]  # reads are retried, the update never
    assert f"is set to {target.family}:3 (v1.2.4)" in (failed.value.target_state or "")
    assert service_task_definition(ecs_client, target).endswith(f"{target.family}:3")


async def test_a_silent_endpoint_times_out(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory, aws_endpoint: AwsEndpointFactory
) -> None:
    endpoint = await aws_endpoint(error=(500, "InternalFailure", "late"), delay=5)
    provider = aws_provider(
        ecs_service(), endpoint_url=endpoint.endpoint_url, api_timeout_seconds=0.3
    )
    with pytest.raises(TimedOut, match="did not answer in time"):
        await provider.current_version()
    # A read is safe to ask again; after four silent tries it gives up.
    assert endpoint.requests == 4


async def test_an_unknown_profile_is_refused_before_any_call(
    ecs_service: EcsServiceFactory, aws_provider: ProviderFactory
) -> None:
    provider = aws_provider(ecs_service(), profile="no-such-profile")
    with pytest.raises(Refused, match="profile `no-such-profile` is not configured"):
        await provider.list_versions()
