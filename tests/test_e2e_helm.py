"""End to end: the Slack conversation driving the helm provider on a real API server."""

from __future__ import annotations

from pathlib import Path

from kubernetes_asyncio import client

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import APPROVER, ready_to_approve, service_config, thread_text
from tests.support.bot import StartBot
from tests.support.helm_releases import IMAGE, deployment_image, history, release, step
from tests.support.kube import Helm
from tests.support.services import HttpServerFactory
from tests.support.slack import text_of


async def test_rollback_of_a_helm_release_to_previous_from_slack(
    start_rollbot: StartBot,
    http_server: HttpServerFactory,
    helm: Helm,
    helm_binary: str,
    kubeconfig: str,
    kube_api: client.ApiClient,
    kube_namespace: str,
    tmp_path: Path,
) -> None:
    steps = [step(1, "v1.2.2", "v1"), step(2, "v1.2.3", "v2"), step(3, "v1.2.4", "v3")]
    await release(helm, tmp_path, kube_namespace, "web", steps)
    health = await http_server(200, '{"status":"ok"}')
    provider = {
        "provider": "helm",
        "release": "web",
        "namespace": kube_namespace,
        "kubeconfig": kubeconfig,
        "helm_binary": helm_binary,
        "timeout_seconds": 30,
    }
    bot = await start_rollbot(service_config("web", provider, health.url))

    card = await ready_to_approve(bot, "web previous", "critical_bug")
    shown = text_of(card)
    assert "v1.2.4" in shown and "v1.2.3" in shown
    assert "*Exactly:* `web revision 3 (tiny-0.3.0, app v1.2.4)`" in shown
    assert "`web revision 2 (tiny-0.2.0, app v1.2.3)`" in shown
    assert "`release-idle`" in shown and "`revision-deployable`" in shown
    assert "values changed: image.tag" in shown

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card), timeout=60)

    newest = (await history(helm, kube_namespace, "web"))[-1]
    assert (newest["revision"], newest["status"], newest["description"]) == (
        4,
        "deployed",
        "Rollback to 2",
    )
    assert await deployment_image(kube_api, kube_namespace, "web") == f"{IMAGE}:v2"
    thread = thread_text(bot.fake, card)
    assert "Verification passed" in thread
    assert "is at revision 4, deployed: 'Rollback to 2' (tiny-0.2.0, app v1.2.3)" in thread
    (rb,) = await bot.store.find()
    assert (rb.state, rb.current_version, rb.target_version) == (
        State.SUCCEEDED,
        "v1.2.4",
        "v1.2.3",
    )
    assert await bot.store.locks() == []
