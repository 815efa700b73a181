"""Several replicas behind one Slack request URL: what one does, another must not do again.

Three real `rollbot serve --http` processes share one store, one config and one fake
Slack, behind a round-robin proxy (`tests/support/replicas.py`); a request goes to the
replica a test pins it to. The service is a real Docker Compose container, as in the other
end-to-end rollback tests.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.models import AuditEntry, Rollback, State
from bot.states import Trigger
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    backend_config,
    cards,
    confirm,
    ephemeral_text,
    has_action,
    ready_to_approve,
    request_card,
    running_image,
    thread_text,
    wait_card,
)
from tests.support.docker import ComposeContainer, ComposeContainerFactory, unique_project
from tests.support.replicas import Replicas, StartReplicas
from tests.support.services import HttpServerFactory
from tests.support.slack import text_of

# The stores the replicas share (tests/support/stores.py), each test run once per entry.
SHARED_STORES = ["sqlite", "postgresql"]
pytestmark = pytest.mark.parametrize("store_kind", SHARED_STORES)

IGNORED = "duplicate slack request ignored"  # what a replica logs for a request seen before


async def backend(
    start_replicas: StartReplicas, compose_container: ComposeContainerFactory
) -> tuple[ComposeContainer, Replicas]:
    """Run backend v1.2.4 in a new compose project and three replicas configured for it."""
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    return container, await start_replicas(backend_config(container.project, container.port))


def moves(audit: list[AuditEntry]) -> list[tuple[str, str]]:
    """Return who made each transition and approval the audit records, in order."""
    return [
        (e.action, e.actor)
        for e in audit
        if "trigger" in e.details or e.action in ("requested", "approval")
    ]


def ignored(replicas: Replicas) -> dict[str, int]:
    """Return how many requests each replica ignored as seen before."""
    return {r.name: r.log().count(IGNORED) for r in replicas}


def ran_steps(replicas: Replicas) -> list[str]:
    """Return the replicas whose log shows a rollback's steps: those that executed one."""
    return [r.name for r in replicas if '"event": "step"' in r.log()]


async def test_request_confirmation_and_approval_on_three_replicas_run_once(
    start_replicas: StartReplicas, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container, replicas = await backend(start_replicas, compose_container)
    a, b, c = replicas

    card = await request_card(a, "backend v1.2.3")
    await confirm(b, card, "critical_bug")
    card = await wait_card(b, card, lambda m: has_action(m, ActionId.APPROVE))
    status, _ = await c.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    assert status == 200

    card = await wait_card(c, card, lambda m: ":large_green_circle:" in text_of(m))
    assert "succeeded" in text_of(card)
    await replicas.fake.wait_for(lambda: "[RESOLVED]" in thread_text(replicas.fake, card))
    # The command reached A, the pick and the confirmation B, the approval C.
    assert replicas.proxy.chosen == [0, 1, 1, 2]

    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    (rb,) = await replicas.store.find()
    assert rb.state is State.SUCCEEDED
    audit = await replicas.store.audit_log(rb.id)
    assert moves(audit) == [
        ("requested", REQUESTER),
        ("severity", REQUESTER),
        ("awaiting_approval", "rollbot"),
        ("approval", APPROVER),
        ("approved", APPROVER),
        ("started", "rollbot"),
        ("verifying", "rollbot"),
        ("succeeded", "rollbot"),
    ]
    actions = [e.action for e in audit]
    assert actions.count("started") == 1 and actions.count("verification") == 1
    assert "step" in actions
    assert [e for e in audit if e.action == "refused"] == []
    assert await replicas.store.locks() == []
    assert thread_text(replicas.fake, card).count("Rolling back now") == 1
    assert ran_steps(replicas) == ["C"]


async def test_a_command_slack_retries_to_other_replicas_makes_one_rollback(
    start_replicas: StartReplicas, compose_container: ComposeContainerFactory
) -> None:
    _container, replicas = await backend(start_replicas, compose_container)
    composer = replicas.slack.composing()
    await composer.command("backend v1.2.3", user=REQUESTER, channel=CHANNEL)
    (body,) = composer.held

    # The first delivery to A, Slack's retries of it to B and C, all at once.
    answers = await replicas.slack.deliver(body, to=[0, 1, 2])
    assert [status for status, _ in answers] == [200, 200, 200]
    await replicas.fake.wait_for(lambda: cards(replicas.fake) or None)
    await asyncio.sleep(1)  # time for a second card, were one coming
    assert len(cards(replicas.fake)) == 1
    (rb,) = await replicas.store.find()
    assert moves(await replicas.store.audit_log(rb.id)) == [("requested", REQUESTER)]
    assert "already has rollback" not in ephemeral_text(replicas.fake)
    assert sum(ignored(replicas).values()) == 2


async def test_an_approval_slack_retries_to_another_replica_approves_and_runs_once(
    start_replicas: StartReplicas, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container, replicas = await backend(start_replicas, compose_container)
    card = await ready_to_approve(replicas[0], "backend v1.2.3", "critical_bug")
    composer = replicas.slack.composing()
    await composer.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    (body,) = composer.held

    # Delivered to B and, as Slack's retry of it, to C at the same time.
    answers = await replicas.slack.deliver(body, to=[1, 2])
    assert [status for status, _ in answers] == [200, 200]
    await wait_card(replicas[0], card, lambda m: ":large_green_circle:" in text_of(m))

    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    (rb,) = await replicas.store.find()
    audit = await replicas.store.audit_log(rb.id)
    assert [e.action for e in audit].count("approval") == 1
    assert [e.action for e in audit].count("started") == 1
    # The duplicate was dropped before the engine saw it: nobody was refused anything.
    assert [e for e in audit if e.action == "refused"] == []
    assert "already" not in ephemeral_text(replicas.fake)
    assert thread_text(replicas.fake, card).count("Rolling back now") == 1
    counts = ignored(replicas)
    assert counts["A"] == 0 and counts["B"] + counts["C"] == 1
    assert len(ran_steps(replicas)) == 1 and ran_steps(replicas)[0] in ("B", "C")


async def test_a_replica_killed_mid_rollback_is_taken_over_and_finished_by_a_survivor(
    start_replicas: StartReplicas,
    compose_container: ComposeContainerFactory,
    http_server: HttpServerFactory,
    docker_host: str,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.4")
    config = backend_config(container.project, container.port)
    # A health check that fails until the test says otherwise holds the rollback in
    # "verifying" long enough to kill the replica running it.
    health = await http_server(503, "starting")
    production = config["services"]["backend"]["environments"]["production"]
    production["checks"] = [{"name": "health", "type": "http", "url": health.url}]
    config["runtime"] |= {
        "verify_deadline_seconds": 60,
        "verify_interval_seconds": 0.5,
        "sweep_interval_seconds": 1,
    }
    replicas = await start_replicas(config)
    card = await ready_to_approve(replicas[0], "backend v1.2.3", "critical_bug")
    await replicas[1].slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    rb = await until_state(replicas, State.VERIFYING)
    (lease,) = await replicas.store.locks()
    runner = replicas.holding(lease.owner)
    assert runner is not None and runner.index == 1

    await replicas.kill(1)
    assert not replicas[1].alive and replicas[0].alive and replicas[2].alive
    # The round-robin entrance passes over the dead replica.
    answers = [await replicas.slack.command("help", user=REQUESTER) for _ in range(3)]
    assert [status for status, _ in answers] == [200] * 3
    assert set(replicas.proxy.chosen[-3:]) == {0, 2}
    # A survivor takes it over, finds the container swap done, and verifies again.
    taken = await until_audited(replicas, rb.id, Trigger.RESUME)
    assert taken.action == "resumed" and taken.actor == "rollbot"
    health.set(200, "ok")
    rb = await until_state(replicas, State.SUCCEEDED)

    audit = await replicas.store.audit_log(rb.id)
    assert [action for action, _ in moves(audit)][-6:] == [
        "approved",
        "started",
        "verifying",
        "resumed",
        "verifying",
        "succeeded",
    ]
    assert [e.action for e in audit].count("started") == 1
    assert await replicas.store.locks() == []
    image, _ = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3")
    card = await wait_card(replicas[0], card, lambda m: ":large_green_circle:" in text_of(m))
    thread = thread_text(replicas.fake, card)
    assert "Taken over by" in thread and thread.count("Rolling back now") == 1
    assert "rollback finished" not in replicas[1].log()

    # Back on its port, the restarted replica (its start-up sweep, a command) moves the
    # finished rollback no further.
    await replicas.restart(1)
    status, _ = await replicas[1].slack.command("status", user=REQUESTER, channel=CHANNEL)
    assert status == 200
    await asyncio.sleep(1)
    assert moves(await replicas.store.audit_log(rb.id)) == moves(audit)
    after = await replicas.store.get(rb.id)
    assert after is not None and after.state is State.SUCCEEDED


async def until_audited(replicas: Replicas, rollback_id: str, trigger: Trigger) -> AuditEntry:
    """Wait until a rollback's audit log records a transition by `trigger`; return it."""
    for _ in range(600):
        audit = await replicas.store.audit_log(rollback_id)
        found = [e for e in audit if e.details.get("trigger") == trigger]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{rollback_id}: no {trigger.value} recorded: {moves(audit)}")


async def until_state(replicas: Replicas, state: State) -> Rollback:
    """Wait until the replicas' one rollback is in `state`, as recorded in their store."""
    found: list[Rollback] = []
    for _ in range(600):
        found = await replicas.store.find()
        if found and found[0].state is state:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no rollback reached {state.value}: {found}")


# The app's Docker health check: failures do not count for its first two minutes, so a new
# container stays "starting" and the rollback waits inside the provider's call.
NEVER_HEALTHY_YET = {
    "Test": ["CMD-SHELL", "test -f /tmp/ready"],
    "Interval": 200_000_000,
    "Timeout": 1_000_000_000,
    "Retries": 3,
    "StartPeriod": 120_000_000_000,
}


async def test_a_replica_killed_inside_the_container_swap_is_finished_by_a_survivor(
    start_replicas: StartReplicas, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    container = await compose_container(
        unique_project(), "backend", "v1.2.4", healthcheck=NEVER_HEALTHY_YET
    )
    config = backend_config(container.project, container.port)
    config["runtime"] |= {"sweep_interval_seconds": 1}
    replicas = await start_replicas(config)
    card = await ready_to_approve(replicas[0], "backend v1.2.3", "critical_bug")
    await replicas[2].slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    # The new container runs, not yet healthy; the old one is stopped and renamed aside.
    for _ in range(300):
        if "waiting for it to be up" in thread_text(replicas.fake, card):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(thread_text(replicas.fake, card))
    rb = (await replicas.store.find())[0]
    assert rb.state is State.RUNNING
    await replicas.kill(2)

    taken = await until_audited(replicas, rb.id, Trigger.RESUME)
    assert taken.actor == "rollbot"
    rb = await until_state(replicas, State.SUCCEEDED)
    image, info = await running_image(docker_host, container.project)
    assert image.endswith(":v1.2.3") and info["Name"] == f"/{container.name}"
    thread = thread_text(replicas.fake, card)
    assert "Taken over by" in thread and "already runs v1.2.3" in thread
    assert "removed the old one left behind" in thread
    assert await replicas.store.locks() == []
    actions = [e.action for e in await replicas.store.audit_log(rb.id)]
    assert actions.count("started") == 1 and actions.count("resumed") == 1
