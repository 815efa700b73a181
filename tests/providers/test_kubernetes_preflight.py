"""The kubernetes provider's preflight on a real API server, with the test image registry."""

from __future__ import annotations

from kubernetes_asyncio import client

from providers.capabilities import PreflightReport, Verdict
from tests.support.kube_workloads import (
    KubeProviderFactory,
    create_pull_secret,
    private_repository,
    push_image,
    rolled_out,
    workload,
)


def verdicts(report: PreflightReport) -> dict[str, Verdict]:
    """Map each check's name to its verdict."""
    return {check.name: check.verdict for check in report.checks}


def why(report: PreflightReport, name: str) -> str:
    """The one line of why of the named check."""
    return next(check.why for check in report.checks if check.name == name)


async def test_exact_revisions_pushed_images_and_changes(
    kube_api: client.ApiClient, kube_namespace: str, kube_provider: KubeProviderFactory
) -> None:
    repository = private_repository()
    await create_pull_secret(kube_api, kube_namespace)
    digest = push_image(repository.split("/", 1)[1], "v1")
    push_image(repository.split("/", 1)[1], "v2")
    await workload(
        kube_api, kube_namespace, "web", [f"{repository}:v1"], env={"OLD_FLAG": "secret-value"}
    )
    apps = client.AppsV1Api(kube_api)
    body = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": f"{repository}:v2",
                            "env": [{"name": "NEW_FLAG", "value": "other-secret"}],
                        }
                    ]
                }
            }
        }
    }
    await apps.patch_namespaced_deployment("web", kube_namespace, body)
    await rolled_out(kube_api, kube_namespace, "web", "Deployment")
    provider = kube_provider(name="web")

    report = await provider.preflight("v1")

    assert verdicts(report) == {
        "rollout-possible": Verdict.PASS,
        "rollout-idle": Verdict.PASS,
        "autoscaler": Verdict.PASS,
        "image-present": Verdict.PASS,
        "argocd-sync": Verdict.PASS,
    }
    assert why(report, "image-present") == f"web: {repository}:v1 is in its registry ({digest})."
    assert report.target.version == "v1"
    assert report.target.exact.startswith("Deployment web revision 1 (ReplicaSet web-")
    assert report.target.exact.endswith(f"{repository}:v1 ({digest})")
    assert report.current is not None and report.current.version == "v2"
    assert f"web: image: {repository}:v2 -> {repository}:v1" in report.changes
    # The patch merged env by name: v2 has both, so going back drops NEW_FLAG.
    assert "web: env names removed: NEW_FLAG" in report.changes
    assert "secret" not in " ".join(report.changes)


async def test_an_image_the_registry_does_not_have_fails(
    kube_api: client.ApiClient, kube_namespace: str, kube_provider: KubeProviderFactory
) -> None:
    repository = private_repository()
    await create_pull_secret(kube_api, kube_namespace)
    push_image(repository.split("/", 1)[1], "v2")
    missing = f"{repository}-unpullable:v1"
    await workload(
        kube_api,
        kube_namespace,
        "web",
        [missing, f"{repository}:v2"],
        unready=frozenset({missing}),
    )

    report = await kube_provider(name="web").preflight("1")

    assert verdicts(report)["image-present"] is Verdict.FAIL
    assert why(report, "image-present") == (
        f"web: {missing} is not in its registry (the pods could not pull it)."
    )


async def test_a_paused_deployment_an_autoscaler_and_a_rollout_in_progress_are_said(
    kube_api: client.ApiClient, kube_namespace: str, kube_provider: KubeProviderFactory
) -> None:
    stuck = "registry.example/web-unpullable:v3"
    await workload(
        kube_api,
        kube_namespace,
        "web",
        ["registry.example/web:v1", "registry.example/web:v2", stuck],
        unready=frozenset({stuck}),
    )
    hpa = {
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
        },
    }
    await client.AutoscalingV2Api(kube_api).create_namespaced_horizontal_pod_autoscaler(
        kube_namespace, hpa
    )
    provider = kube_provider(name="web")

    report = await provider.preflight("v1")
    assert verdicts(report)["rollout-idle"] is Verdict.WARN
    assert "A rollout is in progress" in why(report, "rollout-idle")
    assert verdicts(report)["autoscaler"] is Verdict.WARN
    assert why(report, "autoscaler").startswith(
        "HorizontalPodAutoscaler web scales it between 2 and 10 replicas"
    )
    # Not in the registry's reach: said, not failed.
    assert verdicts(report)["image-present"] is Verdict.WARN

    await client.AppsV1Api(kube_api).patch_namespaced_deployment(
        "web", kube_namespace, {"spec": {"paused": True}}
    )
    report = await provider.preflight("v1")
    assert verdicts(report)["rollout-possible"] is Verdict.FAIL
    assert "kubectl rollout resume deployment/web" in why(report, "rollout-possible")


async def test_identity_now_follows_a_deploy(
    kube_api: client.ApiClient, kube_namespace: str, kube_provider: KubeProviderFactory
) -> None:
    await workload(
        kube_api, kube_namespace, "web", ["registry.example/web:v1", "registry.example/web:v2"]
    )
    provider = kube_provider(name="web")
    assert (await provider.identity_now()).version == "v2"

    body = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:v3"}]}
            }
        }
    }
    await client.AppsV1Api(kube_api).patch_namespaced_deployment("web", kube_namespace, body)

    identity = await provider.identity_now()
    assert identity.version == "v3"
    assert identity.exact.startswith("Deployment web revision 3")
