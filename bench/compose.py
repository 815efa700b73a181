"""Approve click -> Compose container on target and verified, against a manual swap.

Starts, in one run on the Docker engine at DOCKER_HOST, a FakeSlack, a real `rollbot serve
--http` (temporary config: one docker_compose service verified over HTTP, temporary SQLite
store) and two compose-like containers of a tiny busybox image that serves /health naming
its tag. Then, round after round, the rows taking turns:

    manual     `docker rm -f` + `docker run` of the other tag, then /health polled until it
               names that tag (what an operator would type)
    rollbot    `/rollback backend TAG`, severity confirmed, then Approve clicked: timed to the
               engine's start event of a container on TAG (click -> container), to the bot
               recording its checks passed, and to the fake receiving the thread's
               "Verification passed" (click -> verified)
    429        the same, with the fake answering every third chat.* call 429 + Retry-After: 1
               from the click on (Slack under load)

Each swap goes to the tag the container does not run. The provider's settle time (how long a
new container without a HEALTHCHECK must keep running) is subtracted from the last two and
printed apart. Exits 1 when a swap or a verification did not happen, 2 when the bot did not
start, 130 when interrupted. The bot is stopped and the containers removed.

    .venv/bin/python bench/compose.py [--quick] [--rounds N] [--settle S] [--profile PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the repository root holds `bench`, `playground` and `tests`.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiodocker  # noqa: E402 - after the sys.path line above
from aiodocker.exceptions import DockerError  # noqa: E402

from bench.ack import profiled  # noqa: E402
from bench.ack_latency import StartError, log_problems, running_bot  # noqa: E402
from bench.compose_swaps import (  # noqa: E402
    DEMO,
    LIMITED_EVERY,
    REPOSITORY,
    SERVICE,
    TAGS,
    Broken,
    manual_swap,
    recorded,
    rollbot_swap,
    running_tag,
    start_events,
)
from playground import images  # noqa: E402
from playground.world import free_port  # noqa: E402
from providers.docker_compose import DockerComposeSettings  # noqa: E402
from tests.e2e_helpers import service_config  # noqa: E402
from tests.support.bot import SIGNING_SECRET  # noqa: E402
from tests.support.slack import FakeSlack, SignedSlack  # noqa: E402

QUIET_TIMEOUT = 30.0
DEFAULT_SETTLE = DockerComposeSettings.model_fields["settle_seconds"].default


@dataclass
class Row:
    """One row's times in seconds."""

    times: list[float] = field(default_factory=list)

    def q(self, quantile: float) -> float:
        """The quantile (nearest rank)."""
        ordered = sorted(self.times)
        return ordered[max(math.ceil(quantile * len(ordered)) - 1, 0)]


def ensure_images(host: str, workdir: Path) -> None:
    """Import the tests' backend images (no registry) unless the engine has them."""
    refs = [DEMO.ref(REPOSITORY, tag) for tag in DEMO.backend_tags]
    if all(images.image_exists(host, ref) for ref in refs):
        return
    if reason := images.can_build():
        raise Broken(f"cannot build the backend images: {reason}")
    images.import_versions(host, workdir, REPOSITORY, DEMO.backend_tags)


def config(host: str, project: str, port: int, settle: float) -> dict[str, Any]:
    """One docker_compose service checked over HTTP; runtime settings as deployed."""
    provider = {
        "provider": "docker_compose",
        "project": project,
        "service": SERVICE,
        "docker_host": host,
        "settle_seconds": settle,
    }
    url = f"http://127.0.0.1:{port}/health"
    settings = service_config(SERVICE, provider, url, body_contains='"status":"ok"')
    del settings["runtime"]  # the tests' quick verification interval; the defaults here
    return settings


@dataclass
class World:
    """What one run measures on: the engine, the fake, the bot's store and both projects."""

    host: str
    client: aiodocker.Docker
    fake: FakeSlack
    slack: SignedSlack
    starts: list[tuple[float, str]]
    store: Path
    project: str  # rollbot's compose project
    manual: str  # the manual sequence's
    manual_port: int
    settle: float


ROWS = {
    "manual": "manual: rm -f, run, /health",
    "container": "rollbot: click -> container",
    "checked": "rollbot: click -> checks passed",
    "verified": "rollbot: click -> verified",
    "429 container": "429 1/3: click -> container",
    "429 checked": "429 1/3: click -> checks passed",
    "429 verified": "429 1/3: click -> verified",
}


async def measure(world: World, rounds: int, rows: dict[str, Row]) -> None:
    """Swap back and forth, rows taking turns; raise Broken when a swap goes wrong."""
    tag = {"manual": 0, "rollbot": 0}  # index into TAGS of the next target
    for n in range(rounds):
        rows["manual"].times.append(
            await manual_swap(world.host, world.manual, world.manual_port, TAGS[tag["manual"]])
        )
        tag["manual"] ^= 1
        # The 429 row goes first every other round, so a drift in the machine's load hits both.
        for limited in (False, True) if n % 2 == 0 else (True, False):
            target = TAGS[tag["rollbot"]]
            to_container, to_verified, clicked = await rollbot_swap(
                world.slack, world.fake, world.starts, target, limited
            )
            to_checked = await recorded(world.store, clicked)
            if not (await running_tag(world.client, world.project)).endswith(f":{target}"):
                raise Broken(f"the container does not run {target} after its rollback")
            tag["rollbot"] ^= 1
            prefix = "429 " if limited else ""
            rows[prefix + "container"].times.append(to_container)
            rows[prefix + "checked"].times.append(to_checked - world.settle)
            rows[prefix + "verified"].times.append(to_verified - world.settle)
            # What the rollback still posts (monitoring, the report) stays out of the next row.
            await quiet(world.fake)


async def remove_containers(client: aiodocker.Docker, projects: list[str]) -> None:
    """Remove the bench's containers; say so, rather than fail, when the engine is gone."""
    try:
        await images.remove_projects(client, projects)
    except DockerError as exc:
        print(f"could not remove the containers of {', '.join(projects)}: {exc}", file=sys.stderr)


async def quiet(fake: FakeSlack, seconds: float = 0.5) -> None:
    """Wait until the fake has had no Web API call for `seconds` (at most QUIET_TIMEOUT)."""
    deadline = time.monotonic() + QUIET_TIMEOUT
    while time.monotonic() < deadline:
        if not fake.calls or time.monotonic() - fake.calls[-1].time >= seconds:
            return
        await asyncio.sleep(0.05)


async def bench(rounds: int, settle: float, profile: Path | None) -> int:
    """Set up the engine, the fake and the bot; measure; print; return the exit status."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    host = os.environ.get("DOCKER_HOST")
    if not host:
        print("error: DOCKER_HOST is not set (scripts/start-dockerd.sh)", file=sys.stderr)
        return 1
    suffix = os.urandom(4).hex()
    project, manual = f"rbbench{suffix}", f"rbbenchm{suffix}"
    rows = {key: Row() for key in ROWS}
    problems: list[str] = []
    logged: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rollbot-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(aiodocker.Docker(url=host))
            stack.push_async_callback(remove_containers, client, [project, manual])
            port, manual_port = free_port(), free_port()
            try:
                await asyncio.to_thread(ensure_images, host, Path(tmp))
                body = images.compose_config(
                    project, SERVICE, DEMO.ref(REPOSITORY, TAGS[1]), {"PORT": str(port)}
                )
                container = await client.containers.create(body, name=f"{project}-{SERVICE}-1")
                await container.start()
                await manual_swap(host, manual, manual_port, TAGS[1])
            except (Broken, DockerError, images.DockerCommandError) as exc:
                print(f"error: the engine at {host}: {exc}", file=sys.stderr)
                return 1
            starts = await stack.enter_async_context(start_events(client, project))
            fake = await stack.enter_async_context(FakeSlack())
            try:
                bot = await stack.enter_async_context(
                    running_bot(
                        fake,
                        Path(tmp),
                        config(host, project, port, settle),
                        {"DOCKER_HOST": host},
                        command=None if profile is None else profiled(profile),
                    )
                )
            except StartError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            slack = SignedSlack(f"{bot.url}/slack/events", SIGNING_SECRET, fake)
            store = Path(tmp) / "data" / "rollbot.db"
            world = World(
                host, client, fake, slack, starts, store, project, manual, manual_port, settle
            )
            try:
                await measure(world, rounds, rows)
            except Broken as exc:
                problems.append(str(exc))
            logged = log_problems(bot.log_path)
    report(rows, rounds, settle, problems, logged, profile)
    return 1 if problems else 0


def report(
    rows: dict[str, Row],
    rounds: int,
    settle: float,
    problems: list[str],
    logged: list[str],
    profile: Path | None,
) -> None:
    """Print the table, the settle time and what went wrong."""
    print(
        f"Compose rollback vs a manual swap: {rounds} rounds, rows taking turns, one engine"
        f" ({os.environ.get('DOCKER_HOST')})"
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs;"
        f" {REPOSITORY} {' <-> '.join(TAGS)}, host network"
    )
    print()
    header = (
        f"{'row':<31} {'n':>2} {'p50 s':>6} {'max s':>6} {'manual p50':>10}"
        f" {'x manual':>8} {'x no 429':>8}"
    )
    print(header)
    print("-" * len(header))
    manual = rows["manual"].q(0.5) if rows["manual"].times else None
    for key, row in rows.items():
        if not row.times:
            continue
        plain = rows[key.removeprefix("429 ")] if key.startswith("429 ") else None
        x_manual = f"{row.q(0.5) / manual:>7.2f}x" if manual else f"{'':>8}"
        x_plain = f"{row.q(0.5) / plain.q(0.5):>7.2f}x" if plain and plain.times else ""
        print(
            f"{ROWS[key]:<31} {len(row.times):>2} {row.q(0.5):>6.3f} {max(row.times):>6.3f}"
            f" {manual or 0:>10.3f} {x_manual} {x_plain}"
        )
    print(
        f"\nsettle time: {settle:g} s (docker_compose settle_seconds, default"
        f" {DEFAULT_SETTLE:g} s), subtracted from 'checks passed' and 'verified'"
    )
    print(
        "container: the engine's start event of the new container; checks passed: the bot's"
        " verification record; verified: the fake receiving its post in the thread"
    )
    print(
        f"429 1/3: every {LIMITED_EVERY}rd chat.* call answered 429 + Retry-After: 1 from the"
        " click on; targets: verified <= 1.5x manual, 429 <= 1.5x no 429"
    )
    if logged:
        print(f"\nrollbot log lines at warning or above: {len(logged)}")
        for line in logged[:5]:
            print(f"  {line[:300]}")
    if profile is not None:
        print(f"\nrollbot ran under cProfile (its times are inflated): python -m pstats {profile}")
    if problems:
        print("\nFAILED:")
        for problem in problems:
            print(f"  {problem}")


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="swaps per row (5)")
    parser.add_argument("--quick", action="store_true", help="--rounds 2")
    parser.add_argument(
        "--settle",
        type=float,
        default=DEFAULT_SETTLE,
        help=f"the provider's settle_seconds, subtracted from the rows ({DEFAULT_SETTLE:g})",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="PATH", help="run rollbot under cProfile, stats to PATH"
    )
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    if rounds < 1 or args.settle < 0:
        parser.error("--rounds must be at least 1 and --settle at least 0")
    try:
        sys.exit(asyncio.run(bench(rounds, args.settle, args.profile)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; the bot was stopped and the containers removed", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
