"""The helm provider with the real helm CLI on a real API server (pods run by the fake kubelet)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
)
from providers.helm_cli import STOP_SECONDS
from tests.support.docker import free_port
from tests.support.helm_releases import (
    IMAGE,
    HelmProviderFactory,
    deployment_image,
    hanging_helm,
    history,
    kill_midway,
    release,
    step,
)
from tests.support.kube import Helm
from tests.support.progress import Recorder
from tests.support.waiting import wait_for

THREE = [step(1, "1.0.0", "v1"), step(2, "2.0.0", "v2"), step(3, "3.0.0", "v3")]


def rows(found: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """Each revision's number, status and description, oldest first."""
    return [(r["revision"], r["status"], r["description"]) for r in found]


async def ready(api: client.ApiClient, namespace: str, image: str) -> None:
    """Wait until the Deployment `shop` has all its replicas of `image` available."""

    async def probe() -> bool | None:
        d = await client.AppsV1Api(api).read_namespaced_deployment("shop", namespace)
        s = d.status
        done = (
            d.spec.template.spec.containers[0].image == image
            and (s.observed_generation or 0) >= d.metadata.generation
            and s.updated_replicas == d.spec.replicas == s.available_replicas
        )
        return True if done else None

    await wait_for(probe, f"shop to run {image}")


async def test_a_release_goes_back_to_previous_and_to_revision_one(
    helm: Helm,
    kubeconfig: str,
    kube_api: client.ApiClient,
    kube_namespace: str,
    helm_provider: HelmProviderFactory,
    tmp_path: Path,
) -> None:
    await release(helm, tmp_path, kube_namespace, "shop", THREE)
    provider = helm_provider()

    versions = await provider.list_versions()
    assert [(v.name, v.current, v.previous_stable) for v in versions] == [
        ("3.0.0", True, False),
        ("2.0.0", False, True),
        ("1.0.0", False, False),
    ]
    assert versions[1].detail == "revision 2; superseded; tiny-0.2.0, app 2.0.0; Upgrade complete"
    assert versions[2].aliases == ("1", "r1")
    plan = await provider.plan("2.0.0")
    assert plan.steps[0].startswith(
        f"Run `helm rollback shop 2 --wait --timeout=60s --namespace {kube_namespace} "
        f"--kubeconfig={kubeconfig}`: helm applies the manifests of revision 2 (tiny-0.2.0, "
        "app 2.0.0) to release shop, "
    )
    assert "now at revision 3 (deployed; tiny-0.3.0, app 3.0.0)" in plan.steps[0]
    assert plan.warnings == [
        "The chart goes back from tiny-0.3.0 to tiny-0.2.0: resources only "
        "the newer chart has are deleted."
    ]

    progress = Recorder()
    outcome = await provider.rollback("2.0.0", progress)

    assert outcome.summary == (
        f"Release shop in namespace {kube_namespace} is at revision 4, deployed: "
        "'Rollback to 2' (tiny-0.2.0, app 2.0.0); helm waited for its resources to be ready."
    )
    assert rows(await history(helm, kube_namespace, "shop"))[-1] == (4, "deployed", "Rollback to 2")
    assert await deployment_image(kube_api, kube_namespace, "shop") == f"{IMAGE}:v2"
    assert progress.messages[0].startswith("Running `helm rollback shop 2 --wait --timeout")
    # The new revision keeps the app version's name; the one it copied becomes +r2.
    assert [v.name for v in await provider.list_versions()][:3] == ["2.0.0", "3.0.0", "2.0.0+r2"]

    await provider.rollback("1", progress)

    assert rows(await history(helm, kube_namespace, "shop"))[-1] == (5, "deployed", "Rollback to 1")
    assert await deployment_image(kube_api, kube_namespace, "shop") == f"{IMAGE}:v1"
    assert await provider.current_version() == "1.0.0"


async def test_unknown_and_current_revisions_are_refused(
    helm: Helm, kube_namespace: str, helm_provider: HelmProviderFactory, tmp_path: Path
) -> None:
    await release(helm, tmp_path, kube_namespace, "shop", THREE[:2])
    provider = helm_provider()
    with pytest.raises(NotFound, match=r"available: 2.0.0 \(revision 2, deployed\), 1.0.0"):
        await provider.plan("9.9.9")
    with pytest.raises(Refused, match=r"is already at revision 2 \(deployed; tiny-0.2.0"):
        await provider.plan("2")
    with pytest.raises(NotFound, match="release: not found"):
        await helm_provider(release="other").list_versions()


async def test_a_failed_upgrade_is_rolled_back_to_the_last_good_revision(
    helm: Helm,
    kube_api: client.ApiClient,
    kube_namespace: str,
    helm_provider: HelmProviderFactory,
    tmp_path: Path,
) -> None:
    packages = await release(helm, tmp_path, kube_namespace, "shop", THREE[:2])
    broken = await helm(
        "upgrade",
        "shop",
        packages[1],
        "--namespace",
        kube_namespace,
        "--set",
        "image.repository=registry.example/crashloop",
        "--wait=watcher",
        "--timeout",
        "5s",
        check=False,
    )
    assert broken.returncode == 1 and "UPGRADE FAILED" in broken.stderr
    provider = helm_provider()

    versions = await provider.list_versions()
    assert [(v.name, v.current, v.previous_stable) for v in versions] == [
        ("2.0.0", True, False),
        ("2.0.0+r2", False, True),
        ("1.0.0", False, False),
    ]
    assert versions[0].detail.startswith("revision 3; failed; tiny-0.2.0, app 2.0.0; Upgrade")
    plan = await provider.plan("2")
    assert plan.warnings[0].startswith('The newest revision, 3, failed (Upgrade "shop" failed')

    await provider.rollback("2.0.0+r2", Recorder())

    assert rows(await history(helm, kube_namespace, "shop"))[-1] == (4, "deployed", "Rollback to 2")
    await ready(kube_api, kube_namespace, f"{IMAGE}:v2")
    # The failed revision is not one to go back to.
    with pytest.raises(Refused, match=r"Revision 3 is failed .*it never became ready"):
        await provider.plan("3")


async def test_a_rollback_whose_wait_fails_reports_helms_error_and_the_state(
    helm: Helm,
    kube_api: client.ApiClient,
    kube_namespace: str,
    helm_provider: HelmProviderFactory,
    tmp_path: Path,
) -> None:
    # Revision 2 was deployed without --wait, so helm recorded it as deployed although its
    # image cannot be pulled; revision 3 fixed it.
    steps = [
        step(1, "1.0.0", "v1"),
        step(2, "2.0.0", "v2", "image.repository=registry.example/unpullable", wait=False),
        step(3, "3.0.0", "v3"),
    ]
    await release(helm, tmp_path, kube_namespace, "shop", steps)
    provider = helm_provider(timeout_seconds=3)
    progress = Recorder()

    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback("2.0.0", progress)

    message = failed.value.message
    assert message.startswith("helm rollback shop 2: helm said: release shop failed: ")
    assert "not ready" in message and "context deadline exceeded" in message
    assert message.endswith("It is not run again: fix the cause, or roll back to another revision.")
    state = str(failed.value.target_state)
    assert state.startswith(
        f'Release shop in namespace {kube_namespace} is at revision 4 (failed: Release "shop" '
        f"failed: resource Deployment/{kube_namespace}/shop not ready."
    )
    assert state.endswith("; tiny-0.2.0, app 2.0.0)")
    found = await history(helm, kube_namespace, "shop")
    assert [r["status"] for r in found] == ["superseded", "superseded", "deployed", "failed"]
    assert "kubeconfig" not in message.lower() and "token" not in message.lower()


async def test_a_missing_helm_binary_is_refused_with_what_to_do(
    helm_provider: HelmProviderFactory, tmp_path: Path
) -> None:
    missing = str(tmp_path / "bin" / "helm")
    with pytest.raises(Refused) as refused:
        await helm_provider(helm_binary=missing).list_versions()
    assert refused.value.message == (
        f"The helm CLI was not found: `{missing}` is not an executable file. Install helm "
        "where rollbot runs, or set `helm_binary` to its path."
    )
    with pytest.raises(Refused, match="`helm-not-installed` is not on PATH"):
        await helm_provider(helm_binary="helm-not-installed").rollback("1", Recorder())


async def test_a_release_left_pending_by_a_killed_upgrade_is_refused(
    helm: Helm,
    kubeconfig: str,
    helm_binary: str,
    kube_namespace: str,
    helm_provider: HelmProviderFactory,
    tmp_path: Path,
) -> None:
    packages = await release(helm, tmp_path, kube_namespace, "shop", THREE[:2])
    await kill_midway(helm_binary, kubeconfig, tmp_path, kube_namespace, "shop", packages[1])
    provider = helm_provider()

    plan = await provider.plan("1")
    assert plan.warnings[0].startswith("Release shop is pending-upgrade at revision 3 since ")
    assert "another operation (install/upgrade/rollback) is in progress" in plan.warnings[0]
    assert "`helm rollback shop 2`" in plan.warnings[0]
    with pytest.raises(Conflicting, match=r"another operation .* is in progress") as refused:
        await provider.rollback("1", Recorder())

    assert "is at revision 3 (pending-upgrade" in str(refused.value.target_state)
    # Nothing ran: no revision was added.
    assert [r["status"] for r in await history(helm, kube_namespace, "shop")] == [
        "superseded",
        "deployed",
        "pending-upgrade",
    ]


async def test_a_helm_that_never_returns_is_stopped_and_the_state_read_after(
    helm: Helm,
    helm_binary: str,
    kube_namespace: str,
    helm_provider: HelmProviderFactory,
    tmp_path: Path,
) -> None:
    await release(helm, tmp_path, kube_namespace, "shop", THREE[:2])
    provider = helm_provider(
        helm_binary=hanging_helm(tmp_path, helm_binary), timeout_seconds=1, grace_seconds=1
    )
    started = time.monotonic()

    with pytest.raises(TimedOut) as stopped:
        await provider.rollback("1", Recorder())

    # The deadline (2 s), then SIGTERM, ignored, then SIGKILL after STOP_SECONDS.
    assert time.monotonic() - started < 2 + STOP_SECONDS + 5
    assert stopped.value.message == (
        "helm rollback shop 1: helm did not finish within 2 s and was stopped. It is not run "
        "again: look at the release before trying again."
    )
    assert stopped.value.target_state == (
        f"Release shop in namespace {kube_namespace} is at revision 2 (deployed: Upgrade "
        "complete; tiny-0.2.0, app 2.0.0)"
    )


async def test_an_account_without_rbac_and_an_unreachable_cluster_are_named(
    kubeconfig: str,
    kube_api: client.ApiClient,
    kube_namespace: str,
    helm_provider: HelmProviderFactory,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(kube_api)
    account = {"metadata": {"name": "no-rights"}}
    await core.create_namespaced_service_account(kube_namespace, account)
    request = {"spec": {"audiences": [], "expirationSeconds": 600}}
    token = (
        await core.create_namespaced_service_account_token("no-rights", kube_namespace, request)
    ).status.token
    config = yaml.safe_load(Path(kubeconfig).read_text())
    config["users"][0]["user"] = {"token": token}
    weak = tmp_path / "no-rights.kubeconfig"
    weak.write_text(yaml.safe_dump(config))

    with pytest.raises(AuthRejected) as refused:
        await helm_provider(kubeconfig=str(weak)).list_versions()
    assert "secrets is forbidden" in refused.value.message
    assert f"system:serviceaccount:{kube_namespace}:no-rights" in refused.value.message
    assert "helm keeps each release in Secrets of its namespace" in refused.value.message
    assert token not in refused.value.message

    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    closed = tmp_path / "closed.kubeconfig"
    closed.write_text(yaml.safe_dump(config))
    unreachable = r"helm said: kubernetes cluster unreachable: .*connection refused"
    with pytest.raises(Transient, match=unreachable):
        await helm_provider(kubeconfig=str(closed)).list_versions()
