"""Argo CD's automated sync around a kubernetes rollback, on the real Application CRD.

The CRD is Argo CD v3.5.8's own `manifests/crds/application-crd.yaml` (installed by
scripts/start-kube.sh), so every patch rollbot sends is checked by its real schema. No
Argo CD controller runs: the tests read back what rollbot wrote.
"""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client

from providers.argocd import PAUSED
from providers.base import Refused, RollbackFailed
from providers.capabilities import Verdict
from tests.support.argocd import IMAGES, application, read_application, tracked_web
from tests.support.kube_workloads import KubeProviderFactory, read_workload
from tests.support.progress import Recorder

AUTOMATED = {"prune": True, "selfHeal": True}


async def test_rollback_pauses_auto_sync_keeps_it_paused_frozen_and_unfreeze_resumes_it(
    kube_api: client.ApiClient, kube_namespace: str, kube_provider: KubeProviderFactory
) -> None:
    await tracked_web(kube_api, kube_namespace)
    await application(kube_api, kube_namespace, AUTOMATED)
    provider = kube_provider(name="web", argocd={"namespace": kube_namespace})

    report = await provider.preflight("v1")
    check = next(c for c in report.checks if c.name == "argocd-sync")
    assert check.verdict is Verdict.WARN
    assert "syncs it automatically (prune, selfHeal): rollbot pauses that" in check.why
    plan = await provider.plan("v1")
    assert plan.steps[0].startswith(
        f"Pause the automated sync of Argo CD Application {kube_namespace}/shop"
    )

    progress = Recorder()
    await provider.rollback("v1", progress)

    app = await read_application(kube_api, kube_namespace)
    assert "automated" not in app["spec"].get("syncPolicy", {})
    assert app["metadata"]["annotations"][PAUSED] == '{"prune": true, "selfHeal": true}'
    assert "automated sync paused (was prune, selfHeal)" in progress.text
    deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGES[0]

    record = await provider.freeze("v2", "v1")
    assert "automated sync kept paused (was prune, selfHeal)" in record.action
    said = await provider.unfreeze(record)
    assert "automated sync resumed (prune, selfHeal)" in said
    app = await read_application(kube_api, kube_namespace)
    assert app["spec"]["syncPolicy"]["automated"] == AUTOMATED
    assert PAUSED not in (app["metadata"].get("annotations") or {})


async def test_keep_paused_false_resumes_after_the_rollback(
    kube_api: client.ApiClient, kube_namespace: str, kube_provider: KubeProviderFactory
) -> None:
    await tracked_web(kube_api, kube_namespace)
    await application(kube_api, kube_namespace, {"selfHeal": True})
    provider = kube_provider(name="web", argocd={"namespace": kube_namespace, "keep_paused": False})

    outcome = await provider.rollback("v1", Recorder())

    assert any("automated sync resumed (selfHeal)" in note for note in outcome.notes)
    app = await read_application(kube_api, kube_namespace)
    assert app["spec"]["syncPolicy"]["automated"] == {"selfHeal": True}
    record = await provider.freeze("v2", "v1")
    assert record.action.startswith("watch only")


async def test_an_application_without_auto_sync_is_left_alone(
    kube_api: client.ApiClient, kube_namespace: str, kube_provider: KubeProviderFactory
) -> None:
    await tracked_web(kube_api, kube_namespace)
    await application(kube_api, kube_namespace, None)
    provider = kube_provider(name="web", argocd={"namespace": kube_namespace})

    report = await provider.preflight("v1")
    assert next(c for c in report.checks if c.name == "argocd-sync").verdict is Verdict.PASS
    await provider.rollback("v1", Recorder())
    app = await read_application(kube_api, kube_namespace)
    assert PAUSED not in (app["metadata"].get("annotations") or {})


async def test_a_tracked_application_that_cannot_be_read_fails_closed(
    kube_api: client.ApiClient, kube_namespace: str, kube_provider: KubeProviderFactory
) -> None:
    await tracked_web(kube_api, kube_namespace)  # no Application `shop` exists
    provider = kube_provider(name="web", argocd={"namespace": kube_namespace})

    report = await provider.preflight("v1")
    check = next(c for c in report.checks if c.name == "argocd-sync")
    assert check.verdict is Verdict.FAIL and "cannot be found" in check.why
    with pytest.raises(Refused, match="Argo CD Application"):
        await provider.rollback("v1", Recorder())
    deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGES[1]


async def test_a_failed_rollout_leaves_auto_sync_paused_and_says_so(
    kube_api: client.ApiClient, kube_namespace: str, kube_provider: KubeProviderFactory
) -> None:
    broken = "registry.example/crashloop-web:v0"
    await tracked_web(kube_api, kube_namespace, [broken, IMAGES[1]])
    await application(kube_api, kube_namespace, AUTOMATED)
    provider = kube_provider(name="web", argocd={"namespace": kube_namespace})

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback("v0", Recorder())

    assert f"Argo CD Application {kube_namespace}/shop stays paused" in failed.value.message
    app = await read_application(kube_api, kube_namespace)
    assert "automated" not in app["spec"].get("syncPolicy", {})
    assert PAUSED in app["metadata"]["annotations"]
