"""deploy/kubernetes-rbac.yaml is enough, and no more than needed: a rollback as its account.

The manifest is applied to the test cluster (its `shop` and `argocd` namespaces both
become the test's namespace), a token is requested for its ServiceAccount, and the
kubernetes provider runs with a kubeconfig holding only that token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from providers.base import AuthRejected
from tests.support.argocd import application, read_application, tracked_web
from tests.support.kube_workloads import KubeProviderFactory, create_pull_secret, read_workload
from tests.support.progress import Recorder

MANIFEST = Path(__file__).parent.parent / "deploy" / "kubernetes-rbac.yaml"


async def apply_manifest(api: client.ApiClient, namespace: str, drop_verb: str = "") -> None:
    """Create each object of the manifest in `namespace`, optionally without one verb."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    for doc in yaml.safe_load_all(MANIFEST.read_text()):
        text = yaml.safe_dump(doc).replace("namespace: shop", f"namespace: {namespace}")
        body: dict[str, Any] = yaml.safe_load(
            text.replace("namespace: argocd", f"namespace: {namespace}")
        )
        for rule in body.get("rules") or []:
            rule["verbs"] = [v for v in rule["verbs"] if v != drop_verb]
        kind = body["kind"]
        if kind == "ServiceAccount":
            await core.create_namespaced_service_account(namespace, body)
        elif kind == "Role":
            await rbac.create_namespaced_role(namespace, body)
        else:
            await rbac.create_namespaced_role_binding(namespace, body)


async def account_kubeconfig(
    api: client.ApiClient, namespace: str, kubeconfig: str, folder: Path
) -> str:
    """A kubeconfig for the manifest's ServiceAccount, holding only its token."""
    request = {"spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 600}}
    answer = await client.CoreV1Api(api).create_namespaced_service_account_token(
        "rollbot", namespace, request
    )
    config = yaml.safe_load(Path(kubeconfig).read_text())
    config["users"][0]["user"] = {"token": answer.status.token}
    path = folder / "rollbot-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


async def test_the_manifest_lets_the_account_roll_back_and_pause_argo_cd(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    kubeconfig: str,
    tmp_path: Path,
) -> None:
    await apply_manifest(kube_api, kube_namespace)
    await create_pull_secret(kube_api, kube_namespace)
    await tracked_web(kube_api, kube_namespace)
    await application(kube_api, kube_namespace, {"selfHeal": True})
    limited = await account_kubeconfig(kube_api, kube_namespace, kubeconfig, tmp_path)
    provider = kube_provider(name="web", kubeconfig=limited, argocd={"namespace": kube_namespace})

    report = await provider.preflight("v1")
    assert {c.name: c.verdict.value for c in report.checks}["autoscaler"] == "pass"
    await provider.rollback("v1", Recorder())

    deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1")
    record = await provider.freeze("v2", "v1")
    await provider.unfreeze(record)
    app = await read_application(kube_api, kube_namespace)
    assert app["spec"]["syncPolicy"]["automated"] == {"selfHeal": True}


async def test_without_patch_the_refusal_names_the_rbac_permission(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    kubeconfig: str,
    tmp_path: Path,
) -> None:
    await apply_manifest(kube_api, kube_namespace, drop_verb="patch")
    await tracked_web(kube_api, kube_namespace)
    await application(kube_api, kube_namespace, None)
    limited = await account_kubeconfig(kube_api, kube_namespace, kubeconfig, tmp_path)
    provider = kube_provider(name="web", kubeconfig=limited, argocd={"namespace": kube_namespace})

    with pytest.raises(AuthRejected) as refused:
        await provider.rollback("v1", Recorder())

    message = refused.value.message
    assert 'cannot patch resource "deployments"' in message
    assert "RBAC permission" in message and "deploy/kubernetes-rbac.yaml" in message
    assert "eyJ" not in message  # no token
