"""Workloads with a revision history on the test cluster, and images for them in the registry.

`workload(kind, name, images)` creates a Deployment, StatefulSet or DaemonSet on the first
image and updates it to each next one, waiting for every rollout, so the real controllers
make one revision per image. Images under the test registry (scripts/start-registry.sh)
are pushed as small manifests, so the preflight's registry check finds them; the fake
kubelet fails pods whose image name contains `unpullable` or `crashloop`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client

from providers.kube_rollout import rollout_of
from providers.kubernetes import KubernetesProvider, KubernetesSettings
from tests.support.waiting import wait_for

REGISTRY = os.environ.get("ROLLBOT_TEST_REGISTRY", "127.0.0.1:55050")
USER = "rollbot-test"
PASSWORD = os.environ.get("ROLLBOT_TEST_REGISTRY_PASSWORD", "rollbot-test-pw")
PULL_SECRET = "regcred"
Json = dict[str, Any]


def push_image(repository: str, tag: str) -> str:
    """Push a one-config, no-layer image manifest as `repository:tag`; return its digest."""
    base = f"http://{REGISTRY}/v2/{repository}"
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": [f"TAG={tag}"]},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": len(config),
                "digest": digest,
            },
            "layers": [],
        }
    ).encode()
    with httpx.Client(auth=(USER, PASSWORD), timeout=10) as http:
        started = http.post(f"{base}/blobs/uploads/")
        started.raise_for_status()
        location = started.headers["Location"]
        location = f"http://{REGISTRY}{location}" if location.startswith("/") else location
        # The upload URL carries its own query: the digest is added to it, not replacing it.
        joint = "&" if "?" in location else "?"
        http.put(f"{location}{joint}digest={digest}", content=config).raise_for_status()
        answer = http.put(
            f"{base}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        answer.raise_for_status()
        return str(answer.headers["Docker-Content-Digest"])


def private_repository() -> str:
    """A fresh repository name on the test registry."""
    return f"{REGISTRY}/rollbot-test/web-{uuid.uuid4().hex[:8]}"


async def create_pull_secret(api: client.ApiClient, namespace: str) -> None:
    """Create the dockerconfigjson secret that lets pods (and preflight) pull from the registry."""
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config = json.dumps({"auths": {REGISTRY: {"auth": auth}}}).encode()
    await client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": PULL_SECRET},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(config).decode()},
        },
    )


def _template(name: str, image: str, env: dict[str, str]) -> Json:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "imagePullSecrets": [{"name": PULL_SECRET}],
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                }
            ],
        },
    }


async def workload(
    api: client.ApiClient,
    namespace: str,
    name: str,
    images: list[str],
    *,
    kind: str = "Deployment",
    replicas: int = 2,
    env: dict[str, str] | None = None,
    unready: frozenset[str] = frozenset(),
) -> None:
    """Create a workload on images[0] and roll it to each next image, one revision each.

    Each rollout is waited for, except to an image in `unready` (it never completes).
    """
    apps = client.AppsV1Api(api)
    noun = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}
    spec: Json = {
        "selector": {"matchLabels": {"app": name}},
        "template": _template(name, images[0], env or {}),
    }
    if kind != "DaemonSet":
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    create = getattr(apps, f"create_namespaced_{noun[kind]}")
    await create(namespace, {"metadata": {"name": name}, "spec": spec})
    if images[0] not in unready:
        await rolled_out(api, namespace, name, kind)
    patch = getattr(apps, f"patch_namespaced_{noun[kind]}")
    for image in images[1:]:
        body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}
        await patch(name, namespace, body)
        if image not in unready:
            await rolled_out(api, namespace, name, kind)


async def read_workload(api: client.ApiClient, namespace: str, name: str, kind: str) -> Json:
    """The workload as the API holds it, as JSON."""
    noun = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}
    read = getattr(client.AppsV1Api(api), f"read_namespaced_{noun[kind]}")
    response = await read(name, namespace, _preload_content=False)
    found: Json = json.loads(await response.read())
    return found


async def rolled_out(api: client.ApiClient, namespace: str, name: str, kind: str) -> Json:
    """Wait until the workload's rollout is done; return the workload."""

    async def done() -> Json | None:
        found = await read_workload(api, namespace, name, kind)
        return found if rollout_of(kind, found).done else None

    return await wait_for(done, f"the rollout of {kind} {name}", timeout=60)


KubeProviderFactory = Callable[..., KubernetesProvider]


@pytest.fixture
async def kube_provider(kubeconfig: str, kube_namespace: str) -> AsyncIterator[KubeProviderFactory]:
    """Factory of kubernetes providers on the test namespace; closed after the test."""
    made: list[KubernetesProvider] = []

    def make(**settings: Any) -> KubernetesProvider:
        values = {
            "provider": "kubernetes",
            "namespace": kube_namespace,
            "kubeconfig": kubeconfig,
            "poll_interval_seconds": 0.2,
            "rollout_timeout_seconds": 30,
            "stuck_pod_seconds": 2,
            **settings,
        }
        provider = KubernetesProvider(KubernetesSettings.model_validate(values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()
