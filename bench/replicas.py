"""Three replicas behind one Slack request URL: duplicate Approve clicks and take-overs, per store.

For each store (`--store sqlite`, `--store postgresql`; both by default, in one run) it
starts a FakeSlack, a fake Vercel with one project per rollback (`playground/vercel_api.py`),
one health endpoint, and three real `rollbot serve --http` replicas sharing a fresh store
of that kind behind the round-robin proxy (`tests/support/replicas.py`). Then:

    clicks    requests `--rollbacks` rollbacks (each its own service, its card in its own
              channel) and confirms their severity; then sends `--clicks` Approve clicks
              per rollback, each one a user action of its own (two approvers, a trigger_id
              each), all built from the card before any is sent, so they race. They go out
              interleaved across the rollbacks, `--in-flight` at a time, and the proxy
              spreads them over the replicas. Every ack is timed. Executions and double
              executions are counted from the store's audit log (`started` rows) and from
              the rollback calls the fake Vercel received; every acked click must leave
              one audit record (the approval that moved its rollback, or a refusal), unless
              its person was told the database could not be reached.
    takeover  `--takeovers` times: a slow rollback (an alias job of 60 s) is approved, the
              replica running it is SIGKILLed, and the time until a survivor records the
              takeover in the audit log is measured; then that replica is restarted.

Prints per store the clicks, executions, double executions (must be 0), refusals, clicks
told the database was unreachable, ack p50/p99/max and take-over median/max, then
PostgreSQL's ack p50/p99 as multiples of SQLite's from the same run. Exits 1 on a double
execution, a click not acked with 200 within 3 s, a rollback that did not succeed, a click
that left no trace, or a take-over that did not happen; 2 when a store's replicas did not
start; 130 when interrupted. Everything started is always stopped, and the PostgreSQL
database made for the run is dropped.

    .venv/bin/python bench/replicas.py [--store sqlite|postgresql] [--rollbacks N]
        [--clicks N] [--in-flight N] [--takeovers N] [--pg-dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the repository root holds `tests` (the fakes, the replicas).
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402 - after the sys.path line above

from bot.models import FINAL_STATES, AuditEntry, Rollback, State  # noqa: E402
from bot.states import Trigger  # noqa: E402
from handlers.ids import ActionId  # noqa: E402
from playground.vercel_api import FakeVercel  # noqa: E402
from tests.e2e_helpers import cards, has_action  # noqa: E402
from tests.support.bot import NotServing  # noqa: E402
from tests.support.migrations import with_database  # noqa: E402
from tests.support.replicas import Replicas  # noqa: E402
from tests.support.services import FakeHttpServer  # noqa: E402
from tests.support.slack import ACK_DEADLINE, FakeSlack, text_of  # noqa: E402
from tests.support.stores import STORES  # noqa: E402

SQLITE, POSTGRESQL = STORES
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:55432/postgres"  # scripts/start-postgres.sh
REQUESTER = "U_REQ"
APPROVERS = ("U_APPROVER", "U_APPROVER2")
TOKEN_ENV = "VERCEL_TOKEN"  # noqa: S105 - the name of a variable, not a secret
ISSUE = "critical_bug"
TARGET = "v1.2.3"  # the fake Vercel serves v1.2.4 at first
TAKEOVER_TARGET = "v1.2.2"  # what a take-over trial asks for once the clicks made it v1.2.3
JOB_SECONDS = 0.05  # a fake alias job during the clicks
SLOW_JOB_SECONDS = 60.0  # a take-over trial's alias job: still running when its replica dies
SWEEP_SECONDS = 1.0  # how often each replica looks for rollbacks to take over
TAKEN_OVER = frozenset({Trigger.RESUME, Trigger.ORPHAN})  # what a survivor records first
CLIENT_TIMEOUT = 10.0  # longer than Slack's deadline, so a slow ack is measured, not cut off
SETTLE_SECONDS = 60.0  # for every approved rollback to end
UNREACHABLE = "cannot reach its database"  # what StoreUnavailable tells the person
QUIET_SECONDS = 5.0  # no new audit record for this long: the clicks' work is done
SETUP_AT_ONCE = 10  # rollbacks requested and confirmed at a time, before the clicks


@dataclass
class Result:
    """What one store's run counted and timed."""

    store: str
    error: str | None = None  # the replicas did not start
    clicks: int = 0
    failed: int = 0  # clicks answered with something other than 200, or not at all
    answers: Counter[str] = field(default_factory=Counter)  # what those clicks got
    slow: int = 0  # clicks acked in 3 s or more
    acks: list[float] = field(default_factory=list)  # seconds, every click answered 200
    rollbacks: int = 0
    executions: int = 0
    doubles: int = 0
    refusals: int = 0
    unreachable: int = 0  # clicks acked, then answered that the database cannot be reached
    takeovers: list[float] = field(default_factory=list)  # seconds
    problems: list[str] = field(default_factory=list)

    def ack_ms(self, q: float) -> float | None:
        """Return the q-th percentile ack in ms (nearest rank), or None without acks."""
        if not self.acks:
            return None
        ordered = sorted(self.acks)
        return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)] * 1000


# -- the world of one store --------------------------------------------------------------


def services(count: int) -> list[str]:
    """Return the services, one per rollback: svc001, svc002..."""
    return [f"svc{n:03d}" for n in range(1, count + 1)]


def config(vercel: FakeVercel, health: FakeHttpServer, names: Sequence[str]) -> dict[str, Any]:
    """Return the config: each service in production on its own Vercel project."""
    return {
        "approval": {"approvers": {"users": list(APPROVERS)}, "required_approvals": 1},
        "runtime": {
            "verify_deadline_seconds": 5,
            "verify_interval_seconds": 0.1,
            "sweep_interval_seconds": SWEEP_SECONDS,
        },
        "services": {
            name: {
                "environments": {
                    "production": {
                        "provider": vercel.settings(project=name, token_env=TOKEN_ENV),
                        "checks": [
                            {
                                "name": "health",
                                "type": "http",
                                "url": health.url,
                                "timeout_seconds": 1,
                            }
                        ],
                    }
                }
            }
            for name in names
        },
    }


@contextlib.asynccontextmanager
async def database(kind: str, root: Path, pg_dsn: str) -> AsyncIterator[str]:
    """Yield the store URL of a fresh store: a SQLite file, or a new PostgreSQL database."""
    if kind == SQLITE:
        yield f"sqlite:///{root / 'rollbot.db'}"
        return
    name = f"rollbot_bench_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield with_database(pg_dsn, name)
    finally:
        conn = await asyncpg.connect(pg_dsn, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


class Run:
    """One store's replicas and fakes, and the rollbacks requested on them."""

    def __init__(self, replicas: Replicas, vercel: FakeVercel, result: Result) -> None:
        self.replicas = replicas
        self.vercel = vercel
        self.result = result
        self.fake = replicas.fake
        self.slack = replicas.slack
        # A slow ack is measured, not cut off at Slack's deadline.
        self.slack.ack_timeout = CLIENT_TIMEOUT

    async def awaiting(self, service: str, version: str) -> tuple[Rollback, dict[str, Any]]:
        """Request a rollback in the service's own channel and confirm its severity.

        Returns the rollback and its card, showing Approve. Each request goes to whichever
        replica the proxy picks.
        """
        channel = f"C_{service.upper()}"
        count = len(cards(self.fake, channel))
        fields = self.slack.command_fields(f"{service} {version}", user=REQUESTER, channel=channel)
        token = fields["response_url"].rsplit("/", 1)[1]
        status, _ = await self.slack.send_command(fields)
        if status != 200:
            raise Broken(f"{service}: the request was answered {status}")

        def card_or_answer() -> dict[str, Any] | None:
            if len(found := cards(self.fake, channel)) > count:
                return found[-1]
            return next((body for t, body in self.fake.responses if t == token), None)

        card = await self.fake.wait_for(card_or_answer)
        if "ts" not in card:
            raise Broken(f"{service}: the request was refused: {card.get('text')}")
        at = (card["channel"], card["ts"])
        # The replica that posted the card stores where it is a moment later; a pick made
        # before then finds no card to preview on (no person is that quick).
        rollback = await self.posted(service, card["ts"])
        await self.slack.select(*at, ActionId.ISSUE_SELECT, ISSUE, user=REQUESTER)
        await self.fake.wait_for(lambda: "Severity:" in text_of(self.fake.message(*at)))
        await self.slack.click(*at, ActionId.CONFIRM_SEVERITY, user=REQUESTER)
        card = await self.fake.wait_for(
            lambda: m if has_action(m := self.fake.message(*at), ActionId.APPROVE) else None
        )
        return rollback, card

    async def posted(self, service: str, ts: str) -> Rollback:
        """Wait until the store knows where the service's open rollback's card is."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for rollback in await self.replicas.store.find(service=service, limit=5):
                if rollback.message_ts == ts:
                    return rollback
            await asyncio.sleep(0.05)
        raise Broken(f"{service}: the card {ts} was never recorded")

    async def settled(self, ids: Sequence[str]) -> list[Rollback]:
        """Wait until every rollback named has ended; return them."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            found = [await self.replicas.store.get(i) for i in ids]
            ended = [rb for rb in found if rb is not None and rb.state in FINAL_STATES]
            if len(ended) == len(ids) or time.monotonic() > deadline:
                return ended
            await asyncio.sleep(0.2)

    async def answered(self, ids: Sequence[str], expected: int) -> dict[str, list[AuditEntry]]:
        """Wait until `expected` clicks on these rollbacks left their audit record; return the logs.

        Each click is acked before its work is done, so a loser's refusal may be written
        after the rollback ended. A click leaves one record: the approval that moved the
        rollback, or a refusal. Gives up once the count has not moved for a few seconds.
        """
        deadline = time.monotonic() + SETTLE_SECONDS
        last, still = -1, time.monotonic()
        while True:
            audits = {i: await self.replicas.store.audit_log(i) for i in ids}
            count = sum(len(outcomes(audit)) for audit in audits.values())
            now = time.monotonic()
            if count != last:
                last, still = count, now
            if count >= expected or now > deadline or now - still > QUIET_SECONDS:
                return audits
            await asyncio.sleep(0.2)

    def vercel_rollbacks(self, service: str) -> int:
        """Return how many rollback calls the fake Vercel got for a service's project."""
        project = next(p for p in self.vercel.projects.values() if p.name == service)
        return sum(project.id in call.path for call in self.vercel.routed("rollback"))


class Broken(Exception):
    """A step of the bench did not go as it must."""


def told_unreachable(fake: FakeSlack) -> set[str]:
    """Return the response_url tokens of the answers that said the database was unreachable."""
    return {token for token, body in fake.responses if UNREACHABLE in str(body.get("text", ""))}


def outcomes(audit: Sequence[AuditEntry]) -> list[AuditEntry]:
    """Return the records Approve clicks left: the approval that moved it, and refusals."""
    return [
        e
        for e in audit
        if e.details.get("trigger") == Trigger.APPROVE
        or (e.action == "refused" and e.details.get("what") == "approve")
    ]


# -- duplicate Approve clicks ------------------------------------------------------------


@dataclass
class Click:
    """One Approve click: its rollback, the request Slack sends, and the ack it got."""

    rollback_id: str
    body: bytes
    answer: int | str = 0  # the HTTP status, or what went wrong
    seconds: float = 0.0

    @property
    def token(self) -> str:
        """Return the token of its response_url, where the bot answers this click."""
        payload = json.loads(urllib.parse.parse_qs(self.body.decode())["payload"][0])
        return str(payload["response_url"]).rsplit("/", 1)[1]


async def clicks(run: Run, names: Sequence[str], per_rollback: int, in_flight: int) -> None:
    """Request a rollback per service, then race `per_rollback` Approve clicks on each."""
    result = run.result
    gate = asyncio.Semaphore(SETUP_AT_ONCE)

    async def prepare(service: str) -> tuple[Rollback, dict[str, Any]]:
        async with gate:
            return await run.awaiting(service, TARGET)

    ready = await asyncio.gather(*(prepare(s) for s in names))
    result.rollbacks = len(ready)

    # Every click is built from the card as it shows Approve, before any is sent: the card
    # each person clicked on, however late their click arrives.
    composer = run.slack.composing()
    made: list[Click] = []
    for n in range(per_rollback):
        for rollback, card in ready:
            user = APPROVERS[n % len(APPROVERS)]
            await composer.click(card["channel"], card["ts"], ActionId.APPROVE, user=user)
            made.append(Click(rollback.id, composer.held[-1]))
    result.clicks = len(made)
    sending = asyncio.Semaphore(in_flight)

    async def send(click: Click) -> None:
        async with sending:
            started = time.perf_counter()
            try:
                click.answer, _ = await run.slack.raw(
                    click.body, run.slack.signed_headers(click.body)
                )
            except (AssertionError, OSError) as exc:  # no answer within the client's time
                click.answer = type(exc).__name__
            click.seconds = time.perf_counter() - started

    await asyncio.gather(*(send(click) for click in made))
    acked = [c for c in made if c.answer == 200]
    result.acks = [c.seconds for c in acked]
    result.slow = sum(c.seconds >= ACK_DEADLINE for c in acked)
    result.failed = len(made) - len(acked)
    result.answers.update(str(c.answer) for c in made if c.answer != 200)

    ids = [rb.id for rb, _ in ready]
    ended = await run.settled(ids)
    audits = await run.answered(ids, len(acked))
    told = told_unreachable(run.fake)
    for rb in ended:
        audit = audits[rb.id]
        started = sum(e.details.get("trigger") == Trigger.START for e in audit)
        approved = sum(e.details.get("trigger") == Trigger.APPROVE for e in audit)
        calls = run.vercel_rollbacks(rb.service)
        result.executions += started
        result.refusals += len(outcomes(audit)) - approved
        if started > 1 or approved > 1 or calls > 1:
            result.doubles += 1
            result.problems.append(
                f"{rb.id}: {started} starts, {approved} approvals, {calls} Vercel rollback calls"
            )
        if rb.state is not State.SUCCEEDED:
            result.problems.append(f"{rb.id} ({rb.service}) ended {rb.state.value}: {rb.error}")
        # Each acked click leaves one record: the approval that moved the rollback, or a
        # refusal; unless its work found the database unreachable, and its person was told.
        mine = [c for c in acked if c.rollback_id == rb.id]
        down = sum(c.token in told for c in mine)
        result.unreachable += down
        if len(outcomes(audit)) + down != len(mine):
            result.problems.append(
                f"{rb.id}: {len(mine)} clicks acked, {len(outcomes(audit))} audited (approved "
                f"or refused), {down} told the database could not be reached"
            )
    if len(ended) < len(ids):
        result.problems.append(f"{len(ids) - len(ended)} rollbacks did not end")


# -- take-over time after SIGKILL --------------------------------------------------------


async def takeover_time(run: Run, service: str) -> float:
    """TAKE-OVER TIME AFTER SIGKILL: seconds from killing a rollback's runner to the takeover.

    Starts a slow rollback (the fake Vercel's alias job takes SLOW_JOB_SECONDS), waits
    until a replica runs it, SIGKILLs that replica's process group, and waits until a
    survivor records the takeover in the audit log: the `resume` transition (audited as
    `resumed`) when it can tell where the run stopped, else `orphan` (audited as
    `interrupted`), both by rollbot. A survivor's sweeper takes over at once a lease whose
    owner is a dead process of the same machine, so this is at most one sweep interval
    (SWEEP_SECONDS) plus the sweep's own work. The killed replica is restarted after.
    """
    store = run.replicas.store
    run.vercel.job_seconds = SLOW_JOB_SECONDS
    try:
        rollback, card = await run.awaiting(service, TAKEOVER_TARGET)
        at = (card["channel"], card["ts"])
        status, _ = await run.slack.click(*at, ActionId.APPROVE, user=APPROVERS[0])
        if status != 200:
            raise Broken(f"{rollback.id}: the approval was answered {status}")
        runner = None
        deadline = time.monotonic() + 20
        while runner is None:
            if time.monotonic() > deadline:
                raise Broken(f"{rollback.id}: no replica started running it")
            current = await store.get(rollback.id)
            lease = next((x for x in await store.locks() if x.rollback_id == rollback.id), None)
            if current is not None and current.state is State.RUNNING and lease is not None:
                runner = run.replicas.holding(lease.owner)
            else:
                await asyncio.sleep(0.05)
    finally:
        run.vercel.job_seconds = JOB_SECONDS

    killed = time.monotonic()
    await run.replicas.kill(runner.index)
    try:
        while True:
            audit = await store.audit_log(rollback.id)
            if any(e.details.get("trigger") in TAKEN_OVER for e in audit):
                return time.monotonic() - killed
            if time.monotonic() - killed > 10 * SWEEP_SECONDS + 10:
                raise Broken(f"{rollback.id}: no survivor took it over")
            await asyncio.sleep(0.02)
    finally:
        await run.replicas.restart(runner.index)


async def takeovers(run: Run, names: Sequence[str], trials: int) -> None:
    """Measure `trials` take-overs, each on a service the clicks left idle."""
    for service in names[:trials]:
        try:
            run.result.takeovers.append(await takeover_time(run, service))
        except (Broken, NotServing, AssertionError) as exc:  # the fake's waits assert
            run.result.problems.append(f"take-over on {service}: {str(exc).splitlines()[0]}")


# -- one store, then the table -----------------------------------------------------------


async def run_store(kind: str, args: argparse.Namespace, root: Path) -> Result:
    """Start the fakes and the replicas on a fresh store of `kind`; measure; stop them all."""
    result = Result(kind)
    names = services(args.rollbacks)
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeSlack())
        vercel = await stack.enter_async_context(FakeVercel())
        vercel.job_seconds = JOB_SECONDS
        for name in names:
            vercel.add_project(name)
        health = FakeHttpServer(200, "ok")
        stack.push_async_callback(health.close)
        await health.start()
        try:
            url = await stack.enter_async_context(database(kind, root / kind, args.pg_dsn))
            replicas = Replicas(
                root / kind,
                fake,
                url,
                config(vercel, health, names),
                extra_env={TOKEN_ENV: vercel.token},
            )
            await replicas.start()
        except (NotServing, ValueError, OSError, asyncpg.PostgresError) as exc:
            result.error = str(exc).strip().splitlines()[-1][:300] if str(exc) else repr(exc)
            return result
        try:
            run = Run(replicas, vercel, result)
            await clicks(run, names, args.clicks, args.in_flight)
            await takeovers(run, names, args.takeovers)
        except Broken as exc:
            result.problems.append(str(exc))
        finally:
            result.problems += await replicas.close()
    return result


def ms(value: float | None) -> str:
    """Format milliseconds, or '-'."""
    return "-" if value is None else f"{value:.1f}"


def table(results: list[Result]) -> str:
    """Format the results, a row per store."""
    header = (
        f"{'store':<11} {'clicks':>6} {'not 200':>7} {'>=3 s':>5} {'rollbacks':>9}"
        f" {'executions':>10} {'double':>6} {'refusals':>8} {'db down':>7} {'ack p50':>8}"
        f" {'ack p99':>8} {'ack max':>8} {'take-over med':>13} {'take-over max':>13}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        if r.error is not None:
            lines.append(f"{r.store:<11} did not start: {r.error}")
            continue
        median = f"{statistics.median(r.takeovers):.2f}" if r.takeovers else "-"
        longest = f"{max(r.takeovers):.2f}" if r.takeovers else "-"
        lines.append(
            f"{r.store:<11} {r.clicks:>6} {r.failed:>7} {r.slow:>5} {r.rollbacks:>9}"
            f" {r.executions:>10} {r.doubles:>6} {r.refusals:>8} {r.unreachable:>7}"
            f" {ms(r.ack_ms(50)):>8} {ms(r.ack_ms(99)):>8} {ms(r.ack_ms(100)):>8}"
            f" {median:>13} {longest:>13}"
        )
    return "\n".join(lines)


def ratios(results: list[Result]) -> str | None:
    """Return PostgreSQL's ack p50 and p99 as multiples of SQLite's, when both ran."""
    by = {r.store: r for r in results if r.error is None and r.acks}
    if SQLITE not in by or POSTGRESQL not in by:
        return None
    parts = []
    for q in (50, 99):
        pg, lite = by[POSTGRESQL].ack_ms(q), by[SQLITE].ack_ms(q)
        assert pg is not None and lite is not None
        parts.append(f"ack p{q} x{pg / lite:.2f}")
    return "postgresql / sqlite: " + ", ".join(parts)


async def bench(args: argparse.Namespace) -> int:
    """Run each store in turn; print the table; return the exit status."""
    kinds = [args.store] if args.store else list(STORES)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rollbot-replicas-") as tmp:
        results = [await run_store(kind, args, Path(tmp)) for kind in kinds]
    seconds = time.perf_counter() - started

    print(
        f"rollbot replicas: 3 replicas behind a round-robin proxy; {args.rollbacks} rollbacks x "
        f"{args.clicks} Approve clicks, {args.in_flight} in flight; {args.takeovers} take-overs "
        f"per store; {seconds:.0f} s"
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; the replicas, the proxy "
        "and the fakes of Slack and Vercel all on this machine"
    )
    print()
    print(table(results))
    print()
    if line := ratios(results):
        print(line)
    print(
        "refusals: losing clicks audited as refused; db down: clicks acked, then told the "
        "database could not be reached"
    )
    print("ack: ms from sending a click to its HTTP 200, through the proxy")
    print(
        "take-over: s from SIGKILL of the replica running a rollback to a survivor's "
        f"`resumed` (or `interrupted`) audit row; replicas sweep every {SWEEP_SECONDS:g} s"
    )
    problems = [f"{r.store}: {p}" for r in results for p in r.problems]
    problems += [
        f"{r.store}: {count} clicks answered {status}"
        for r in results
        for status, count in sorted(r.answers.items())
    ]
    problems += [f"{r.store}: {r.slow} clicks acked in 3 s or more" for r in results if r.slow]
    if problems:
        print("\nFAILED:")
        for problem in problems[:20]:
            print(f"  {problem}")
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more")
        return 1
    if any(r.error is not None for r in results):
        return 2
    return 0


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=STORES, help="one store only (default: both)")
    parser.add_argument("--rollbacks", type=int, default=50, help="default 50")
    parser.add_argument("--clicks", type=int, default=20, help="per rollback (default 20)")
    parser.add_argument(
        "--in-flight", type=int, default=50, help="clicks sent at a time (default 50)"
    )
    parser.add_argument("--takeovers", type=int, default=5, help="per store (default 5)")
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("ROLLBOT_TEST_PG_DSN", DEFAULT_PG_DSN),
        help="a PostgreSQL server to make the run's database on "
        "(default: $ROLLBOT_TEST_PG_DSN, else scripts/start-postgres.sh's)",
    )
    args = parser.parse_args()
    if min(args.rollbacks, args.clicks, args.in_flight) < 1 or args.takeovers < 0:
        parser.error("--rollbacks, --clicks and --in-flight must be at least 1")
    if args.takeovers > args.rollbacks:
        parser.error("--takeovers cannot be more than --rollbacks")
    try:
        sys.exit(asyncio.run(bench(args)))
    except KeyboardInterrupt:
        print("interrupted; everything was cleaned up", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
