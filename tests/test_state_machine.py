"""Random interleavings of the whole flow on two replicas; the safety rules hold after each step.

Hypothesis drives requests, severity confirmations, approvals, rejections, cancels,
executions, retries, fix-forward decisions and sweeps, by people allowed and not, often
several at once (`asyncio.gather`) and on either replica, against a real SQLite store and
fake Vercel projects (`tests/support/safety.py`). After every step it reads back what the
store recorded: a live lease exactly where the state holds the lock, one per environment;
one open rollback per environment; no start without a retry before it; every state change
an entry of the table, chained from `requested` to the stored state in the order the
records were written; no Vercel rollback call without a start; nothing interrupted (no
process stops here and no lease lapses); and every refusal a caller was given in the
audit log, and no other refusal of a person. Rules check what their callers got back too:
one execute at most runs a rollback, and only where its lease is.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Awaitable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar, cast, get_args

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from bot.engine import Engine
from bot.errors import Conflict, InvalidRequest, NotAllowed, ReasonRequired, RollbotError
from bot.matrix import ISSUES
from bot.models import FINAL_STATES, Rollback, State, StepStatus, utcnow
from bot.states import WAITING
from tests.support.safety import (
    APPROVER,
    APPROVER2,
    PEOPLE,
    REQUESTER,
    SERVICE,
    TOKEN,
    TOKEN_ENV,
    VERSIONS,
    Seen,
    Silent,
    World,
    chain,
    committed,
    violations,
)

ENVIRONMENTS = {"production": True, "staging": False}
REASON = "checkout is down for everyone"
T = TypeVar("T")

Kind = Literal["confirm", "approve", "reject", "cancel", "retry", "fix_forward", "execute"]
Outcome = Literal["succeeds", "step fails", "verification fails"]


class Said(NamedTuple):
    """An error a person is shown instead of a result."""

    error: RollbotError


class Act(NamedTuple):
    """One thing a person (or, for execute, a replica) does to a rollback."""

    kind: Kind
    user: str
    replica: int
    reason: str | None = None  # an override or break-glass reason
    issue: str = "critical_bug"


replicas = st.integers(0, 1)
# The replicas one click lands on: a double click may land on both, or twice on one.
clicks = st.lists(replicas, min_size=1, max_size=2)
people = st.sampled_from(PEOPLE)
reasons = st.none() | st.just(REASON)
issues = st.sampled_from(sorted(ISSUES))
# Which rollback a rule acts on (see Flow.pick): 0 is the newest open one.
recent = st.integers(0, 3)
# True a quarter of the time (and False when shrunk).
rarely = st.sampled_from([False, False, False, True])
outcomes: st.SearchStrategy[Outcome] = st.sampled_from(get_args(Outcome))


def acts(*kinds: Kind) -> st.SearchStrategy[Act]:
    """Draw an act of one of these kinds (of any kind, if none is named), by anyone."""
    chosen: tuple[Kind, ...] = kinds or get_args(Kind)
    return st.builds(Act, st.sampled_from(chosen), people, replicas, reasons, issues)


class Flow(RuleBasedStateMachine):
    """Two replicas of rollbot on one store, and the people who click."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory(prefix="rollbot-flow-")
        try:
            self.world = self.run(World.start(Path(self.tmp.name), ENVIRONMENTS))
        except BaseException:
            self.loop.close()
            self.tmp.cleanup()
            raise
        self.ids: list[str] = []  # rollbacks created, oldest first
        self.seen: list[Seen] = []  # refusals callers were given

    def teardown(self) -> None:
        """Close the world and the loop, and delete the store file."""
        try:
            self.run(self.world.close())
            self.run(self.loop.shutdown_asyncgens())
            self.run(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()
            self.tmp.cleanup()

    def run(self, work: Awaitable[T]) -> T:
        """Run a coroutine on the machine's loop."""
        return self.loop.run_until_complete(work)

    def at_once(self, calls: Iterable[Awaitable[T]]) -> list[T]:
        """Run calls concurrently; once all have ended, raise the first error any raised."""

        async def gather() -> list[T | BaseException]:
            return await asyncio.gather(*calls, return_exceptions=True)

        results = self.run(gather())
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return cast(list[T], results)

    def engine(self, replica: int) -> Engine:
        """Return one replica's engine."""
        return self.world.engines[replica]

    def pick(self, back: int) -> Rollback:
        """Return a rollback: 0 is the newest open one; retryable ones next, then the rest."""

        def rank(rollback: Rollback) -> int:
            if rollback.state not in FINAL_STATES:
                return 0
            return 1 if rollback.failed_step is not None else 2

        # Sorting is stable: newest first within each rank, as the store returns them.
        found = sorted(self.run(self.world.store.find(limit=len(self.ids))), key=rank)
        return found[min(back, len(found) - 1)]

    async def answer(self, rollback_id: str | None, user: str, call: Awaitable[T]) -> T | Said:
        """Await a person's call; keep a refusal they are given; return what they are told."""
        try:
            return await call
        except (NotAllowed, Conflict) as exc:
            self.seen.append(Seen.of(rollback_id, user, exc))
            return Said(exc)
        except (InvalidRequest, ReasonRequired) as exc:
            return Said(exc)  # a version already running, a missing reason: not a refusal

    def act(self, rollback_id: str, act: Act) -> Awaitable[object]:
        """Start one act on a rollback."""
        engine = self.engine(act.replica)
        match act.kind:
            case "confirm":
                call = engine.confirm_severity(rollback_id, act.issue, act.user, act.reason)
            case "approve":
                call = engine.approve(rollback_id, act.user, act.reason)
            case "reject":
                call = engine.reject(rollback_id, act.user)
            case "cancel":
                call = engine.cancel(rollback_id, act.user)
            case "retry":
                call = engine.retry(rollback_id, act.user)
            case "fix_forward":
                call = engine.decide_fix_forward(rollback_id, act.user)
            case "execute":
                # Not a person's call: it returns None when it does not run, and never raises.
                return engine.execute(rollback_id, Silent())
        return self.answer(rollback_id, act.user, call)

    def together(self, rollback: Rollback, batch: Sequence[Act]) -> list[object]:
        """Do several acts on one rollback at once; check at most one execute ran it."""
        results = self.at_once(self.act(rollback.id, a) for a in batch)
        ran = [r for a, r in zip(batch, results, strict=True) if a.kind == "execute" and r]
        assert len(ran) <= 1, f"{rollback.id} ran {len(ran)} times at once"
        return results

    def execute(self, rollback: Rollback, on: Sequence[int], outcome: Outcome) -> None:
        """Execute on these replicas at once; it runs once where its lease is, else nowhere."""
        target = self.world.targets[rollback.environment]
        holder = any(rollback.id in self.engine(r).leases for r in on)
        due = rollback.state is State.APPROVED and holder
        # Its first step undone, it expects to find what ran when it was requested; a
        # rollback of the same environment that ran since makes it stale, and cancelled.
        first = rollback.steps[0].status if rollback.steps else StepStatus.PENDING
        expects = rollback.target_version if first is StepStatus.DONE else rollback.current_version
        stale = due and target.serving() != expects
        target.fail_next(step=outcome == "step fails", verification=outcome == "verification fails")
        try:
            results = self.together(rollback, [Act("execute", "rollbot", r) for r in on])
        finally:
            target.fail_next()
        ran = [r for r in results if isinstance(r, Rollback)]
        assert len(ran) == (due and not stale), f"{rollback.id} ran {len(ran)} times"
        if stale:
            after = self.run(self.world.store.get(rollback.id))
            assert after is not None and after.state is State.CANCELLED, after
        expected = {
            "succeeds": (State.SUCCEEDED, None),
            "step fails": (State.FAILED, 0),
            "verification fails": (State.FAILED, None),
        }[outcome]
        for done in ran:
            assert (done.state, done.failed_step) == expected, done

    def ask(self, env: str, asks: Sequence[tuple[str, str, bool, int]]) -> list[Rollback]:
        """Make these requests for one environment at once; return the rollbacks made."""

        async def one(version: str, user: str, dry_run: bool, replica: int) -> object:
            call = self.engine(replica).request(
                service=SERVICE, version=version, environment=env, user=user, dry_run=dry_run
            )
            return await self.answer(None, user, call)

        made = [r for r in self.at_once(one(*a) for a in asks) if isinstance(r, Rollback)]
        assert sum(not r.dry_run for r in made) <= 1, "two open rollbacks granted at once"
        self.ids += [r.id for r in made]
        return made

    # -- rules ---------------------------------------------------------------------------

    @initialize(requester=st.sampled_from([REQUESTER, APPROVER]), replica=replicas)
    def first(self, requester: str, replica: int) -> None:
        """Start with a rollback waiting in every environment."""
        for env in sorted(ENVIRONMENTS):
            assert self.ask(env, [("v1.2.3", requester, False, replica)]), env

    @rule(
        env=st.sampled_from(sorted(ENVIRONMENTS)),
        asks=st.lists(
            st.tuples(st.sampled_from(VERSIONS), people, rarely, replicas), min_size=1, max_size=2
        ),
    )
    def request(self, env: str, asks: list[tuple[str, str, bool, int]]) -> None:
        """A request, or two at once, for one environment; a quarter of them dry runs."""
        self.ask(env, asks)

    @rule(back=recent, moves=st.lists(st.tuples(clicks, outcomes, rarely), min_size=1, max_size=4))
    def advance(self, back: int, moves: list[tuple[list[int], Outcome, bool]]) -> None:
        """Take a rollback a few steps on, each as the person whose turn it is would.

        Each step is clicked once per replica listed, at once (a double click, two tabs);
        an approver who requested it approves it themself, by break-glass, when `own` is set.
        """
        rollback = self.pick(back)
        for on, outcome, own in moves:
            requester = rollback.requested_by
            if own and requester == APPROVER:
                approver, reason = requester, REASON
            else:
                approver, reason = (APPROVER2 if requester == APPROVER else APPROVER), None
            match rollback.state:
                case State.REQUESTED:
                    self.together(rollback, [Act("confirm", requester, r) for r in on])
                case State.AWAITING_APPROVAL:
                    self.together(rollback, [Act("approve", approver, r, reason) for r in on])
                case State.APPROVED:
                    self.execute(rollback, on, outcome)
                case State.FAILED if rollback.failed_step is not None:
                    self.together(rollback, [Act("retry", requester, r) for r in on])
                case _:
                    return
            found = self.run(self.world.store.get(rollback.id))
            assert found is not None
            rollback = found

    @rule(back=recent, act=acts())
    def act_once(self, back: int, act: Act) -> None:
        """Someone confirms, approves, rejects, cancels, retries, executes or fixes forward."""
        self.together(self.pick(back), [act])

    @rule(back=recent, clicks=st.lists(acts("approve"), min_size=1, max_size=3))
    def approve(self, back: int, clicks: list[Act]) -> None:
        """One to three approval clicks at once; a requester's may carry a break-glass reason."""
        rollback = self.pick(back)
        self.together(rollback, clicks)
        after = self.run(self.world.store.get(rollback.id))
        assert after is not None
        assert len(after.approved_by) == len(set(after.approved_by)), after.approved_by

    @rule(back=recent, on=clicks, outcome=outcomes)
    def execute_on(self, back: int, on: list[int], outcome: Outcome) -> None:
        """Execute on one replica or two, or twice on one; the provider or the check may fail."""
        self.execute(self.pick(back), on, outcome)

    @rule(back=recent, clicks=st.lists(acts("retry"), min_size=1, max_size=2))
    def retry(self, back: int, clicks: list[Act]) -> None:
        """One or two Retry clicks at once."""
        self.together(self.pick(back), clicks)

    @rule(back=recent, batch=st.lists(acts(), min_size=2, max_size=3))
    def race(self, back: int, batch: list[Act]) -> None:
        """Two or three different things at once to one rollback."""
        self.together(self.pick(back), batch)

    @rule(replica=replicas, back=recent, age=rarely)
    def sweep(self, replica: int, back: int, age: bool) -> None:
        """Sweep, sometimes after a waiting request grew older than its expiry."""
        aged = None
        if age:
            rollback = self.pick(back)
            if rollback.state in WAITING:
                aged = rollback.id
                then = utcnow() - timedelta(hours=2)
                self.run(self.world.store.update(aged, created_at=then))
        moved = self.run(self.engine(replica).sweep())
        assert all(rb.state is State.EXPIRED for rb in moved), moved
        assert aged is None or aged in {rb.id for rb in moved}, f"{aged} did not expire"

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def safe(self) -> None:
        """The store, the leases, the audit log and the fakes agree with the rules."""
        problems = self.run(violations(self.world, self.seen))
        assert not problems, "\n".join(problems)


# Shrinking a failure to its shortest steps takes minutes (hypothesis gives up after five).
@pytest.mark.timeout(420)
def test_safety_rules_hold_in_any_interleaving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    run_state_machine_as_test(
        Flow,
        settings=settings(
            max_examples=50,
            stateful_step_count=50,
            deadline=None,
            # The explain phase traces every line run: minutes more on a failure.
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


async def test_the_audit_lists_transitions_in_the_order_they_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    world = await World.start(tmp_path, {"production": True})
    first, second = world.engines
    try:
        rb = await first.request(
            service=SERVICE, version="v1.2.3", environment="production", user=REQUESTER
        )
        # A third process holds the write lock: the first replica's cancel is built now
        # and waits, its busy handler soon sleeping 100 ms between tries.
        other = sqlite3.connect(world.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        cancel = asyncio.create_task(first.cancel(rb.id, REQUESTER))
        await asyncio.sleep(0.3)
        # The second replica's confirmation comes later and, trying every few ms, writes first.
        confirm = asyncio.create_task(second.confirm_severity(rb.id, "critical_bug", REQUESTER))
        await asyncio.sleep(0.01)
        other.execute("COMMIT")
        other.close()
        await asyncio.gather(cancel, confirm)

        now = await first.get(rb.id)
        assert now.state is State.CANCELLED  # confirmed, awaiting approval, then cancelled
        assert chain(now, committed(world.path)) == []
        assert chain(now, await first.store.audit_log(rb.id)) == []
    finally:
        await world.close()
