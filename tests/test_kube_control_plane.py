"""The test cluster behaves like a real one: controllers, failing pods, helm, Argo CD's CRD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from tests.support.kube import CRASH_LOOPS, IMAGE_PULL_FAILS, Helm
from tests.support.waiting import wait_for

REVISION = "deployment.kubernetes.io/revision"
MERGE_PATCH = "application/merge-patch+json"


def deployment(name: str, image: str, **spec: Any) -> dict[str, Any]:
    """A Deployment of two replicas of one container."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            **spec,
        },
    }


async def rolled_out(apps: client.AppsV1Api, name: str, namespace: str) -> Any:
    """Wait until the Deployment's controller saw its last change and all replicas are up."""

    async def probe() -> Any:
        d = await apps.read_namespaced_deployment(name, namespace)
        s = d.status
        done = (
            (s.observed_generation or 0) >= d.metadata.generation
            and s.updated_replicas == d.spec.replicas
            and s.available_replicas == d.spec.replicas
            and (s.replicas or 0) == d.spec.replicas
        )
        return d if done else None

    return await wait_for(probe, f"deployment {name} to roll out")


async def set_image(apps: client.AppsV1Api, name: str, namespace: str, image: str) -> None:
    """Change the image of the Deployment's only container."""
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}
    await apps.patch_namespaced_deployment(name, namespace, patch)


async def test_deployment_rolls_out_and_keeps_one_replicaset_per_revision(
    kube_api: client.ApiClient, kube_namespace: str
) -> None:
    apps = client.AppsV1Api(kube_api)
    await apps.create_namespaced_deployment(
        kube_namespace, deployment("web", "registry.example/web:v1")
    )
    await rolled_out(apps, "web", kube_namespace)
    for tag in ("v2", "v3"):
        await set_image(apps, "web", kube_namespace, f"registry.example/web:{tag}")
        await rolled_out(apps, "web", kube_namespace)

    sets = (await apps.list_namespaced_replica_set(kube_namespace)).items
    by_revision = {
        rs.metadata.annotations[REVISION]: rs.spec.template.spec.containers[0].image for rs in sets
    }
    assert by_revision == {
        "1": "registry.example/web:v1",
        "2": "registry.example/web:v2",
        "3": "registry.example/web:v3",
    }
    current = {rs.metadata.annotations[REVISION]: rs.spec.replicas for rs in sets}
    assert current == {"1": 0, "2": 0, "3": 2}


async def test_unpullable_image_never_becomes_available(
    kube_api: client.ApiClient, kube_namespace: str
) -> None:
    apps = client.AppsV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    body = deployment("broken", IMAGE_PULL_FAILS, progressDeadlineSeconds=3)
    await apps.create_namespaced_deployment(kube_namespace, body)

    async def stalled() -> Any:
        d = await apps.read_namespaced_deployment("broken", kube_namespace)
        conditions = {c.type: c for c in d.status.conditions or []}
        progressing = conditions.get("Progressing")
        if progressing and progressing.reason == "ProgressDeadlineExceeded":
            return d
        return None

    d = await wait_for(stalled, "the rollout to pass its progress deadline")
    assert not d.status.available_replicas
    pods = (await core.list_namespaced_pod(kube_namespace, label_selector="app=broken")).items
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Pending"
        waiting = pod.status.container_statuses[0].state.waiting
        assert waiting.reason == "ImagePullBackOff"
        assert IMAGE_PULL_FAILS in waiting.message


async def test_crashlooping_image_is_running_but_never_ready(
    kube_api: client.ApiClient, kube_namespace: str
) -> None:
    apps = client.AppsV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    await apps.create_namespaced_deployment(kube_namespace, deployment("crashy", CRASH_LOOPS))

    async def crashing() -> Any:
        pods = await core.list_namespaced_pod(kube_namespace, label_selector="app=crashy")
        statuses = [s for p in pods.items for s in p.status.container_statuses or []]
        return pods.items if len(statuses) == 2 else None

    for pod in await wait_for(crashing, "the crash-looping pods to report"):
        assert pod.status.phase == "Running"
        status = pod.status.container_statuses[0]
        assert (status.ready, status.state.waiting.reason) == (False, "CrashLoopBackOff")
        assert status.restart_count >= 1
    d = await apps.read_namespaced_deployment("crashy", kube_namespace)
    assert not d.status.available_replicas


async def test_job_pods_run_to_completion(kube_api: client.ApiClient, kube_namespace: str) -> None:
    batch = client.BatchV1Api(kube_api)

    def job(name: str, image: str) -> dict[str, Any]:
        container = {"name": "task", "image": image}
        pod = {"spec": {"restartPolicy": "Never", "containers": [container]}}
        return {"metadata": {"name": name}, "spec": {"backoffLimit": 0, "template": pod}}

    await batch.create_namespaced_job(kube_namespace, job("migrate", "registry.example/migrate:v1"))
    await batch.create_namespaced_job(kube_namespace, job("broken", CRASH_LOOPS))

    async def finished(name: str) -> Any:
        j = await batch.read_namespaced_job(name, kube_namespace)
        conditions = {c.type for c in j.status.conditions or [] if c.status == "True"}
        return j if conditions & {"Complete", "Failed"} else None

    done = await wait_for(lambda: finished("migrate"), "the job to complete")
    assert (done.status.succeeded, done.status.failed) == (1, None)
    failed = await wait_for(lambda: finished("broken"), "the job to fail")
    assert failed.status.failed == 1
    assert "Failed" in {c.type for c in failed.status.conditions}


async def test_statefulset_records_controller_revisions(
    kube_api: client.ApiClient, kube_namespace: str
) -> None:
    apps = client.AppsV1Api(kube_api)
    labels = {"app": "db"}
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "db", "image": "registry.example/db:v1"}]},
            },
        },
    }
    await apps.create_namespaced_stateful_set(kube_namespace, body)

    async def updated(image: str) -> Any:
        s = await apps.read_namespaced_stateful_set("db", kube_namespace)
        st = s.status
        done = (
            (st.observed_generation or 0) >= s.metadata.generation
            and st.ready_replicas == 2
            and st.updated_replicas == 2
            and st.current_revision == st.update_revision
            and s.spec.template.spec.containers[0].image == image
        )
        return s if done else None

    first = await wait_for(lambda: updated("registry.example/db:v1"), "the StatefulSet")
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "db", "image": "registry.example/db:v2"}]}
            }
        }
    }
    await apps.patch_namespaced_stateful_set("db", kube_namespace, patch)
    second = await wait_for(lambda: updated("registry.example/db:v2"), "the StatefulSet update")

    revisions = (await apps.list_namespaced_controller_revision(kube_namespace)).items
    names = {r.metadata.name: r.revision for r in revisions}
    assert names == {first.status.update_revision: 1, second.status.update_revision: 2}
    assert all(r.metadata.owner_references[0].name == "db" for r in revisions)


CHART = """\
apiVersion: v2
name: tiny
version: 0.1.0
"""
TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: "{{ .Release.Name }}"}
  template:
    metadata:
      labels: {app: "{{ .Release.Name }}"}
    spec:
      containers:
      - name: web
        image: "registry.example/web:{{ .Values.tag }}"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  tag: "{{ .Values.tag }}"
"""


async def test_helm_installs_upgrades_and_rolls_back(
    helm: Helm, kube_api: client.ApiClient, kube_namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART)
    (chart / "values.yaml").write_text("tag: v1\n")
    (chart / "templates" / "app.yaml").write_text(TEMPLATE)
    await helm("package", str(chart), "--destination", str(tmp_path))
    package = str(tmp_path / "tiny-0.1.0.tgz")
    common = ("--namespace", kube_namespace, "--wait", "--timeout", "60s")

    await helm("install", "shop", package, *common)
    await helm("upgrade", "shop", package, "--set", "tag=v2", *common)
    history = await helm("history", "shop", "--namespace", kube_namespace, "--output", "json")
    assert [(h["revision"], h["status"]) for h in json.loads(history.stdout)] == [
        (1, "superseded"),
        (2, "deployed"),
    ]

    await helm("rollback", "shop", "1", *common)

    apps = client.AppsV1Api(kube_api)
    d = await rolled_out(apps, "shop", kube_namespace)
    assert d.spec.template.spec.containers[0].image == "registry.example/web:v1"
    settings = await client.CoreV1Api(kube_api).read_namespaced_config_map(
        "shop-settings", kube_namespace
    )
    assert settings.data == {"tag": "v1"}
    history = await helm("history", "shop", "--namespace", kube_namespace, "--output", "json")
    assert [h["status"] for h in json.loads(history.stdout)] == [
        "superseded",
        "superseded",
        "deployed",
    ]


async def test_argocd_application_crd_takes_a_sync_policy_patch_and_checks_its_schema(
    kube_api: client.ApiClient, kube_namespace: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    where = ("argoproj.io", "v1alpha1", kube_namespace, "applications")
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example/shop.git", "path": "deploy"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
        },
    }
    await custom.create_namespaced_custom_object(*where, app)

    patch = {"spec": {"syncPolicy": {"automated": {"prune": True, "selfHeal": False}}}}
    patched = await custom.patch_namespaced_custom_object(
        *where, "shop", patch, _content_type=MERGE_PATCH
    )
    assert patched["spec"]["syncPolicy"] == {"automated": {"prune": True, "selfHeal": False}}

    # A merge patch of null removes the key: automated sync is off again.
    off = {"spec": {"syncPolicy": {"automated": None}}}
    patched = await custom.patch_namespaced_custom_object(
        *where, "shop", off, _content_type=MERGE_PATCH
    )
    assert "automated" not in patched["spec"].get("syncPolicy", {})

    bad = {"spec": {"syncPolicy": {"automated": {"prune": "yes"}}}}
    with pytest.raises(ApiException) as caught:
        await custom.patch_namespaced_custom_object(*where, "shop", bad, _content_type=MERGE_PATCH)
    assert caught.value.status == 422
    assert "spec.syncPolicy.automated.prune" in caught.value.body
