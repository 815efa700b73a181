"""Two rollbot replicas on one SQLite file, rolling a Vercel service back, and what must hold.

Each environment has a fake Vercel project of its own (`playground/vercel_api.py`) whose
alias jobs take a few hundredths of a second, and a local health endpoint its check reads,
so a whole rollback runs in about 0.1 s. Each replica is a real `Engine` with its own store
connection and its own `Owner` on another host. `violations` reads back what the store
recorded and names every safety rule it finds broken, a refusal someone was given and the
audit log lacks among them. The state machine test and `bench/safety.py` share them.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.access import ROLLBOT_ACTORS
from bot.config import parse_config
from bot.engine import Engine
from bot.errors import RollbotError
from bot.leases import Owner
from bot.models import AuditEntry, Rollback, State
from bot.pool import ProviderPool
from bot.states import TRANSITIONS, Trigger, holds_lock
from bot.store.sqlite import SQLiteStore
from bot.verification import CheckResult
from tests.support.services import FakeHttpServer
from tests.support.vercel import FakeVercel

SERVICE = "web"
REQUESTER = "U_REQ"  # may request, not approve
APPROVER = "U_APPROVER"  # may request and approve: so may approve their own by break-glass
APPROVER2 = "U_APPROVER2"  # may approve
OUTSIDER = "U_NOBODY"  # may do nothing
PEOPLE = (REQUESTER, APPROVER, APPROVER2, OUTSIDER)
VERSIONS = ("v1.2.2", "v1.2.3", "v1.2.4")  # the fake serves v1.2.4 at first
TOKEN_ENV = "VERCEL_TOKEN"
TOKEN = "vercel-safety-4be1d07c"  # the fakes' token, not a secret
HOSTS = ("replica-a", "replica-b")
JOB_SECONDS = 0.03  # a fake alias job; the provider polls every 0.05 s


class Silent:
    """A Reporter for rollbacks nobody watches."""

    async def progress(self, rollback: Rollback, text: str) -> None:
        """Drop a progress line."""

    async def verified(self, rollback: Rollback, results: list[CheckResult]) -> None:
        """Drop the verification table."""

    async def finished(self, rollback: Rollback, summary: str) -> None:
        """Drop the outcome."""


@dataclass(frozen=True)
class Target:
    """One environment: its fake Vercel project and the health endpoint its check reads."""

    vercel: FakeVercel
    health: FakeHttpServer

    def fail_next(self, *, step: bool = False, verification: bool = False) -> None:
        """Make the next rollbacks' alias job fail, or their health check; no flag: neither."""
        self.vercel.job_outcome = "failed" if step else "succeeded"
        self.health.set(500 if verification else 200, "down" if verification else "ok")

    def serving(self) -> str:
        """Return the version production serves now, e.g. "v1.2.3"."""
        return f"v{self.vercel.serving().version}"


class World:
    """The fakes of every environment, one store file and an engine per replica on them.

    Protected environments need one listed approver; the others are approved by policy.
    Leases last 60 s, far longer than any run here: nothing ever lapses or is taken over.
    """

    def __init__(self, root: Path, protected: Mapping[str, bool]) -> None:
        self.root = root
        self.protected = dict(protected)
        self.targets: dict[str, Target] = {}
        self.engines: list[Engine] = []
        self._stack = contextlib.AsyncExitStack()

    @classmethod
    async def start(cls, root: Path, protected: Mapping[str, bool]) -> World:
        """Start the fakes and open the replicas; `protected` maps environment names."""
        world = cls(root, protected)
        try:
            await world._start()
        except BaseException:
            await world.close()
            raise
        return world

    async def _start(self) -> None:
        for env in self.protected:
            vercel = FakeVercel(token=TOKEN)
            self._stack.push_async_callback(vercel.close)
            await vercel.start()
            vercel.add_project()
            vercel.job_seconds = JOB_SECONDS
            health = FakeHttpServer(200, "ok")
            self._stack.push_async_callback(health.close)
            await health.start()
            self.targets[env] = Target(vercel, health)
        config = parse_config(self.config())
        for host in HOSTS:
            store = SQLiteStore(str(self.path))
            self._stack.push_async_callback(store.close)
            await store.open()
            pool = ProviderPool(config)
            self._stack.push_async_callback(pool.aclose)
            owner = Owner(boot="safetyboot", host=host, pid=1, nonce="5afe7e57")
            self.engines.append(Engine(config, store, pool, owner=owner))

    async def close(self) -> None:
        """Close the providers, the stores and the fakes."""
        await self._stack.aclose()

    @property
    def path(self) -> Path:
        """Return the store file both replicas share."""
        return self.root / "rollbot.db"

    @property
    def store(self) -> SQLiteStore:
        """Return the first replica's store connection (any reads the same file)."""
        store = self.engines[0].store
        assert isinstance(store, SQLiteStore)
        return store

    def config(self) -> dict[str, Any]:
        """Return the config data: service `web` in every environment, verified over HTTP."""
        environments: dict[str, Any] = {}
        for env, target in self.targets.items():
            environments[env] = {
                "provider": target.vercel.settings(token_env=TOKEN_ENV),
                "checks": [
                    {
                        "name": "health",
                        "type": "http",
                        "url": target.health.url,
                        "timeout_seconds": 1,
                    }
                ],
                "protected": self.protected[env],
            }
            if not self.protected[env]:
                environments[env]["approval"] = {"required_approvals": 0}
        return {
            "approval": {
                "requesters": {"users": [REQUESTER, APPROVER]},
                "approvers": {"users": [APPROVER, APPROVER2]},
                "required_approvals": 1,
            },
            "runtime": {"verify_deadline_seconds": 0.1, "verify_interval_seconds": 0.05},
            "services": {SERVICE: {"environments": environments}},
        }


@dataclass(frozen=True)
class Seen:
    """A refusal a caller was given: of which rollback (None: a request), to whom, and why."""

    rollback_id: str | None
    actor: str
    reason: str

    @classmethod
    def of(cls, rollback_id: str | None, actor: str, error: RollbotError) -> Seen:
        """Return what a caller saw of a refusal."""
        return cls(rollback_id, actor, error.message)


def unaudited(seen: Iterable[Seen], audit: Iterable[AuditEntry]) -> list[str]:
    """Match refusals given to audit records; name the ones missing and the ones nobody got.

    A refusal is recorded under its caller, or under rollbot (or its policy) when a step
    the engine took for the caller was refused. A refusal recorded under a person must be
    one a caller was given.
    """
    left: dict[tuple[str | None, str], list[AuditEntry]] = defaultdict(list)
    for entry in audit:
        if entry.action == "refused":
            left[(entry.rollback_id, entry.details.get("reason", ""))].append(entry)
    problems = []
    rest = []
    # Callers' own records first, so a rollbot record is only taken for a step of rollbot's.
    for refusal in seen:
        records = left[(refusal.rollback_id, refusal.reason)]
        mine = next((e for e in records if e.actor == refusal.actor), None)
        if mine is None:
            rest.append(refusal)
        else:
            records.remove(mine)
    for refusal in rest:
        records = left[(refusal.rollback_id, refusal.reason)]
        ours = next((e for e in records if e.actor in ROLLBOT_ACTORS), None)
        if ours is None:
            problems.append(f"refusal given but not audited: {refusal}")
        else:
            records.remove(ours)
    for records in left.values():
        problems += [
            f"refusal audited that nobody was given: {e.actor} {e.rollback_id} "
            f"{e.details.get('reason')!r}"
            for e in records
            if e.actor not in ROLLBOT_ACTORS
        ]
    return problems


def chain(rollback: Rollback, entries: Iterable[AuditEntry]) -> list[str]:
    """Follow the transitions in a rollback's audit from `requested`; name those off the table."""
    problems = []
    state: State | None = None
    for entry in entries:
        if entry.action == "requested" and "trigger" not in entry.details:
            if state is not None:
                problems.append(f"{rollback.id}: requested again while {state.value}")
            state = State.REQUESTED
            continue
        if "trigger" not in entry.details:
            continue  # a note, an approval, a refusal: not a transition
        step = TRANSITIONS[Trigger(entry.details["trigger"])]
        if state not in step.sources:
            problems.append(
                f"{rollback.id}: {step.trigger.value} recorded from "
                f"{state.value if state else 'nothing'} ({step.target.value})"
            )
        state = step.target
    if state is not rollback.state:
        problems.append(
            f"{rollback.id}: audit ends {state.value if state else 'empty'}, "
            f"stored state is {rollback.state.value}"
        )
    return problems


def transitions(entries: Iterable[AuditEntry]) -> Counter[Trigger]:
    """Count a rollback's recorded transitions by trigger."""
    return Counter(Trigger(e.details["trigger"]) for e in entries if "trigger" in e.details)


def committed(path: Path) -> list[AuditEntry]:
    """Return the audit records in the order they were written (their row order).

    `Store.audit_log` orders by the time a record was built, which for a write that waited
    for another process's lock is earlier than the write: the rules are checked in the
    order things happened. A plain read of a local file, quick enough to block the loop.
    """
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
    return [
        AuditEntry.model_validate({**dict(row), "details": json.loads(row["details"])})
        for row in rows
    ]


async def violations(world: World, seen: Iterable[Seen] = ()) -> list[str]:
    """Read the store and the fakes back; name every safety rule broken.

    `seen` are the refusals callers were given: each must be audited (see `unaudited`).
    """
    store = world.store
    rollbacks = await store.find(limit=1_000_000)
    leases = await store.locks()
    audit = committed(world.path)
    by_rollback: dict[str | None, list[AuditEntry]] = defaultdict(list)
    for entry in audit:
        by_rollback[entry.rollback_id].append(entry)
    problems = unaudited(seen, audit)

    leased = Counter(lease.rollback_id for lease in leases)
    keys = Counter(lease.key for lease in leases)
    problems += [f"{key}: {n} live leases" for key, n in keys.items() if n > 1]
    problems += [f"{rid}: {n} live leases" for rid, n in leased.items() if n > 1]
    known = {rb.id: rb for rb in rollbacks}
    for lease in leases:
        rb = known.get(lease.rollback_id)
        if rb is None or rb.lock_key != lease.key:
            problems.append(f"lease {lease.key} held for {lease.rollback_id}, not its rollback")
    opened = Counter(rb.open_key for rb in rollbacks if rb.open_key is not None)
    problems += [f"{key}: {n} open rollbacks" for key, n in opened.items() if n > 1]

    started: Counter[str] = Counter()
    for rb in rollbacks:
        if holds_lock(rb.state) != (rb.id in leased):
            held = "holds" if rb.id in leased else "holds no"
            problems.append(f"{rb.id} is {rb.state.value} and {held} live lease")
        if rb.state is State.INTERRUPTED:
            # Nothing here stops a process or lets a lease lapse: only a bug interrupts.
            problems.append(f"{rb.id} was interrupted")
        entries = by_rollback[rb.id]
        moves = transitions(entries)
        if moves[Trigger.START] > 1 + moves[Trigger.RETRY]:
            problems.append(
                f"{rb.id} started {moves[Trigger.START]} times, retried {moves[Trigger.RETRY]}"
            )
        started[rb.environment] += moves[Trigger.START]
        problems += chain(rb, entries)
    for env, target in world.targets.items():
        calls = len(target.vercel.routed("rollback"))
        if calls > started[env]:
            problems.append(f"{env}: {calls} Vercel rollback calls for {started[env]} starts")
    return problems
