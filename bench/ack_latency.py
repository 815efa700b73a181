"""Ack latency of `rollbot serve --http` under concurrent load, against GET /healthz.

Starts a FakeSlack and a real `rollbot serve --http` on 127.0.0.1 (temporary config
with one docker_compose service, temporary SQLite store; help and status never reach
the provider, so no Docker is needed). Sends the same number of requests at the same
concurrency for each kind, in rounds where the kinds take turns, and prints median, p95
and max round trips, their ratios to the /healthz baseline of the same run, the share
under Slack's 3-second ack deadline, and the bot's CPU time per request (Linux /proc;
it includes the work after the ack, up to the reply on the response_url).

Exits 1 when any ack took 3 s or more, any request failed or a reply never reached the
fake; 2 when the bot did not start; 130 when interrupted. The bot is always stopped.

    /tmp/venv/bin/python bench/ack_latency.py [--requests N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

# Run as a script from anywhere: the repository root holds `tests` (FakeSlack, SignedSlack).
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402 - after the sys.path line above
import yaml  # noqa: E402

from tests.e2e_helpers import CHANNEL, REQUESTER, backend_config  # noqa: E402
from tests.support.bot import ROLLBOT, SIGNING_SECRET, bot_environment  # noqa: E402
from tests.support.docker import free_port  # noqa: E402
from tests.support.slack import ACK_DEADLINE, FakeSlack, SignedSlack  # noqa: E402

CLIENT_TIMEOUT = 10.0  # longer than the deadline, so a slow ack is measured, not cut off
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
REPLY_TIMEOUT = 15.0  # for the bot's response_url posts after the last ack
WARMUP = 5  # requests per kind sent first and not counted (imports, template compilation)
ROUNDS = 4  # each kind's requests are sent in this many batches, kinds taking turns


class Outgoing(NamedTuple):
    """One request ready to send, and the status the bot must answer it with."""

    method: str
    url: str
    body: bytes | None
    headers: dict[str, str]
    expect: int
    answer: bytes = b""  # what the answer's body must hold (help is answered in the ack)


Request = Callable[[], Outgoing]
HELP_ANSWER = b"/rollback SERVICE"  # in the help, which rollbot answers within the ack


@dataclass
class Sample:
    """One request: its round trip in seconds, and what went wrong if anything did."""

    seconds: float
    error: str | None = None


@dataclass
class Kind:
    """One kind of request the bot gets, and how to build a fresh one."""

    name: str
    build: Request
    is_ack: bool
    replies: bool  # the bot answers it on the response_url after the ack


# --- the bot process ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bot:
    """A started bot process."""

    url: str
    pid: int
    log_path: Path


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeSlack,
    workdir: Path,
    config: dict[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    name: str = "rollbot",
    stop_timeout: float = STOP_TIMEOUT,
) -> AsyncIterator[Bot]:
    """Start `rollbot serve --http` on 127.0.0.1; always stop it (SIGTERM, then SIGKILL).

    `config` replaces the default one; `command` runs another server, `name`, in the same
    environment instead (it gets `--port PORT` appended and must serve /healthz).
    """
    config_path = workdir / "rollbot.yaml"
    # By default one docker_compose service; its check port is never probed by help or status.
    if config is None:
        config = backend_config("rollbot-bench", free_port())
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"{name}.log"
    port = free_port()
    env = bot_environment(config_path, workdir / "data" / "rollbot.db", fake) | dict(
        extra_env or {}
    )
    if command is None:
        args = [str(ROLLBOT), "serve", "--http", "--host", "127.0.0.1", "--port", str(port)]
    else:
        args = [*command, "--port", str(port)]
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *args,
            env=env,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only this script, which stops the bot
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, process, log_path, name)
        yield Bot(url, process.pid, log_path)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), stop_timeout)
            except TimeoutError:
                print(
                    f"{name} ignored SIGTERM for {stop_timeout:.0f} s; killing it", file=sys.stderr
                )
                process.kill()
                await process.wait()


async def wait_healthy(
    url: str, process: asyncio.subprocess.Process, log_path: Path, name: str = "rollbot"
) -> None:
    """Poll /healthz until it answers 200; fail if the process exits or the time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise StartError(f"{name} exited with {process.returncode}", log_path)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise StartError(f"{name} did not answer /healthz within {START_TIMEOUT:.0f} s", log_path)


class StartError(Exception):
    """The bot did not come up; carries the tail of its log."""

    def __init__(self, message: str, log_path: Path) -> None:
        super().__init__(f"{message}\n{log_tail(log_path)}")


def log_tail(log_path: Path, lines: int = 30) -> str:
    """Return the last lines of the bot's log."""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def log_problems(log_path: Path) -> list[str]:
    """Return the bot's log lines at warning level or above."""
    problems = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            level = json.loads(line).get("level", "")
        except (ValueError, AttributeError):
            level = "warning"  # not one of structlog's JSON lines: a traceback or a crash
        if level not in ("debug", "info"):
            problems.append(line)
    return problems


def cpu_seconds(pid: int) -> float | None:
    """CPU time of a process's live threads so far, in ns precision; None without /proc."""
    # /proc/PID/stat counts in 10 ms ticks, too coarse for a batch of /healthz requests;
    # schedstat is exact but per thread, and the bot's threads (aiosqlite's, the default
    # executor's) live as long as the process.
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        return None


# --- the requests ------------------------------------------------------------------------


def kinds(url: str, slack: SignedSlack) -> list[Kind]:
    """The baseline and the three kinds of Slack requests, each built fresh per send."""
    events = f"{url}/slack/events"

    def healthz() -> Outgoing:
        return Outgoing("GET", f"{url}/healthz", None, {}, 200)

    def command(text: str, answer: bytes = b"") -> Request:
        def build() -> Outgoing:
            fields = slack.command_fields(text, user=REQUESTER, channel=CHANNEL)
            body = urllib.parse.urlencode(fields).encode()
            return Outgoing("POST", events, body, slack.signed_headers(body), 200, answer)

        return build

    forgeries = itertools.count()

    def forged() -> Outgoing:
        fields = slack.command_fields("help", user=REQUESTER, channel=CHANNEL)
        body = urllib.parse.urlencode(fields).encode()
        # Rotate through the four ways a request fails verification.
        match next(forgeries) % 4:
            case 0:
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
            case 1:
                headers = slack.signed_headers(body, secret=SIGNING_SECRET + "x")
            case 2:
                headers = slack.signed_headers(body, timestamp=int(time.time()) - 6 * 60)
            case _:
                headers = slack.signed_headers(body)
                body = body.replace(b"help", b"status")
        return Outgoing("POST", events, body, headers, 401)

    return [
        Kind("GET /healthz (baseline)", healthz, is_ack=False, replies=False),
        # Help is answered in the ack itself: no reply follows on the response_url.
        Kind("/rollback help", command("help", HELP_ANSWER), is_ack=True, replies=False),
        Kind("/rollback status", command("status"), is_ack=True, replies=True),
        Kind("forged -> 401", forged, is_ack=True, replies=False),
    ]


async def send(session: aiohttp.ClientSession, build: Request) -> Sample:
    """Send one request; time from sending it to its status and body read."""
    out = build()  # building and signing is Slack's time, not the bot's
    start = time.perf_counter()
    try:
        async with session.request(
            out.method, out.url, data=out.body, headers=out.headers
        ) as response:
            body = await response.read()
            status = response.status
    except TimeoutError:
        return Sample(time.perf_counter() - start, f"no answer within {CLIENT_TIMEOUT:.0f} s")
    except aiohttp.ClientError as exc:
        return Sample(time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    if status != out.expect:
        return Sample(seconds, f"HTTP {status}, expected {out.expect}")
    if out.answer not in body:
        return Sample(seconds, f"the answer lacks {out.answer.decode()!r}")
    return Sample(seconds)


async def load(
    session: aiohttp.ClientSession,
    build: Request,
    requests: int,
    concurrency: int,
    samples: list[Sample],
) -> None:
    """Send `requests` requests with at most `concurrency` in flight, into `samples`."""
    numbers = iter(range(requests))

    async def worker() -> None:
        for _ in numbers:
            samples.append(await send(session, build))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))


def batches(total: int, rounds: int) -> list[int]:
    """Split `total` requests into at most `rounds` batches of nearly equal size."""
    rounds = min(rounds, total)
    return [total // rounds + (i < total % rounds) for i in range(rounds)]


def replies_due(kind: Kind, samples: list[Sample]) -> int:
    """How many response_url posts the bot owes for these requests: one per acked command."""
    return sum(s.error is None for s in samples) if kind.replies else 0


async def wait_replies(fake: FakeSlack, count: int) -> bool:
    """Wait until the fake holds `count` response_url posts in all; False on timeout."""
    try:
        await fake.wait_for(lambda: len(fake.responses) >= count, REPLY_TIMEOUT)
    except AssertionError:
        return False
    return True


# --- the report --------------------------------------------------------------------------


@dataclass
class Row:
    """What one kind measured, and its statistics in milliseconds."""

    kind: Kind
    samples: list[Sample] = field(default_factory=list)
    cpu_seconds: float | None = 0.0  # the bot's, over this kind's batches and their replies

    def add_cpu(self, before: float | None, after: float | None) -> None:
        """Count the bot's CPU time over one batch."""
        if self.cpu_seconds is None or before is None or after is None:
            self.cpu_seconds = None
        else:
            self.cpu_seconds += after - before

    @property
    def times(self) -> list[float]:
        """Round trips in ms, fastest first."""
        return sorted(s.seconds * 1000 for s in self.samples)

    @property
    def failures(self) -> list[Sample]:
        """Requests that got no answer or not the expected status."""
        return [s for s in self.samples if s.error is not None]

    @property
    def median(self) -> float:
        """Median round trip in ms."""
        return statistics.median(self.times)

    @property
    def p95(self) -> float:
        """95th percentile round trip in ms (nearest rank)."""
        times = self.times
        return times[math.ceil(0.95 * len(times)) - 1]

    @property
    def in_time(self) -> int:
        """Requests answered as expected within Slack's ack deadline."""
        return sum(s.error is None and s.seconds < ACK_DEADLINE for s in self.samples)

    @property
    def cpu_ms(self) -> str:
        """The bot's CPU ms per request, formatted."""
        if self.cpu_seconds is None:
            return "n/a"
        return f"{self.cpu_seconds * 1000 / len(self.samples):.2f}"


def table(rows: list[Row]) -> str:
    """Format the rows with ratios to the first (baseline) row."""
    base = rows[0]
    header = (
        f"{'request':<24} {'n':>5} {'fail':>4} {'median':>8} {'p95':>8} {'max':>8}"
        f" {'med/base':>9} {'p95/base':>9} {'ok < 3 s':>8} {'bot cpu':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.kind.name:<24} {len(row.samples):>5} {len(row.failures):>4}"
            f" {row.median:>8.2f} {row.p95:>8.2f} {row.times[-1]:>8.2f}"
            f" {row.median / base.median:>8.2f}x {row.p95 / base.p95:>8.2f}x"
            f" {row.in_time / len(row.samples):>8.1%} {row.cpu_ms:>8}"
        )
    lines.append(
        "times in ms: client round trip, request sent -> status and body read;"
        " bot cpu: ms per request, up to its reply"
    )
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------


async def bench(requests: int, concurrency: int, batch_timeout: float) -> int:
    """Run every kind against one bot; print the table; return the exit status."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="rollbot-bench-") as tmp:
        async with FakeSlack() as fake:
            try:
                async with running_bot(fake, Path(tmp)) as bot:
                    return await measure(fake, bot, requests, concurrency, batch_timeout)
            except StartError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2


async def measure(
    fake: FakeSlack, bot: Bot, requests: int, concurrency: int, batch_timeout: float
) -> int:
    """Warm up, send every kind's batches with their replies, print the report."""
    slack = SignedSlack(f"{bot.url}/slack/events", SIGNING_SECRET, fake)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=concurrency)
    problems: list[str] = []
    due = 0  # response_url posts the bot owes so far
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        rows = [Row(kind) for kind in kinds(bot.url, slack)]
        for row in rows:
            warmup: list[Sample] = []
            await load(session, row.kind.build, WARMUP, concurrency, warmup)
            due += replies_due(row.kind, warmup)
        if not await wait_replies(fake, due):
            problems.append(f"warm-up: replies missing after {REPLY_TIMEOUT:.0f} s")
        due = len(fake.responses)  # so a batch is not blamed for a missing warm-up reply
        stuck = False
        # Kinds take turns in rounds, so a change in the machine's load hits them alike.
        for size in batches(requests, ROUNDS):
            for row in rows:
                sent = len(row.samples)
                cpu_before = cpu_seconds(bot.pid)
                try:
                    await asyncio.wait_for(
                        load(session, row.kind.build, size, concurrency, row.samples),
                        batch_timeout,
                    )
                except TimeoutError:
                    problems.append(f"{row.kind.name}: batch not done in {batch_timeout:.0f} s")
                    stuck = True
                if all(sample.error for sample in row.samples[sent:]):
                    stuck = True  # not one expected answer: the bot is down or wedged
                # The next batch starts once this one's replies are in: CPU time is not mixed.
                due += replies_due(row.kind, row.samples[sent:])
                if not await wait_replies(fake, due):
                    problems.append(f"{row.kind.name}: replies missing after {REPLY_TIMEOUT:.0f} s")
                    stuck = True
                row.add_cpu(cpu_before, cpu_seconds(bot.pid))
                if stuck:
                    break  # more batches would only wait out their timeouts
            if stuck:
                break

    print(
        f"rollbot ack latency: {requests} requests per kind, concurrency {concurrency}, "
        f"in {ROUNDS} rounds of all kinds, {WARMUP} warm-up requests per kind not counted"
    )
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, bot and client on 127.0.0.1")
    print()
    if rows[0].samples:
        print(table([row for row in rows if row.samples]))
        print()
    acks = [row for row in rows if row.kind.is_ack]
    sent = sum(len(row.samples) for row in acks)
    in_time = sum(row.in_time for row in acks)
    print(
        f"Slack requests answered as expected in under {ACK_DEADLINE:.0f} s:"
        f" {in_time}/{sent} ({in_time / max(sent, 1):.1%})"
    )
    print(f"replies on response_url: {len(fake.responses)}/{due} (warm-up included)")
    for row in rows:
        errors = Counter(s.error for s in row.samples if s.error is not None)
        problems += [f"{row.kind.name}: {n} x {error}" for error, n in errors.most_common()]
        late = sum(s.error is None and s.seconds >= ACK_DEADLINE for s in row.samples)
        if late and row.kind.is_ack:
            problems.append(f"{row.kind.name}: {late} answered in {ACK_DEADLINE:.0f} s or more")
    logged = log_problems(bot.log_path)
    print(f"bot log lines at warning or above: {len(logged)}")
    for line in logged[:5]:
        print(f"  {line[:300]}")
    if problems:
        print("\nFAILED:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    return 0


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per kind (default 200)")
    parser.add_argument("--concurrency", type=int, default=10, help="in flight (default 10)")
    parser.add_argument(
        "--batch-timeout",
        type=float,
        default=30.0,
        help=f"seconds for one kind's share of a round (default 30; {ROUNDS} rounds)",
    )
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    try:
        sys.exit(asyncio.run(bench(args.requests, args.concurrency, args.batch_timeout)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; the bot was stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
