"""Exactly once under duplicate clicks: concurrent approvals, retries and requests, counted.

Runs in-process on real engines and a real SQLite store, with no Slack: two replicas (each
an `Engine` with its own store connection and owner, as two processes on two hosts would
have) share one store file in a temporary directory, and every environment rolls a fake
Vercel project back (`playground/vercel_api.py`, alias jobs of 0.03 s) with a local health
check (`tests/support/safety.py`). Each scenario runs `--trials` times, each trial on a
fresh rollback, `--parallel` environments at a time:

    approve  2-4 Approve clicks at once (same and different approvers, either replica) on
             a rollback awaiting approval; then four executes at once, two per replica
    retry    two Retry clicks at once on a rollback whose alias job failed; then the same
    request  two requests at once for one service+environment; the winner is cancelled

Prints per scenario the trials, executions, double executions (must be 0), refusals, and
the median and 99th percentile of the time until a loser got its answer. Exits 1 on any
double execution, on a trial that did not end as it must, or when the store breaks a
safety rule afterwards (refusals unaudited included); 130 when interrupted. The fakes,
the connections and the temporary directory are always cleaned up.

    .venv/bin/python bench/safety.py [--trials N] [--parallel P] [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

# Run as a script from anywhere: the repository root holds `tests` (the fakes, the rules).
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.engine import Engine  # noqa: E402 - after the sys.path line above
from bot.errors import Conflict, NotAllowed, RollbotError  # noqa: E402
from bot.logs import configure  # noqa: E402
from bot.models import Rollback, State  # noqa: E402
from bot.states import Trigger  # noqa: E402
from tests.support.safety import (  # noqa: E402
    APPROVER,
    APPROVER2,
    REQUESTER,
    SERVICE,
    TOKEN,
    TOKEN_ENV,
    VERSIONS,
    Seen,
    Silent,
    World,
    transitions,
    violations,
)


@dataclass
class Tally:
    """What one scenario counted."""

    name: str
    trials: int = 0
    executions: int = 0
    doubles: int = 0
    refusals: int = 0
    waits: list[float] = field(default_factory=list)  # seconds until each loser's answer
    problems: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> str:
        """Return the q-th percentile wait in ms (nearest rank), formatted."""
        if not self.waits:
            return "-"
        waits = sorted(self.waits)
        return f"{waits[max(math.ceil(q / 100 * len(waits)) - 1, 0)] * 1000:.1f}"


@dataclass(frozen=True)
class Answer:
    """One of several calls made at once: what it got, and after how long."""

    value: Rollback | RollbotError
    seconds: float


Call = tuple[str, Callable[[], Awaitable[Rollback]]]  # who clicks, and the click


class Broken(Exception):
    """A trial did not end as it must."""


class Bench:
    """The world, a seeded random source, and the refusals people were given."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.seen: list[Seen] = []

    def replica(self) -> Engine:
        """Return either replica: a click lands on any."""
        return self.rng.choice(self.world.engines)

    def version(self, env: str) -> str:
        """Return a version the environment does not run now."""
        running = self.world.targets[env].serving()
        return self.rng.choice([v for v in VERSIONS if v != running])

    async def at_once(self, rollback_id: str | None, calls: Sequence[Call]) -> list[Answer]:
        """Click all at once; time each answer; keep the refusals people are given."""
        start = time.perf_counter()

        async def one(user: str, call: Callable[[], Awaitable[Rollback]]) -> Answer:
            try:
                value: Rollback | RollbotError = await call()
            except (NotAllowed, Conflict) as exc:
                self.seen.append(Seen.of(rollback_id, user, exc))
                value = exc
            return Answer(value, time.perf_counter() - start)

        return list(await asyncio.gather(*(one(user, call) for user, call in calls)))

    async def awaiting(self, env: str) -> Rollback:
        """Request a rollback of `env` and confirm a critical bug: it awaits approval."""
        rb = await self.replica().request(
            service=SERVICE, version=self.version(env), environment=env, user=REQUESTER
        )
        return await self.replica().confirm_severity(rb.id, "critical_bug", REQUESTER)

    async def execute(self, tally: Tally, rollback: Rollback, expect: State) -> None:
        """Execute twice on each replica at once: it must run once and end in `expect`.

        An execute that raised touched the rollback too: with one that ran, that is two.
        """
        target = self.world.targets[rollback.environment]
        called = len(target.vercel.routed("rollback"))
        engines = [*self.world.engines, *self.world.engines]
        results = await asyncio.gather(
            *(e.execute(rollback.id, Silent()) for e in engines), return_exceptions=True
        )
        ran = [r for r in results if isinstance(r, Rollback)]
        raised = [r for r in results if isinstance(r, BaseException)]
        calls = len(target.vercel.routed("rollback")) - called
        moves = transitions(await self.world.store.audit_log(rollback.id))
        tally.executions += len(ran)
        tally.problems += [f"{rollback.id}: execute raised {exc!r}" for exc in raised]
        starts, retries = moves[Trigger.START], moves[Trigger.RETRY]
        if len(ran) + len(raised) > 1 or calls > len(ran) or starts > 1 + retries:
            tally.doubles += 1
            tally.problems.append(
                f"{rollback.id}: {len(ran)} runs, {len(raised)} raised, {calls} Vercel calls, "
                f"{starts} starts for {retries} retries"
            )
        elif [r.state for r in ran] != [expect]:
            tally.problems.append(f"{rollback.id}: ended {[r.state.value for r in ran]}")

    def losers(self, tally: Tally, what: str, answers: list[Answer], state: State) -> Rollback:
        """Count the refused answers; return the one winner, which must be in `state`."""
        won = [a.value for a in answers if isinstance(a.value, Rollback)]
        lost = [a for a in answers if isinstance(a.value, RollbotError)]
        tally.refusals += len(lost)
        tally.waits += [a.seconds for a in lost]
        if len(won) != 1 or won[0].state is not state:
            raise Broken(f"{what}: {len(won)} of {len(answers)} won, not one {state.value}")
        return won[0]

    # -- the scenarios ------------------------------------------------------------------

    async def approve(self, tally: Tally, env: str) -> None:
        """2-4 Approve clicks at once, then the executes."""
        rb = await self.awaiting(env)
        clicks: list[Call] = []
        for _ in range(self.rng.randint(2, 4)):
            user, engine = self.rng.choice((APPROVER, APPROVER2)), self.replica()
            clicks.append((user, partial(engine.approve, rb.id, user)))
        answers = await self.at_once(rb.id, clicks)
        approved = self.losers(tally, f"{rb.id} approve", answers, State.APPROVED)
        await self.execute(tally, approved, State.SUCCEEDED)

    async def retry(self, tally: Tally, env: str) -> None:
        """Two Retry clicks at once on a rollback whose alias job failed, then the executes."""
        target = self.world.targets[env]
        rb = await self.awaiting(env)
        rb = await self.replica().approve(rb.id, APPROVER)
        target.fail_next(step=True)
        try:
            await self.execute(tally, rb, State.FAILED)
        finally:
            target.fail_next()
        clicks: list[Call] = []
        for _ in range(2):
            user, engine = self.rng.choice((REQUESTER, APPROVER, APPROVER2)), self.replica()
            clicks.append((user, partial(engine.retry, rb.id, user)))
        answers = await self.at_once(rb.id, clicks)
        retried = self.losers(tally, f"{rb.id} retry", answers, State.APPROVED)
        await self.execute(tally, retried, State.SUCCEEDED)

    async def request(self, tally: Tally, env: str) -> None:
        """Two requests at once for one environment; the winner is cancelled."""
        asks: list[Call] = []
        for _ in range(2):
            user, engine = self.rng.choice((REQUESTER, APPROVER)), self.replica()
            ask = partial(
                engine.request,
                service=SERVICE,
                version=self.version(env),
                environment=env,
                user=user,
            )
            asks.append((user, ask))
        answers = await self.at_once(None, asks)
        won = self.losers(tally, f"{env} request", answers, State.REQUESTED)
        await self.replica().cancel(won.id, won.requested_by)


Scenario = Callable[[Bench, Tally, str], Awaitable[None]]
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "approve": ("2-4 Approve clicks at once", Bench.approve),
    "retry": ("2 Retry clicks at once", Bench.retry),
    "request": ("2 requests at once", Bench.request),
}


async def run_scenario(bench: Bench, name: str, trials: int, envs: list[str]) -> Tally:
    """Run a scenario's trials, one environment per worker, each trial after the last."""
    label, scenario = SCENARIOS[name]
    tally = Tally(f"{name}: {label}")
    numbers: Iterator[int] = iter(range(trials))

    async def worker(env: str) -> None:
        for _ in numbers:
            tally.trials += 1
            try:
                await scenario(bench, tally, env)
            except (Broken, RollbotError) as exc:
                # Its rollback may still hold the environment: this worker stops here.
                tally.problems.append(f"{env}: {exc}")
                return

    await asyncio.gather(*(worker(env) for env in envs))
    return tally


def table(tallies: list[Tally]) -> str:
    """Format the tallies."""
    header = (
        f"{'scenario':<36} {'trials':>6} {'executions':>10} {'double':>6} {'refusals':>8}"
        f" {'loser p50':>9} {'loser p99':>9}"
    )
    lines = [header, "-" * len(header)]
    for t in tallies:
        lines.append(
            f"{t.name:<36} {t.trials:>6} {t.executions:>10} {t.doubles:>6} {t.refusals:>8}"
            f" {t.percentile(50):>9} {t.percentile(99):>9}"
        )
    lines.append(
        "loser p50/p99: ms from the clicks to a refused click's answer (all clicks start at once)"
    )
    return "\n".join(lines)


async def bench(trials: int, parallel: int, seed: int) -> int:
    """Run every scenario on one world; print the table; return the exit status."""
    envs = [f"prod-{n}" for n in range(1, parallel + 1)]
    with tempfile.TemporaryDirectory(prefix="rollbot-safety-") as tmp:
        world = await World.start(Path(tmp), dict.fromkeys(envs, True))
        try:
            runner = Bench(world, random.Random(seed))  # noqa: S311 - draws clicks, not secrets
            started = time.perf_counter()
            tallies = [await run_scenario(runner, name, trials, envs) for name in SCENARIOS]
            seconds = time.perf_counter() - started
            broken = await violations(world, runner.seen)
        finally:
            await world.close()

    print(
        f"rollbot safety: {trials} trials per scenario, {parallel} environments at a time, "
        f"seed {seed}, {seconds:.0f} s"
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; two replicas "
        "(engines with their own store connections) on one SQLite file, in-process"
    )
    print()
    print(table(tallies))
    print()
    print(f"safety rules broken in the store afterwards: {len(broken)}")
    problems = [p for t in tallies for p in t.problems] + broken
    if problems:
        print("\nFAILED:")
        for problem in problems[:20]:
            print(f"  {problem}")
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more")
        return 1
    return 0


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="per scenario (default 1000)")
    parser.add_argument(
        "--parallel", type=int, default=4, help="environments run at a time (default 4)"
    )
    parser.add_argument("--seed", type=int, default=1, help="of the random clicks (default 1)")
    args = parser.parse_args()
    if args.trials < 1 or args.parallel < 1:
        parser.error("--trials and --parallel must be at least 1")
    configure(level=logging.WARNING)
    # The fakes' token, in the variable the provider settings name; this process only.
    os.environ[TOKEN_ENV] = TOKEN
    try:
        sys.exit(asyncio.run(bench(args.trials, args.parallel, args.seed)))
    except KeyboardInterrupt:
        print("interrupted; everything was cleaned up", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
