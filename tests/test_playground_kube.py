"""The playground's `web` service: the real kubernetes provider on the simulated Kubernetes API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client, config

from bot.models import State
from handlers.ids import ActionId
from playground.kube_api import IMAGE, FakeKube
from playground.world import APPROVER, REQUESTER, World, build_world
from providers.base import AuthRejected, Conflicting, RollbackFailed
from providers.kubernetes import KubernetesProvider, KubernetesSettings
from tests.e2e_helpers import confirm, has_action, request_card, thread_text, wait_card
from tests.support.bot import StartBot
from tests.support.slack import text_of

REVISION = "deployment.kubernetes.io/revision"
HISTORY = "deployment.kubernetes.io/revision-history"


async def said(text: str) -> None:
    """Progress the provider reports; these tests read the cluster instead."""


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[FakeKube, KubernetesProvider]]:
    """The seeded simulated API and the real provider reaching it through a kubeconfig."""
    fake = FakeKube(step_seconds=0.1)
    fake.seed()
    await fake.start()
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    settings = fake.settings(kubeconfig, poll_interval_seconds=0.1, stuck_pod_seconds=1)
    provider = KubernetesProvider(KubernetesSettings(**settings))
    yield fake, provider
    await provider.aclose()
    await fake.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The playground's services as `make demo` sets them up, on a machine without Docker."""
    async with AsyncExitStack() as stack:
        yield await build_world(tmp_path / "demo", stack, f"unix://{tmp_path}/no-docker.sock")


async def replica_sets(kubeconfig: Path) -> dict[str, dict[str, str]]:
    """Each ReplicaSet of shop/web by image tag: its annotations, as kubectl would read them."""
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    async with api:
        found = await client.AppsV1Api(api).list_namespaced_replica_set(
            "shop", label_selector="app=web"
        )
    return {
        rs.spec.template.spec.containers[0].image.rsplit(":", 1)[1]: rs.metadata.annotations
        for rs in found.items
    }


async def test_web_rolls_back_from_slack_on_the_simulated_api_and_verifies(
    start_rollbot: StartBot, world: World, tmp_path: Path
) -> None:
    (web,) = [s for s in world.services if s.name == "web"]
    assert web.note.startswith("simulated: Kubernetes Deployment shop/web, simulated API on")
    bot = await start_rollbot(world.config(), world.env())

    card = await request_card(bot, "web v2.3.1", user=REQUESTER[0])
    await confirm(bot, card, "critical_bug", user=REQUESTER[0])
    card = await wait_card(bot, card, lambda m: has_action(m, ActionId.APPROVE))
    shown = text_of(card)
    assert "Deployment web revision 3 (ReplicaSet web-" in shown
    assert "Deployment web revision 2 (ReplicaSet web-" in shown
    assert "env names removed: CHECKOUT_V2" in shown
    # The simulated registry host is not asked for real: the check says so, honestly.
    assert "`image-present`" in shown and f"{IMAGE}:v2.3.1 not checked" in shown

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER[0])
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card), timeout=40)
    thread = thread_text(bot.fake, card)
    assert "Rollout: 1 of 3 replicas updated" in thread
    assert "Verification passed" in thread and "3 of 3 replicas updated and available" in thread
    (rb,) = await bot.store.find()
    assert (rb.state, rb.current_version, rb.target_version) == (
        State.SUCCEEDED,
        "v2.4.0",
        "v2.3.1",
    )
    check = world.config()["services"]["web"]["environments"]["production"]["checks"][0]
    async with httpx.AsyncClient() as http:  # the health endpoint runs on this loop
        assert (await http.get(check["url"])).json() == {"status": "ok", "version": "v2.3.1"}
    # kubectl rollout history: v2.3.1's ReplicaSet came back as revision 4, no new one.
    annotations = await replica_sets(tmp_path / "demo" / "kubeconfig")
    assert sorted(annotations) == ["v2.3.0", "v2.3.1", "v2.4.0"]
    assert (annotations["v2.3.1"][REVISION], annotations["v2.3.1"][HISTORY]) == ("4", "2")


async def test_a_rollback_reuses_the_target_replica_set_each_time(
    kube: tuple[FakeKube, KubernetesProvider], tmp_path: Path
) -> None:
    fake, provider = kube
    outcome = await provider.rollback("v2.3.1", said)
    assert "runs registry.example/shop/web:v2.3.1 (revision 2's template)" in outcome.summary
    assert "3 of 3 replicas updated and available" in outcome.summary
    versions = {v.name: (v.current, v.aliases[0]) for v in await provider.list_versions()}
    assert versions == {"v2.3.1": (True, "4"), "v2.4.0": (False, "3"), "v2.3.0": (False, "1")}

    # And back again to v2.4.0 by its revision number: its ReplicaSet, renumbered 5.
    await provider.rollback("3", said)
    assert await provider.current_version() == "v2.4.0"
    annotations = await replica_sets(tmp_path / "kubeconfig")
    assert len(annotations) == 3
    assert (annotations["v2.4.0"][REVISION], annotations["v2.4.0"][HISTORY]) == ("5", "3")
    deployment = fake.deployment()
    assert deployment["metadata"]["annotations"][REVISION] == "5"
    assert deployment["status"]["observedGeneration"] == deployment["metadata"]["generation"]
    assert fake.serving() == "v2.4.0"


async def test_a_deploy_between_read_and_patch_fails_the_patch_test_and_nothing_changes(
    kube: tuple[FakeKube, KubernetesProvider],
) -> None:
    fake, provider = kube
    fake.deploy_before_next_patch = f"{IMAGE}:v2.5.0"
    with pytest.raises(Conflicting) as raised:
        await provider.rollback("v2.3.1", said)
    assert "changed since rollbot read it" in raised.value.message
    assert [c.status for c in fake.calls if c.method == "PATCH"] == [422]
    container = fake.deployment()["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{IMAGE}:v2.5.0"  # the deploy stays, the rollback did not land


async def test_a_failed_json_patch_test_answers_422_with_a_kubernetes_status(
    kube: tuple[FakeKube, KubernetesProvider],
) -> None:
    fake, _ = kube
    generation = fake.deployment()["metadata"]["generation"]
    patch = [
        {"op": "test", "path": "/metadata/generation", "value": generation - 1},
        {"op": "replace", "path": "/spec/replicas", "value": 1},
    ]
    url = f"{fake.url}/apis/apps/v1/namespaces/shop/deployments/web"
    headers = {"Content-Type": "application/json-patch+json"}
    async with httpx.AsyncClient() as http:
        refused = await http.patch(
            url, content=json.dumps(patch), headers={**headers, **bearer(fake)}
        )
        anonymous = await http.get(url)
    assert refused.status_code == 422
    body: dict[str, Any] = refused.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        "Invalid",
        422,
    )
    assert body["details"]["causes"][0]["message"] == (
        "testing value /metadata/generation failed: test failed"
    )
    assert fake.deployment()["spec"]["replicas"] == 3
    assert fake.deployment()["metadata"]["generation"] == generation
    assert (anonymous.status_code, anonymous.json()["reason"]) == (401, "Unauthorized")


async def test_a_broken_image_sits_in_image_pull_back_off_and_the_rollback_fails(
    kube: tuple[FakeKube, KubernetesProvider],
) -> None:
    fake, provider = kube
    deployment = fake.deployment()
    fake.cluster.deploy(deployment, f"{IMAGE}:v2.5.0-broken", "release v2.5.0", {})
    fake.cluster.advance(settle=True)
    fake.cluster.deploy(deployment, f"{IMAGE}:v2.5.1", "release v2.5.1", {})
    fake.cluster.advance(settle=True)
    assert await provider.current_version() == "v2.5.1"

    with pytest.raises(RollbackFailed) as raised:
        await provider.rollback("v2.5.0-broken", said)
    assert "is ImagePullBackOff: Back-off pulling image" in raised.value.message
    assert fake.serving() == "v2.5.1"  # maxUnavailable 0: the old pods keep serving


async def test_rbac_refusals_and_throttling_answer_as_the_api_server_does(
    kube: tuple[FakeKube, KubernetesProvider],
) -> None:
    fake, provider = kube
    fake.throttle(2, retry_after=1)
    assert await provider.current_version() == "v2.4.0"  # reads wait out Retry-After
    assert [c.status for c in fake.calls[:2]] == [429, 429]

    fake.forbid.add(("patch", "deployments"))
    with pytest.raises(AuthRejected) as raised:
        await provider.rollback("v2.3.1", said)
    assert (
        'deployments.apps "web" is forbidden: User "system:serviceaccount:shop:rollbot" '
        'cannot patch resource "deployments" in API group "apps" in the namespace "shop"'
    ) in raised.value.message
    assert await provider.current_version() == "v2.4.0"


def bearer(fake: FakeKube) -> dict[str, str]:
    """The header the kubeconfig's user sends."""
    return {"Authorization": f"Bearer {fake.token}"}
