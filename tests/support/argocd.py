"""Argo CD Applications on the test cluster (the CRD only: no Argo CD controller runs)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from providers.argocd import TRACKING
from tests.support.kube_workloads import workload

IMAGES = ["registry.example/web:v1", "registry.example/web:v2"]


async def application(api: client.ApiClient, namespace: str, automated: Any) -> None:
    """Create Application `shop` in `namespace` with this automated sync policy."""
    body: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example/shop.git", "path": "deploy"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
        },
    }
    if automated is not None:
        body["spec"]["syncPolicy"] = {"automated": automated}
    custom = client.CustomObjectsApi(api)
    await custom.create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", namespace, "applications", body
    )


async def read_application(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    """Application `shop` as the API holds it."""
    custom = client.CustomObjectsApi(api)
    found: dict[str, Any] = await custom.get_namespaced_custom_object(
        "argoproj.io", "v1alpha1", namespace, "applications", "shop"
    )
    return found


async def tracked_web(
    api: client.ApiClient, namespace: str, images: list[str] | None = None
) -> None:
    """Deployment web on each image (v1 then v2), tracked by Application `shop` as Argo CD
    annotates it; the rollout to an image that cannot run is not waited for."""
    images = images or IMAGES
    unready = frozenset(i for i in images if "crashloop" in i or "unpullable" in i)
    await workload(api, namespace, "web", images, replicas=1, unready=unready)
    tracking = f"shop:apps/Deployment:{namespace}/web"
    body = {"metadata": {"annotations": {TRACKING: tracking}}}
    await client.AppsV1Api(api).patch_namespaced_deployment("web", namespace, body)
