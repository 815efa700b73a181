"""A replica that takes a rollback over edits the progress reply the first one posted.

The reply's position is kept with the rollback's other Slack coordinates in the store, so
a survivor does not start a second progress reply in the thread.
"""

from __future__ import annotations

import pytest

from bot.models import State
from bot.states import Trigger
from handlers.ids import ActionId
from tests.e2e_helpers import APPROVER, backend_config, ready_to_approve, thread_text, wait_card
from tests.support.docker import ComposeContainerFactory, unique_project
from tests.support.replicas import StartReplicas
from tests.support.services import HttpServerFactory
from tests.support.slack import text_of
from tests.test_replicas import until_audited, until_state

pytestmark = pytest.mark.parametrize("store_kind", ["postgresql"])


async def test_the_survivor_edits_the_progress_reply_the_dead_replica_posted(
    start_replicas: StartReplicas,
    compose_container: ComposeContainerFactory,
    http_server: HttpServerFactory,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port)
    # Health fails until the test says otherwise: the rollback waits in "verifying".
    health = await http_server(503, "starting")
    production = config["services"]["backend"]["environments"]["production"]
    production["checks"] = [{"name": "health", "type": "http", "url": health.url}]
    config["runtime"] |= {
        "verify_deadline_seconds": 60,
        "verify_interval_seconds": 0.5,
        "sweep_interval_seconds": 1,
    }
    replicas = await start_replicas(config, count=2)
    fake = replicas.fake
    card = await ready_to_approve(replicas[0], "backend v1.2.3", "critical_bug")
    await replicas[1].slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    rb = await until_state(replicas, State.VERIFYING)
    (first,) = await fake.wait_for(
        lambda: [m for m in fake.thread(card["channel"], card["ts"]) if ":gear:" in m["text"]]
    )
    stored = await replicas.store.get(rb.id)
    assert stored is not None and stored.progress_ts == first["ts"]

    await replicas.kill(1)
    await until_audited(replicas, rb.id, Trigger.RESUME)
    health.set(200, "ok")
    await until_state(replicas, State.SUCCEEDED)
    await wait_card(replicas[0], card, lambda m: ":large_green_circle:" in text_of(m))
    await fake.wait_for(
        lambda: "Taken over by" in text_of(fake.message(card["channel"], first["ts"]))
    )

    progress = [m for m in fake.thread(card["channel"], card["ts"]) if ":gear:" in m["text"]]
    assert [m["ts"] for m in progress] == [first["ts"]], thread_text(fake, card)
