"""Ack latency of `rollbot serve --http` against a bare slack-bolt AsyncApp that only acks.

Starts, in one run, a FakeSlack, a fake Vercel, a real `rollbot serve --http` (temporary
config: one Vercel project per service, temporary SQLite store) and `bench/bare_bolt.py`
(a bare Bolt AsyncApp served by aiohttp, one process too, same signing secret, same fake).
Both get the same signed requests, the targets and kinds taking turns batch by batch:

    help    `/rollback help`, a slash command
    click   a block_actions click on Approve for a rollback id that does not exist; rollbot
            acks, then answers the clicker privately that there is no such rollback

at concurrency 1, 10 and 50, then at 10 again with 20 rollbacks in flight on rollbot (their
Vercel alias jobs never finish while measured). Prints p50/p99/req/s per target and the
ratios rollbot/bare, and both processes' RSS idle and after the load.

Exits 1 when any ack took 3 s or more, any request failed, a rollback did not start or a
reply never reached the fake; 2 when a server did not start; 130 when interrupted.

    .venv/bin/python bench/ack.py [--quick] [--requests N] [--profile PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the repository root holds `bench` and `tests`.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402 - after the sys.path line above

from bench.ack_latency import (  # noqa: E402
    CLIENT_TIMEOUT,
    HELP_ANSWER,
    Bot,
    Outgoing,
    Request,
    Sample,
    StartError,
    batches,
    cpu_seconds,
    load,
    log_problems,
    running_bot,
    wait_replies,
)
from bench.replicas import APPROVERS, ISSUE, REQUESTER, TARGET, TOKEN_ENV, config  # noqa: E402
from bot.models import ACTIVE_STATES  # noqa: E402
from bot.store.sqlite import SQLiteStore  # noqa: E402
from handlers.ids import ActionId  # noqa: E402
from handlers.server import CANCEL_SECONDS, DRAIN_SECONDS, FLUSH_SECONDS  # noqa: E402
from playground.vercel_api import FakeVercel  # noqa: E402
from tests.e2e_helpers import CHANNEL, cards, has_action  # noqa: E402
from tests.support.bot import ROLLBOT, SIGNING_SECRET  # noqa: E402
from tests.support.services import FakeHttpServer  # noqa: E402
from tests.support.slack import ACK_DEADLINE, APP_ID, FakeSlack, SignedSlack, text_of  # noqa: E402

BARE = [sys.executable, str(Path(__file__).with_name("bare_bolt.py"))]
CONCURRENCY = (1, 10, 50)
KINDS = ("help", "click")
IN_FLIGHT = 20  # rollbacks running on rollbot during the last row
HELD = 50  # rollbacks running on rollbot when its memory is read at the end
IN_FLIGHT_CONCURRENCY = 10
ROUNDS = 4
WARMUP = 5
SLOW_JOB_SECONDS = 3600.0  # the in-flight rollbacks' alias jobs: never done while measured
MISSING_ID = "rb-00000000"  # a well-formed rollback id no rollback has
SETUP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Only:
    """Which rows to run: the idle rows' concurrencies, and the in-flight row or not."""

    concurrency: tuple[int, ...] = CONCURRENCY
    in_flight: bool = True
    kinds: tuple[str, ...] = KINDS


@dataclass
class Cell:
    """One target's samples for one kind at one concurrency, and its wall time."""

    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    cpu: float | None = 0.0  # the server's CPU seconds over these batches (and replies)

    def add_cpu(self, before: float | None, after: float | None) -> None:
        """Count the server's CPU time over one batch."""
        if self.cpu is None or before is None or after is None:
            self.cpu = None
        else:
            self.cpu += after - before

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds per request; nan without /proc."""
        return math.nan if self.cpu is None else self.cpu * 1000 / max(len(self.samples), 1)

    def q(self, quantile: float) -> float:
        """The quantile of the round trips in ms (nearest rank)."""
        times = sorted(s.seconds * 1000 for s in self.samples)
        return times[max(math.ceil(quantile * len(times)) - 1, 0)]

    @property
    def rate(self) -> float:
        """Requests per second over this cell's batches."""
        return len(self.samples) / self.wall if self.wall else 0.0


@dataclass
class Line:
    """A row of the table: a kind at a concurrency, rollbot's cell and the bare app's."""

    label: str
    kind: str
    concurrency: int
    cells: dict[str, Cell] = field(default_factory=lambda: {"rollbot": Cell(), "bare": Cell()})


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB; None without /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def builders(
    url: str, slack: SignedSlack, fake: FakeSlack, answer: bytes = b""
) -> dict[str, Request]:
    """How to build a fresh signed help command and Approve click for the server at `url`.

    `answer`: what the help's ack must hold (rollbot answers help in the ack).
    """
    events = f"{url}/slack/events"

    def signed(fields: dict[str, str], answer: bytes = b"") -> Outgoing:
        body = urllib.parse.urlencode(fields).encode()
        return Outgoing("POST", events, body, slack.signed_headers(body), 200, answer)

    def help_command() -> Outgoing:
        return signed(slack.command_fields("help", user=REQUESTER, channel=CHANNEL), answer)

    def click() -> Outgoing:
        user = APPROVERS[0]
        ts = f"{time.time():.6f}"
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": "T_ROLLBOT"},
            "api_app_id": APP_ID,
            "trigger_id": fake.new_trigger_id(user),
            "team": {"id": "T_ROLLBOT"},
            "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL},
            "channel": {"id": CHANNEL},
            "response_url": fake.new_response_url(channel=CHANNEL, user=user, message_ts=ts),
            "actions": [
                {
                    "type": "button",
                    "action_id": ActionId.APPROVE,
                    "block_id": f"rollbot_actions:{MISSING_ID}",
                    "value": MISSING_ID,
                    "action_ts": ts,
                }
            ],
        }
        return signed({"payload": json.dumps(payload)})

    return {"help": help_command, "click": click}


async def start_in_flight(slack: SignedSlack, fake: FakeSlack, names: list[str]) -> None:
    """Request, confirm and approve one rollback per service; their alias jobs never end."""

    async def one(service: str) -> None:
        channel = f"C_{service.upper()}"
        status, _ = await slack.command(f"{service} {TARGET}", user=REQUESTER, channel=channel)
        if status != 200:
            raise Broken(f"{service}: the request was answered {status}")
        card = await fake.wait_for(lambda: (found := cards(fake, channel)) and found[-1])
        at = (card["channel"], card["ts"])
        # The card's place is stored a moment after it is posted: pick again until it shows.
        for _ in range(20):
            await slack.select(*at, ActionId.ISSUE_SELECT, ISSUE, user=REQUESTER)
            with contextlib.suppress(AssertionError):
                await fake.wait_for(lambda: "Severity:" in text_of(fake.message(*at)), 0.5)
                break
        await slack.click(*at, ActionId.CONFIRM_SEVERITY, user=REQUESTER)
        await fake.wait_for(lambda: has_action(fake.message(*at), ActionId.APPROVE))
        await slack.click(*at, ActionId.APPROVE, user=APPROVERS[0])

    gate = asyncio.Semaphore(5)

    async def gated(service: str) -> None:
        async with gate:
            await one(service)

    await asyncio.gather(*(gated(s) for s in names))


async def start_running(slack: SignedSlack, fake: FakeSlack, store: Path, names: list[str]) -> None:
    """Start a rollback for each service of `names` not running one; wait until all run."""
    idle = [name for name in names if not await running(store, [name])]
    await asyncio.wait_for(start_in_flight(slack, fake, idle), SETUP_TIMEOUT)
    deadline = time.monotonic() + 30
    while (started := await running(store, names)) < len(names):
        if time.monotonic() > deadline:
            raise Broken(f"only {started} of {len(names)} rollbacks started running")
        await asyncio.sleep(0.2)


class Broken(Exception):
    """A step of the setup did not go as it must."""


def slow_config(vercel: FakeVercel, health: FakeHttpServer, names: list[str]) -> dict[str, Any]:
    """The replicas bench's config, but polling Vercel as deployed: every 3 s, for an hour."""
    settings = config(vercel, health, names)
    for service in settings["services"].values():
        provider = service["environments"]["production"]["provider"]
        del provider["poll_interval_seconds"]  # the fake's 0.05 s is for quick tests
        provider["promote_timeout_seconds"] = SLOW_JOB_SECONDS
    return settings


async def running(store: Path, names: list[str]) -> int:
    """How many of the services' latest rollbacks are running (or verifying) in the store."""
    async with SQLiteStore(str(store)) as reader:
        found = [await reader.find(service=name, limit=1) for name in names]
    return sum(bool(rbs) and rbs[0].state in ACTIVE_STATES for rbs in found)


def profiled(path: Path) -> list[str]:
    """`rollbot serve --http` under cProfile, its stats written to `path` when it stops."""
    serve = [str(ROLLBOT), "serve", "--http", "--host", "127.0.0.1"]
    return [sys.executable, "-m", "cProfile", "-o", str(path), *serve]


async def bench(requests: int, profile: Path | None, only: Only) -> int:
    """Start the fakes, rollbot and the bare app; measure; print; return the exit status."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    names = [f"svc{n:03d}" for n in range(1, HELD + 1)]
    with tempfile.TemporaryDirectory(prefix="rollbot-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            fake = await stack.enter_async_context(FakeSlack())
            vercel = await stack.enter_async_context(FakeVercel())
            for name in names:
                vercel.add_project(name)
            health = FakeHttpServer(200, "ok")
            stack.push_async_callback(health.close)
            await health.start()
            try:
                (Path(tmp) / "rollbot").mkdir()
                (Path(tmp) / "bare").mkdir()
                bot = await stack.enter_async_context(
                    running_bot(
                        fake,
                        Path(tmp) / "rollbot",
                        slow_config(vercel, health, names),
                        {TOKEN_ENV: vercel.token},
                        command=None if profile is None else profiled(profile),
                        # It drains, then cancels, the rollbacks still running when it stops.
                        stop_timeout=DRAIN_SECONDS + CANCEL_SECONDS + FLUSH_SECONDS + 5,
                    )
                )
                bare = await stack.enter_async_context(
                    running_bot(fake, Path(tmp) / "bare", command=BARE, name="bare_bolt")
                )
            except StartError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            servers = {"rollbot": bot, "bare": bare}
            status = await measure(fake, vercel, servers, names, requests, only)
    print(f"(rollbot stopped; it drained its running rollbacks for up to {DRAIN_SECONDS:.0f} s)")
    if profile is not None:
        print(f"\nrollbot ran under cProfile (its times are inflated): python -m pstats {profile}")
    return status


async def measure(
    fake: FakeSlack,
    vercel: FakeVercel,
    servers: dict[str, Bot],
    names: list[str],
    requests: int,
    only: Only,
) -> int:
    """Send every row's batches, targets taking turns; print the report."""
    rollbot = servers["rollbot"]
    slack = SignedSlack(f"{rollbot.url}/slack/events", SIGNING_SECRET, fake)
    slack.ack_timeout = CLIENT_TIMEOUT
    build = {
        target: builders(bot.url, slack, fake, HELP_ANSWER if target == "rollbot" else b"")
        for target, bot in servers.items()
    }
    idle = {target: rss_mb(bot.pid) for target, bot in servers.items()}
    problems: list[str] = []
    lines = [Line("idle", kind, c) for c in only.concurrency for kind in only.kinds]
    busy = [Line(f"{IN_FLIGHT} in flight", kind, IN_FLIGHT_CONCURRENCY) for kind in only.kinds]
    if not only.in_flight:
        busy = []
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=max(CONCURRENCY))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for target in servers:
            for kind in ("help", "click"):
                await load(session, build[target][kind], WARMUP, 5, [])
        # Only the clicks are answered on a response_url; help is answered in its ack.
        if not await wait_replies(fake, WARMUP):
            problems.append("warm-up: rollbot's replies missing")
        due = len(fake.responses)

        async def run(rows: list[Line]) -> None:
            nonlocal due
            # Rows and targets take turns, so a change in the machine's load hits all alike;
            # the target that goes first alternates from round to round.
            for n in range(ROUNDS):
                for line in rows:
                    # Each batch holds at least `concurrency` requests, so that many are in flight.
                    size = batches(max(requests, ROUNDS * line.concurrency), ROUNDS)[n]
                    order = list(servers) if n % 2 == 0 else list(reversed(servers))
                    for target in order:
                        cell = line.cells[target]
                        sent = len(cell.samples)
                        cpu_before = cpu_seconds(servers[target].pid)
                        # The bench's own garbage collections would stall whichever target
                        # is being timed: they run between batches, never within one.
                        gc.collect()
                        gc.disable()
                        start = time.perf_counter()
                        try:
                            await load(
                                session,
                                build[target][line.kind],
                                size,
                                line.concurrency,
                                cell.samples,
                            )
                        finally:
                            gc.enable()
                        cell.wall += time.perf_counter() - start
                        if target == "rollbot" and line.kind == "click":
                            # Its replies are in before the next batch: their work is not mixed.
                            due += sum(s.error is None for s in cell.samples[sent:])
                            if not await wait_replies(fake, due):
                                problems.append(f"{line.label} {line.kind}: replies missing")
                                due = len(fake.responses)
                        cell.add_cpu(cpu_before, cpu_seconds(servers[target].pid))

        await run(lines)
        in_flight_note = ""
        held: float | None = None
        if busy:
            store = rollbot.log_path.parent / "data" / "rollbot.db"
            try:
                vercel.job_seconds = SLOW_JOB_SECONDS
                await start_running(slack, fake, store, names[:IN_FLIGHT])
                due = len(fake.responses)
                await run(busy)
                ran = await running(store, names)
                if ran < IN_FLIGHT:
                    raise Broken(f"only {ran} of {IN_FLIGHT} still running at the row's end")
                in_flight_note = (
                    f"{ran} rollbacks running (Vercel job polled every 3 s) from the row's"
                    f" start to its end; {len(vercel.routed('rollback'))} Vercel rollback calls"
                )
            except (Broken, AssertionError, TimeoutError) as exc:
                problems.append(f"{IN_FLIGHT} in flight not measured: {str(exc).splitlines()[0]}")
                busy = []
    after = {target: rss_mb(bot.pid) for target, bot in servers.items()}
    if busy:
        try:
            await start_running(slack, fake, store, names)
            held = rss_mb(rollbot.pid)
        except (Broken, AssertionError, TimeoutError) as exc:
            problems.append(f"{HELD} in flight not reached: {str(exc).splitlines()[0]}")

    print(
        f"ack latency, rollbot vs a bare slack-bolt AsyncApp: {requests} requests per cell"
        f" (at least {ROUNDS} x concurrency), {ROUNDS} rounds, targets taking turns,"
        f" {WARMUP} warm-up requests not counted"
    )
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, all on 127.0.0.1")
    print(f"click: Approve on {MISSING_ID}, a rollback that does not exist (a private refusal)")
    print()
    print(table(lines + busy))
    if not busy and only.in_flight:
        print(f"{IN_FLIGHT} in flight: not measured (see below)")
    elif in_flight_note:
        print(f"{IN_FLIGHT} in flight: {in_flight_note} on rollbot during that row")
    print()
    for target in servers:
        print(
            f"RSS {target:<8} idle {fmt_mb(idle[target])}, after the load {fmt_mb(after[target])}"
            + (
                f", with {HELD} rollbacks in flight {fmt_mb(held)}"
                if target == "rollbot" and held
                else ""
            )
        )
    for line in lines + busy:
        for target, cell in line.cells.items():
            errors = Counter(s.error for s in cell.samples if s.error is not None)
            late = sum(s.error is None and s.seconds >= ACK_DEADLINE for s in cell.samples)
            where = f"{target} {line.label} {line.kind} c={line.concurrency}"
            problems += [f"{where}: {n} x {error}" for error, n in errors.most_common()]
            if late:
                problems.append(f"{where}: {late} acked in {ACK_DEADLINE:.0f} s or more")
    for target, bot in servers.items():
        logged = log_problems(bot.log_path) if target == "rollbot" else []
        if logged:
            print(f"{target} log lines at warning or above: {len(logged)}")
            for entry in logged[:5]:
                print(f"  {entry[:300]}")
    if problems:
        print("\nFAILED:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    return 0


def fmt_mb(value: float | None) -> str:
    """MiB, or n/a without /proc."""
    return "n/a" if value is None else f"{value:.1f} MiB"


def table(lines: list[Line]) -> str:
    """p50, p99 and req/s of both targets per row, and the ratios rollbot/bare."""
    header = (
        f"{'row':<14} {'kind':<5} {'conc':>4} | {'rollbot p50':>11} {'p99':>7} {'req/s':>6}"
        f" | {'bare p50':>8} {'p99':>7} {'req/s':>6} | {'p50 x':>6} {'p99 x':>6} {'req/s x':>7}"
        f" | {'cpu ms':>6} {'bare':>5} {'x':>6}"
    )
    out = [header, "-" * len(header)]
    for line in lines:
        r, b = line.cells["rollbot"], line.cells["bare"]
        if not r.samples or not b.samples:
            continue
        out.append(
            f"{line.label:<14} {line.kind:<5} {line.concurrency:>4}"
            f" | {r.q(0.5):>11.1f} {r.q(0.99):>7.1f} {r.rate:>6.0f}"
            f" | {b.q(0.5):>8.1f} {b.q(0.99):>7.1f} {b.rate:>6.0f}"
            f" | {r.q(0.5) / b.q(0.5):>5.2f}x {r.q(0.99) / b.q(0.99):>5.2f}x"
            f" {r.rate / b.rate:>6.2f}x"
            f" | {r.cpu_ms:>6.2f} {b.cpu_ms:>5.2f} {r.cpu_ms / b.cpu_ms:>5.2f}x"
        )
    out.append(
        "ms from sending a request to its HTTP 200 read; req/s: requests over the batches'"
        " wall time; x: rollbot / bare; cpu ms: each server's CPU time per request (all its"
        " threads, the work after the ack included)"
    )
    return "\n".join(out)


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=200, help="per cell, at least 4 x concurrency (200)"
    )
    parser.add_argument("--quick", action="store_true", help="--requests 20")
    parser.add_argument(
        "--profile", type=Path, metavar="PATH", help="run rollbot under cProfile, stats to PATH"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        metavar="N",
        help="only this idle concurrency (repeatable; default 1, 10 and 50)",
    )
    parser.add_argument("--no-in-flight", action="store_true", help="skip the in-flight row")
    parser.add_argument(
        "--kind", choices=KINDS, action="append", help="only this kind (repeatable; default both)"
    )
    args = parser.parse_args()
    only = Only(
        tuple(args.concurrency or CONCURRENCY), not args.no_in_flight, tuple(args.kind or KINDS)
    )
    requests = 20 if args.quick else args.requests
    if requests < 1:
        parser.error("--requests must be at least 1")
    try:
        sys.exit(asyncio.run(bench(requests, args.profile, only)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; the servers were stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
