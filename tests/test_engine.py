"""The engine without Slack: policies, expiry and recovery, on a real store and dockerd."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import RollbotConfig, parse_config
from bot.engine import Engine
from bot.errors import Conflict, NotAllowed, ReasonRequired
from bot.events import EventKind, Moved
from bot.leases import Owner, this_process
from bot.models import AuditEntry, Rollback, State, utcnow
from bot.pool import ProviderPool
from bot.states import LockChange
from bot.store import Store
from bot.store.base import Change
from bot.store.sqlite import SQLiteStore
from bot.verification import CheckResult
from tests.e2e_helpers import APPROVER, REQUESTER, backend_config, running_image
from tests.support.docker import ComposeContainer, ComposeContainerFactory, unique_project


class Transcript:
    """A Reporter that keeps what a person would have read."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def progress(self, rollback: Rollback, text: str) -> None:
        self.lines.append(text)

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        self.lines += [f"{r.name}: {'ok' if r.ok else 'FAIL'}" for r in results]

    async def finished(self, rollback: Rollback, summary: str) -> None:
        self.lines.append(summary)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as opened:
        yield opened


@pytest.fixture
async def backend(compose_container: ComposeContainerFactory) -> ComposeContainer:
    return await compose_container(unique_project(), "backend", "v1.2.4")


async def make_engine(
    store: Store,
    container: ComposeContainer,
    *,
    protected: bool | None = None,
    owner: Owner | None = None,
    **approval: object,
) -> Engine:
    data = backend_config(container.project, container.port, **approval)
    data["services"]["backend"]["environments"]["production"]["protected"] = protected
    config: RollbotConfig = parse_config(data)
    return Engine(config, store, ProviderPool(config), owner=owner)


async def request(engine: Engine, version: str = "v1.2.3") -> Rollback:
    return await engine.request(
        service="backend", version=version, environment=None, user=REQUESTER
    )


async def approved(engine: Engine) -> Rollback:
    """Request v1.2.3, confirm a critical bug and have it approved."""
    rb = await request(engine)
    await engine.confirm_severity(rb.id, "critical_bug", REQUESTER)
    return await engine.approve(rb.id, APPROVER)


async def test_two_approvals_required(
    store: SQLiteStore, backend: ComposeContainer, docker_host: str
) -> None:
    engine = await make_engine(store, backend, required_approvals=2)
    try:
        rb = await request(engine)
        rb = await engine.confirm_severity(rb.id, "feature_broken", REQUESTER)
        rb = await engine.approve(rb.id, APPROVER)
        assert rb.state is State.AWAITING_APPROVAL and rb.approved_by == [APPROVER]
        with pytest.raises(Conflict, match=r"approved rollback \S+ already"):
            await engine.approve(rb.id, APPROVER)  # the same person twice counts once
        assert (await engine.get(rb.id)).approved_by == [APPROVER]
        rb = await engine.approve(rb.id, "U_APPROVER2")
        assert rb.state is State.APPROVED and rb.approved_by == [APPROVER, "U_APPROVER2"]
        transcript = Transcript()
        done = await engine.execute(rb.id, transcript)
        assert done is not None and done.state is State.SUCCEEDED
        assert await engine.execute(rb.id, transcript) is None  # never twice
        assert "backend health: ok" in transcript.lines
        image, _ = await running_image(docker_host, backend.project)
        assert image.endswith(":v1.2.3")
    finally:
        await engine.providers.aclose()


async def test_no_approval_policy_approves_on_severity(
    store: SQLiteStore, backend: ComposeContainer
) -> None:
    engine = await make_engine(store, backend, required_approvals=0, protected=False)
    try:
        rb = await request(engine)
        rb = await engine.confirm_severity(rb.id, "critical_bug", REQUESTER)
        assert rb.state is State.APPROVED
        assert [lock.rollback_id for lock in await store.locks()] == [rb.id]
    finally:
        await engine.providers.aclose()


async def test_policy_refusals(store: SQLiteStore, backend: ComposeContainer) -> None:
    engine = await make_engine(
        store, backend, requesters={"users": [REQUESTER]}, break_glass={"enabled": False}
    )
    try:
        with pytest.raises(NotAllowed, match="not allowed to request"):
            await engine.request(service="backend", version="v1.2.3", environment=None, user="U_X")
        rb = await request(engine)
        with pytest.raises(ReasonRequired):
            await engine.confirm_severity(rb.id, "minor_ui_bug", REQUESTER)
        with pytest.raises(NotAllowed, match="requester or an approver"):
            await engine.confirm_severity(rb.id, "critical_bug", "U_X")
        rb = await engine.confirm_severity(rb.id, "critical_bug", REQUESTER)
        with pytest.raises(NotAllowed, match="allowed never"):
            await engine.approve(rb.id, REQUESTER, break_glass_reason="please")
        with pytest.raises(Conflict, match="already has rollback"):
            await request(engine, "v1.2.2")
        with pytest.raises(Conflict, match="already awaiting approval"):
            await engine.confirm_severity(rb.id, "critical_bug", REQUESTER)
        assert (await engine.get(rb.id)).state is State.AWAITING_APPROVAL
    finally:
        await engine.providers.aclose()


async def test_sweep_expires_stale_requests(store: SQLiteStore, backend: ComposeContainer) -> None:
    engine = await make_engine(store, backend, expires_after_minutes=5)
    try:
        stale = await request(engine)
        await store.update(stale.id, created_at=utcnow() - timedelta(minutes=6))
        await engine.sweep()
        assert (await engine.get(stale.id)).state is State.EXPIRED
    finally:
        await engine.providers.aclose()


def elsewhere(host: str) -> Owner:
    """A process on another machine (or container): judged alive until its lease expires."""
    return Owner(boot="otherboot", host=host, pid=1, nonce="feedf00d")


async def test_a_live_lease_is_never_swept_and_an_expired_one_is_taken_over(
    store: SQLiteStore, backend: ComposeContainer, docker_host: str
) -> None:
    first = await make_engine(store, backend, owner=elsewhere("replica-a"))
    second = await make_engine(store, backend, owner=elsewhere("replica-b"))
    try:
        rb = await approved(first)
        assert rb.state is State.APPROVED
        (lease,) = await store.locks()
        assert lease.owner == str(first.owner) and lease.rollback_id == rb.id

        # The second process leaves a rollback alone while its owner's lease is live.
        assert await second.sweep() == []
        assert (await second.get(rb.id)).state is State.APPROVED
        assert await store.locks() == [lease]

        # Once the lease lapses (its process stopped renewing it), it is taken over.
        await store.renew_lease(lease.key, rb.id, lease.token, timedelta(seconds=-1))
        (moved,) = await second.sweep()
        assert moved.state is State.INTERRUPTED
        assert moved.target_state and "running rollbot-test/backend:v1.2.4" in moved.target_state
        assert await store.locks() == []

        # The first process's token is stale now: none of its writes land.
        assert await first.execute(rb.id, Transcript()) is None
        assert (await first.get(rb.id)).state is State.INTERRUPTED
        image, _ = await running_image(docker_host, backend.project)
        assert image.endswith(":v1.2.4")
    finally:
        await first.providers.aclose()
        await second.providers.aclose()


async def test_a_lease_of_a_dead_process_on_this_machine_is_taken_over_at_once(
    store: SQLiteStore, backend: ComposeContainer
) -> None:
    me = this_process()
    gone = Owner(me.boot, me.host, pid=dead_pid(), nonce="0000dead")
    crashed = await make_engine(store, backend, owner=gone)
    restarted = await make_engine(store, backend, owner=me)
    try:
        rb = await approved(crashed)
        (moved,) = await restarted.sweep()
        assert moved.id == rb.id and moved.state is State.INTERRUPTED
        assert "rollbot stopped" in (moved.error or "")
        kinds = [e.action for e in await store.audit_log(rb.id)]
        assert kinds[-1] == "interrupted" and kinds.count("interrupted") == 1
    finally:
        await crashed.providers.aclose()
        await restarted.providers.aclose()


def dead_pid() -> int:
    """Return the id of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


class BrokenChat(Transcript):
    """A Reporter whose every post fails, like Slack during an outage."""

    async def progress(self, rollback: Rollback, text: str) -> None:
        raise RuntimeError("slack is down")

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        raise RuntimeError("slack is down")

    async def finished(self, rollback: Rollback, summary: str) -> None:
        raise RuntimeError("slack is down")


async def test_a_chat_outage_does_not_fail_a_working_rollback(
    store: SQLiteStore, backend: ComposeContainer, docker_host: str
) -> None:
    engine = await make_engine(store, backend)
    try:
        rb = await approved(engine)
        done = await engine.execute(rb.id, BrokenChat())
        assert done is not None and done.state is State.SUCCEEDED
        assert await store.locks() == []
        image, _ = await running_image(docker_host, backend.project)
        assert image.endswith(":v1.2.3")
    finally:
        await engine.providers.aclose()


async def test_a_newer_deploy_since_the_request_is_not_rolled_over(
    store: SQLiteStore, backend: ComposeContainer, docker_host: str
) -> None:
    engine = await make_engine(store, backend)
    try:
        rb = await approved(engine)
        # Someone deploys v1.2.2 by other means while the card waits.
        provider = engine.providers.get("backend", "production")
        await provider.rollback("v1.2.2", _quiet)
        transcript = Transcript()
        assert await engine.execute(rb.id, transcript) is None
        done = await engine.get(rb.id)
        assert done.state is State.CANCELLED
        assert "now runs v1.2.2, not v1.2.4" in (done.error or "")
        assert done.target_state == "unchanged: runs v1.2.2"
        assert "Nothing was changed" in transcript.lines[-1]
        assert await store.locks() == []
        image, _ = await running_image(docker_host, backend.project)
        assert image.endswith(":v1.2.2")
    finally:
        await engine.providers.aclose()


async def _quiet(text: str) -> None:
    return None


async def test_break_glass_is_for_approvers_only(
    store: SQLiteStore, backend: ComposeContainer
) -> None:
    engine = await make_engine(store, backend)
    try:
        rb = await request(engine)
        await engine.confirm_severity(rb.id, "critical_bug", REQUESTER)
        with pytest.raises(NotAllowed, match="only for approvers"):
            await engine.approve(rb.id, REQUESTER, break_glass_reason="site is down")
        assert (await engine.get(rb.id)).state is State.AWAITING_APPROVAL
    finally:
        await engine.providers.aclose()


async def test_two_retries_at_once_run_once_and_keep_the_lock(
    store: SQLiteStore, backend: ComposeContainer
) -> None:
    engine = await make_engine(store, backend)
    try:
        rb = await request(engine)
        failed = await store.update(
            rb.id, failed_step=0, error="Verification failed: backend health."
        )
        await engine.confirm_severity(failed.id, "critical_bug", REQUESTER)
        await engine.approve(failed.id, APPROVER)
        lease = engine.leases[rb.id]
        await store.apply(
            Change(
                rollback_id=rb.id,
                sources=frozenset({State.APPROVED}),
                target=State.FAILED,
                lock=LockChange.RELEASE,
                audit=[AuditEntry(actor="rollbot", action="failed", rollback_id=rb.id)],
                token=lease.token,
                fields={"failed_step": 0},
            )
        )
        engine.leases.clear()
        assert await store.locks() == []

        results = await asyncio.gather(
            engine.retry(rb.id, REQUESTER), engine.retry(rb.id, APPROVER), return_exceptions=True
        )

        retried = [r for r in results if isinstance(r, Rollback)]
        refused = [r for r in results if isinstance(r, Conflict)]
        assert len(retried) == 1 and len(refused) == 1, results
        assert retried[0].state is State.APPROVED
        (held,) = await store.locks()
        assert held.rollback_id == rb.id and held == engine.leases[rb.id]
        actions = [e.action for e in await store.audit_log(rb.id)]
        assert actions.count("retry") == 1 and actions.count("refused") == 1
    finally:
        await engine.providers.aclose()


async def test_two_executions_at_once_run_once_and_never_interrupt_each_other(
    store: SQLiteStore, backend: ComposeContainer, docker_host: str
) -> None:
    engine = await make_engine(store, backend)
    try:
        rb = await approved(engine)

        results = await asyncio.gather(
            engine.execute(rb.id, Transcript()), engine.execute(rb.id, Transcript())
        )

        ran = [r for r in results if r is not None]
        assert len(ran) == 1 and ran[0].state is State.SUCCEEDED, results
        actions = [e.action for e in await store.audit_log(rb.id)]
        assert actions.count("started") == 1 and "interrupted" not in actions
        assert await store.locks() == [] and engine.leases == {}
        image, _ = await running_image(docker_host, backend.project)
        assert image.endswith(":v1.2.3")
    finally:
        await engine.providers.aclose()


async def test_every_transition_is_published_once_in_order(
    store: SQLiteStore, backend: ComposeContainer
) -> None:
    engine = await make_engine(store, backend)
    seen: list[Moved] = []

    async def record(event: Moved) -> None:
        seen.append(event)

    async def broken(event: Moved) -> None:
        raise RuntimeError("a subscriber that fails stops nothing")

    engine.events.subscribe(broken)
    engine.events.subscribe(record)
    try:
        rb = await approved(engine)
        done = await engine.execute(rb.id, Transcript())
        assert done is not None and done.state is State.SUCCEEDED
    finally:
        await engine.providers.aclose()
    assert [e.kind for e in seen] == [
        EventKind.REQUESTED,
        EventKind.SEVERITY_CONFIRMED,
        EventKind.AWAITING_APPROVAL,
        EventKind.APPROVED,
        EventKind.STARTED,
        EventKind.VERIFYING,
        EventKind.SUCCEEDED,
    ]
    assert [e.previous for e in seen[1:]] == [e.rollback.state for e in seen[:-1]]
    assert seen[0].previous is None and seen[-1].ended and not seen[-2].ended
    assert [e.actor for e in seen[:4]] == [REQUESTER, REQUESTER, "rollbot", APPROVER]
    assert len(await store.audit_log(rb.id)) >= len(seen)
