"""The kubernetes provider on a real API server and controllers (pods run by the fake kubelet)."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client

from providers.base import NotFound, Refused, RollbackFailed, TimedOut
from providers.kube_revisions import REVISION
from tests.support.kube_workloads import (
    KubeProviderFactory,
    create_pull_secret,
    private_repository,
    push_image,
    read_workload,
    workload,
)
from tests.support.progress import Recorder


@pytest.fixture
async def images(kube_api: client.ApiClient, kube_namespace: str) -> list[str]:
    """v1, v2 and v3 of a fresh repository, pushed; the namespace holds the pull secret."""
    repository = private_repository()
    await create_pull_secret(kube_api, kube_namespace)
    found = []
    for tag in ("v1", "v2", "v3"):
        push_image(repository.split("/", 1)[1], tag)
        found.append(f"{repository}:{tag}")
    return found


async def pod_images(api: client.ApiClient, namespace: str, app: str) -> list[str]:
    """The image of each pod of an app that is not being deleted."""
    pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}")
    return sorted(
        p.spec.containers[0].image for p in pods.items if p.metadata.deletion_timestamp is None
    )


async def test_a_deployment_goes_back_to_previous_and_to_revision_one(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    images: list[str],
) -> None:
    await workload(kube_api, kube_namespace, "web", images)
    provider = kube_provider(name="web")

    versions = await provider.list_versions()
    assert [(v.name, v.current, v.previous_stable) for v in versions] == [
        ("v3", True, False),
        ("v2", False, True),
        ("v1", False, False),
    ]
    assert versions[2].aliases == ("1", "r1")
    plan = await provider.plan("v2")
    assert "kubectl rollout undo --to-revision=2" in plan.steps[0]

    progress = Recorder()
    outcome = await provider.rollback("v2", progress)
    assert f"runs {images[1]}" in outcome.summary
    deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == images[1]
    # The ReplicaSet of revision 2 is reused and becomes the newest revision, 4.
    assert deployment["metadata"]["annotations"][REVISION] == "4"
    assert "pod-template-hash" not in deployment["spec"]["template"]["metadata"]["labels"]
    assert await pod_images(kube_api, kube_namespace, "web") == [images[1]] * 2

    await provider.rollback("1", progress)
    deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == images[0]
    assert deployment["metadata"]["annotations"][REVISION] == "5"
    assert await provider.current_version() == "v1"
    assert await pod_images(kube_api, kube_namespace, "web") == [images[0]] * 2
    assert any("set to revision 1" in line for line in progress.messages)


async def test_unknown_and_current_revisions_are_refused(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    images: list[str],
) -> None:
    await workload(kube_api, kube_namespace, "web", images[:2])
    provider = kube_provider(name="web")
    with pytest.raises(NotFound, match=r"available: v2 \(revision 2\), v1 \(revision 1\)"):
        await provider.plan("v9")
    with pytest.raises(Refused, match="already at revision 2"):
        await provider.plan("v2")


async def test_a_rollout_that_never_becomes_available_names_the_pods_and_why(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    images: list[str],
) -> None:
    broken = images[0].replace("/web-", "/crashloop-")
    await workload(
        kube_api, kube_namespace, "web", [broken, images[1]], unready=frozenset({broken})
    )
    provider = kube_provider(name="web")

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback("1", Recorder())

    message = failed.value.message
    assert "is CrashLoopBackOff" in message and "pod web-" in message
    assert "The template stays at revision 1's" in message
    assert failed.value.target_state is not None
    assert "rollout in progress" in failed.value.target_state


async def test_a_paused_deployment_is_refused_with_how_to_resume_it(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    images: list[str],
) -> None:
    await workload(kube_api, kube_namespace, "web", images[:2])
    apps = client.AppsV1Api(kube_api)
    await apps.patch_namespaced_deployment("web", kube_namespace, {"spec": {"paused": True}})
    provider = kube_provider(name="web")

    with pytest.raises(Refused, match="kubectl rollout resume deployment/web"):
        await provider.plan("v1")
    with pytest.raises(Refused, match="is paused"):
        await provider.rollback("v1", Recorder())
    deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == images[1]


async def test_a_selector_must_match_exactly_one_workload(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    images: list[str],
) -> None:
    await workload(kube_api, kube_namespace, "web", images[:1])
    await workload(kube_api, kube_namespace, "api", images[:1])
    with pytest.raises(Refused, match=r"matches 2 \(api, web\)"):
        await kube_provider(selector="tier!=db").current_version()


async def test_a_stateful_set_goes_back_through_its_controller_revisions(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    images: list[str],
) -> None:
    await workload(kube_api, kube_namespace, "db", images, kind="StatefulSet")
    provider = kube_provider(name="db", kind="StatefulSet")
    assert [v.name for v in await provider.list_versions()] == ["v3", "v2", "v1"]

    await provider.rollback("1", Recorder())

    stateful_set = await read_workload(kube_api, kube_namespace, "db", "StatefulSet")
    assert stateful_set["spec"]["template"]["spec"]["containers"][0]["image"] == images[0]
    assert await provider.current_version() == "v1"
    assert await pod_images(kube_api, kube_namespace, "db") == [images[0]] * 2


async def test_a_daemon_set_goes_back_and_says_where_it_stands(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    images: list[str],
) -> None:
    await workload(kube_api, kube_namespace, "agent", images[:2], kind="DaemonSet")
    provider = kube_provider(name="agent", kind="DaemonSet")

    await provider.rollback("v1", Recorder())

    daemon_set = await read_workload(kube_api, kube_namespace, "agent", "DaemonSet")
    assert daemon_set["spec"]["template"]["spec"]["containers"][0]["image"] == images[0]
    assert await pod_images(kube_api, kube_namespace, "agent") == [images[0]]
    state = await provider.describe_state()
    assert state.startswith(f"DaemonSet agent in namespace {kube_namespace} is at revision 3")
    assert "rollout done (1 of 1 pods updated and available)" in state


async def test_a_rollout_past_its_deadline_times_out_saying_how_far_it_got(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    images: list[str],
) -> None:
    broken = images[0].replace("/web-", "/crashloop-")
    await workload(
        kube_api, kube_namespace, "web", [broken, images[1]], unready=frozenset({broken})
    )
    provider = kube_provider(name="web", rollout_timeout_seconds=2, stuck_pod_seconds=60)

    with pytest.raises(TimedOut) as late:
        await provider.rollback("1", Recorder())

    message = late.value.message
    assert message.startswith(f"The rollout of Deployment web in namespace {kube_namespace}")
    assert "did not finish within 2 s (" in message and "is CrashLoopBackOff" in message
    assert late.value.target_state is not None and "revision 3" in late.value.target_state
