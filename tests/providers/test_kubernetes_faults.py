"""The kubernetes provider's fault matrix: each fault on each kind of call a rollback makes.

A FaultProxy stands between the provider and the real API server (the client speaks plain
HTTP to it; it speaks TLS to the server). A one-off fault on a read is retried and the
rollback ends on the target; any other ends in an error that names its cause, and the
patch is never sent twice. GitHub's 403 rate limit is left out: the API server answers
a client over its limits (API Priority and Fairness) with 429 and Retry-After.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from providers.base import ProviderError
from providers.kubernetes import KubernetesProvider
from tests.support.faults import ALL_FAULTS, TRANSIENT, Fault, FaultProxy, assert_names_cause
from tests.support.kube_workloads import KubeProviderFactory, read_workload, workload
from tests.support.progress import Recorder

IMAGES = ["registry.example/web:v1", "registry.example/web:v2"]
# The calls a rollback makes: (method, path regex, injected once progress says ...).
CALLS: dict[str, tuple[str, str, str | None]] = {
    "read workload": ("GET", r"/deployments/web$", None),
    "list revisions": ("GET", r"/replicasets\?", None),
    "patch template": ("PATCH", r"/deployments/web$", None),
    "follow rollout": ("GET", r"/deployments/web$", "Deployment web in namespace"),
}
FAULTS = [f for f in ALL_FAULTS if f is not Fault.FORBIDDEN_RATE_LIMIT]


@pytest.fixture
async def proxy(kubeconfig: str) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the API server that trusts the cluster's CA."""
    cluster = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
    tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
    async with FaultProxy(cluster["server"], hang_seconds=2.0, tls=tls) as started:
        yield started


def proxied_kubeconfig(kubeconfig: str, proxy: FaultProxy, folder: Path) -> Path:
    """The test kubeconfig, its server replaced by the proxy."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    config["clusters"][0]["cluster"] = {"server": proxy.url}
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


async def proxied_web(
    api: client.ApiClient,
    namespace: str,
    kube_provider: KubeProviderFactory,
    kubeconfig: str,
    proxy: FaultProxy,
    folder: Path,
) -> KubernetesProvider:
    """Deployment web on v1 then v2, and a provider reaching it through the proxy."""
    await workload(api, namespace, "web", IMAGES, replicas=1)
    config = proxied_kubeconfig(kubeconfig, proxy, folder)
    return kube_provider(name="web", kubeconfig=str(config), api_timeout_seconds=1.0)


@pytest.mark.parametrize("kind", list(CALLS))
@pytest.mark.parametrize("fault", FAULTS)
async def test_rollback_through_the_fault(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    kubeconfig: str,
    proxy: FaultProxy,
    tmp_path: Path,
    fault: Fault,
    kind: str,
) -> None:
    provider = await proxied_web(
        kube_api, kube_namespace, kube_provider, kubeconfig, proxy, tmp_path
    )
    method, path, after = CALLS[kind]
    if after is None:
        proxy.inject(fault, method=method, path=path, times=1)

    async def progress(text: str) -> None:
        if after is not None and text.startswith(after):
            proxy.inject(fault, method=method, path=path, times=1)

    if fault in TRANSIENT and kind != "patch template":
        await provider.rollback("v1", progress)
        deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGES[0]
    else:
        with pytest.raises(ProviderError) as caught:
            await provider.rollback("v1", progress)
        assert_names_cause(fault, caught.value.message)
        if kind == "patch template":
            # Not applied, and said so; the template is where it was.
            deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
            assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGES[1]
            assert caught.value.target_state is not None
    assert proxy.faulted, proxy.calls
    assert sum(1 for m, _ in proxy.calls if m == "PATCH") <= 1  # never sent twice


async def test_a_patch_whose_answer_is_lost_is_read_back_not_resent(
    kube_api: client.ApiClient,
    kube_namespace: str,
    kube_provider: KubeProviderFactory,
    kubeconfig: str,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    provider = await proxied_web(
        kube_api, kube_namespace, kube_provider, kubeconfig, proxy, tmp_path
    )
    proxy.inject(Fault.RESET, method="PATCH", path=r"/deployments/web$", applied=True)

    outcome = await provider.rollback("v1", Recorder())

    assert "runs registry.example/web:v1" in outcome.summary
    assert sum(1 for m, _ in proxy.calls if m == "PATCH") == 1
