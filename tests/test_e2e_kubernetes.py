"""End to end: the Slack conversation driving the kubernetes provider on a real API server."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from bot.models import State
from handlers.ids import REASON_INPUT, ActionId, BlockId
from tests.e2e_helpers import (
    APPROVER,
    ephemeral_text,
    ready_to_approve,
    service_config,
    thread_text,
    wait_card,
)
from tests.support.argocd import application, read_application, tracked_web
from tests.support.bot import RunningBot, StartBot
from tests.support.kube_workloads import (
    create_pull_secret,
    private_repository,
    push_image,
    read_workload,
    workload,
)
from tests.support.services import HttpServerFactory
from tests.support.slack import text_of


async def start(
    start_rollbot: StartBot,
    http_server: HttpServerFactory,
    kubeconfig: str,
    namespace: str,
    **settings: Any,
) -> RunningBot:
    """Start a bot for Deployment `web`, verified against a local HTTP server."""
    health = await http_server(200, '{"status":"ok"}')
    provider = {
        "provider": "kubernetes",
        "namespace": namespace,
        "name": "web",
        "kubeconfig": kubeconfig,
        "poll_interval_seconds": 0.2,
        "rollout_timeout_seconds": 30,
        "stuck_pod_seconds": 2,
        **settings,
    }
    return await start_rollbot(service_config("web", provider, health.url))


async def pushed(api: client.ApiClient, namespace: str, *tags: str) -> list[str]:
    """Push the tags of a fresh repository; the namespace gets the pull secret."""
    repository = private_repository()
    await create_pull_secret(api, namespace)
    return [f"{repository}:{tag}" for tag in tags if push_image(repository.split("/", 1)[1], tag)]


def image_of(deployment: dict[str, Any]) -> str:
    """The image of the Deployment's one container."""
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


async def test_rollback_of_a_deployment_to_previous_from_slack(
    start_rollbot: StartBot,
    http_server: HttpServerFactory,
    kubeconfig: str,
    kube_api: client.ApiClient,
    kube_namespace: str,
) -> None:
    images = await pushed(kube_api, kube_namespace, "v1.2.2", "v1.2.3", "v1.2.4")
    await workload(kube_api, kube_namespace, "web", images)
    bot = await start(start_rollbot, http_server, kubeconfig, kube_namespace)

    card = await ready_to_approve(bot, "web previous", "critical_bug")
    shown = text_of(card)
    assert "v1.2.4" in shown and "v1.2.3" in shown
    assert "*Exactly:* `Deployment web revision 3" in shown
    assert "`image-present`" in shown and "is in its registry (sha256:" in shown

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
    assert image_of(deployment) == images[1]
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    thread = thread_text(bot.fake, card)
    assert "Verification passed" in thread and "replicas updated and available" in thread
    (rb,) = await bot.store.find()
    assert (rb.state, rb.current_version, rb.target_version) == (
        State.SUCCEEDED,
        "v1.2.4",
        "v1.2.3",
    )
    assert await bot.store.locks() == []


async def test_a_deploy_between_card_and_click_refuses_the_approval(
    start_rollbot: StartBot,
    http_server: HttpServerFactory,
    kubeconfig: str,
    kube_api: client.ApiClient,
    kube_namespace: str,
) -> None:
    images = await pushed(kube_api, kube_namespace, "v1", "v2", "v3")
    await workload(kube_api, kube_namespace, "web", images[:2])
    bot = await start(start_rollbot, http_server, kubeconfig, kube_namespace)
    card = await ready_to_approve(bot, "web v1", "critical_bug")

    # The pipeline applies v3 while the card waits.
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": images[2]}]}}}}
    await client.AppsV1Api(kube_api).patch_namespaced_deployment("web", kube_namespace, body)
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)

    await bot.fake.wait_for(lambda: "changed since this card was shown" in ephemeral_text(bot.fake))
    await wait_card(bot, card, lambda m: "v3" in text_of(m))
    (rb,) = await bot.store.find()
    assert rb.state is State.AWAITING_APPROVAL
    deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
    assert image_of(deployment) == images[2]  # nothing ran


async def test_an_unpullable_target_fails_preflight_and_its_stuck_rollout_frees_the_lock(
    start_rollbot: StartBot,
    http_server: HttpServerFactory,
    kubeconfig: str,
    kube_api: client.ApiClient,
    kube_namespace: str,
) -> None:
    (good,) = await pushed(kube_api, kube_namespace, "v2")
    missing = good.replace("/web-", "/web-unpullable-").replace(":v2", ":v1")
    await workload(kube_api, kube_namespace, "web", [missing, good], unready=frozenset({missing}))
    bot = await start(start_rollbot, http_server, kubeconfig, kube_namespace)

    card = await ready_to_approve(bot, "web 1", "critical_bug")
    shown = text_of(card)
    assert ":x: `image-present`" in shown and "is not in its registry" in shown
    assert "Preflight failed: break-glass" in shown

    # Approved break-glass anyway, the rollout sticks: the pods and why are named, the
    # lock is freed, and the Deployment stays where the rollback set it.
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    view = await bot.fake.wait_for(lambda: bot.fake.views and list(bot.fake.views.values())[-1])
    named = {BlockId.REASON: {REASON_INPUT: "image-present: the registry is being migrated"}}
    await bot.slack.submit_view(view["id"], named, user=APPROVER)
    await bot.fake.wait_for(lambda: "What to do next" in thread_text(bot.fake, card), timeout=40)

    thread = thread_text(bot.fake, card)
    assert "is ImagePullBackOff" in thread and "pod web-" in thread
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED
    assert await bot.store.locks() == []
    deployment = await read_workload(kube_api, kube_namespace, "web", "Deployment")
    assert image_of(deployment) == missing


async def test_argo_cd_auto_sync_is_paused_for_the_rollback_and_resumed_on_unfreeze(
    start_rollbot: StartBot,
    http_server: HttpServerFactory,
    kubeconfig: str,
    kube_api: client.ApiClient,
    kube_namespace: str,
) -> None:
    await tracked_web(kube_api, kube_namespace)
    await application(kube_api, kube_namespace, {"prune": True, "selfHeal": True})
    argocd = {"namespace": kube_namespace}
    bot = await start(start_rollbot, http_server, kubeconfig, kube_namespace, argocd=argocd)

    card = await ready_to_approve(bot, "web previous", "critical_bug")
    assert "`argocd-sync`" in text_of(card) and "rollbot pauses that" in text_of(card)
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    assert "automated sync paused (was prune, selfHeal)" in thread_text(bot.fake, card)
    assert "automated" not in (await read_application(kube_api, kube_namespace))["spec"].get(
        "syncPolicy", {}
    )

    done = await wait_card(bot, card, lambda m: "automated sync kept paused" in text_of(m))
    assert "Unfreeze (resume what the freeze paused)" in text_of(done)
    await bot.slack.click(card["channel"], card["ts"], ActionId.UNFREEZE, user=APPROVER)
    await bot.fake.wait_for(lambda: "Unfrozen by" in thread_text(bot.fake, card))
    app = await read_application(kube_api, kube_namespace)
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
