"""The two ways the Compose bench swaps its container: by hand, and by an Approve click.

By hand is what an operator types: `docker rm -f`, `docker run` of the other tag, then
/health polled until it names that tag. The click goes through rollbot: a signed
`/rollback`, the severity confirmed, then Approve, timed to the engine's start event of the
new container and to the fake Slack receiving "Verification passed" in the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp

from bot.models import FINAL_STATES, State
from bot.store.sqlite import SQLiteStore
from handlers.ids import ActionId
from playground import images
from tests.e2e_helpers import APPROVER, CHANNEL, REQUESTER, cards, has_action
from tests.support.docker import DemoImages
from tests.support.slack import FakeSlack, SignedSlack, text_of

DEMO = DemoImages()
REPOSITORY = DEMO.backend  # the tests' image: every tag serves /health naming itself
TAGS = ("v1.2.3", "v1.2.4")  # the container starts on the second; swaps alternate
SERVICE = "backend"
ISSUE = "critical_bug"
HEALTH_POLL_SECONDS = 0.05  # the manual sequence's poll of /health
LIMITED_EVERY = 3  # the 429 rows: every third chat.* call is refused
STEP_TIMEOUT = 60.0
PASSED = "Verification passed"


class Broken(Exception):
    """A swap did not happen as it must."""


async def docker(host: str, *args: str) -> None:
    """Run the docker CLI without blocking the loop; raise Broken on failure."""
    process = await asyncio.create_subprocess_exec(
        "docker",
        "-H",
        host,
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise Broken(f"docker {' '.join(args)}: {stderr.decode(errors='replace').strip()}")


def run_args(project: str, name: str, port: int, tag: str) -> list[str]:
    """`docker run` of the backend as compose would run it (host network, init)."""
    return [
        "run", "-d", "--name", name, "--init", "--network", "host", "-e", f"PORT={port}",
        "--label", f"{images.PROJECT_LABEL}={project}",
        "--label", f"{images.SERVICE_LABEL}={SERVICE}",
        DEMO.ref(REPOSITORY, tag),
    ]  # fmt: skip


async def manual_swap(host: str, project: str, port: int, tag: str) -> float:
    """Time `docker rm -f`, `docker run` and polling /health until it names `tag`."""
    name = f"{project}-{SERVICE}-1"
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.monotonic()
        await docker(host, "rm", "-f", name)
        await docker(host, *run_args(project, name, port, tag))
        while time.monotonic() - start < STEP_TIMEOUT:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"http://127.0.0.1:{port}/health") as response:
                    if response.status == 200 and tag in await response.text():
                        return time.monotonic() - start
            await asyncio.sleep(HEALTH_POLL_SECONDS)
    raise Broken(f"manual: /health did not name {tag} within {STEP_TIMEOUT:.0f} s")


@contextlib.asynccontextmanager
async def start_events(
    client: aiodocker.Docker, project: str
) -> AsyncIterator[list[tuple[float, str]]]:
    """Collect (monotonic time, image) of every container start in `project`, as they come."""
    starts: list[tuple[float, str]] = []
    filters = {
        "type": ["container"],
        "event": ["start"],
        "label": [f"{images.PROJECT_LABEL}={project}"],
    }
    subscriber = client.events.subscribe(filters=json.dumps(filters))

    async def collect() -> None:
        while (event := await subscriber.get()) is not None:
            starts.append((time.monotonic(), event["Actor"]["Attributes"].get("image", "")))

    task = asyncio.create_task(collect())
    try:
        yield starts
    finally:
        task.cancel()
        await client.events.stop()


async def wait(what: str, found: Callable[[], Any], fake: FakeSlack) -> Any:
    """Poll until `found()` is truthy; raise Broken naming `what` after STEP_TIMEOUT."""
    try:
        return await fake.wait_for(found, STEP_TIMEOUT)
    except AssertionError as exc:
        raise Broken(f"{what} within {STEP_TIMEOUT:.0f} s\n{str(exc)[-1500:]}") from None


async def ready_card(slack: SignedSlack, fake: FakeSlack, tag: str) -> tuple[str, str]:
    """Request a rollback to `tag`, confirm its severity; return the card's place."""
    count = len(cards(fake))
    status, _ = await slack.command(f"{SERVICE} {tag}", user=REQUESTER, channel=CHANNEL)
    if status != 200:
        raise Broken(f"/rollback {SERVICE} {tag} was answered {status}")
    card = await wait("no card", lambda: len(found := cards(fake)) > count and found[-1], fake)
    at = (card["channel"], card["ts"])
    # The card's place is stored a moment after it is posted: pick again until it shows.
    for _ in range(20):
        await slack.select(*at, ActionId.ISSUE_SELECT, ISSUE, user=REQUESTER)
        with contextlib.suppress(AssertionError):
            await fake.wait_for(lambda: "Severity:" in text_of(fake.message(*at)), 0.5)
            break
    await slack.click(*at, ActionId.CONFIRM_SEVERITY, user=REQUESTER)
    await wait("no Approve button", lambda: has_action(fake.message(*at), ActionId.APPROVE), fake)
    return at


async def rollbot_swap(
    slack: SignedSlack, fake: FakeSlack, starts: list[tuple[float, str]], tag: str, limited: bool
) -> tuple[float, float, float]:
    """Approve a rollback to `tag`: seconds to its container, to verified; the click's time."""
    channel, ts = await ready_card(slack, fake, tag)
    if limited:
        fake.rate_limits.every(LIMITED_EVERY)
    try:
        seen, calls = len(starts), len(fake.calls)
        clicked, wall = time.monotonic(), time.time()
        status, _ = await slack.click(channel, ts, ActionId.APPROVE, user=APPROVER)
        if status != 200:
            raise Broken(f"the Approve click was answered {status}")
        final = await wait("the card showed no outcome", lambda: outcome(fake, channel, ts), fake)
    finally:
        fake.rate_limits.every(None)
    if final != "succeeded":
        raise Broken(f"the rollback to {tag} {final}:\n{text_of(fake.message(channel, ts))}")
    ref = DEMO.ref(REPOSITORY, tag)
    started = next((at for at, image in starts[seen:] if image == ref), None)
    if started is None:
        raise Broken(f"the engine started no container on {ref}")
    posted = next(
        (
            call.time
            for call in fake.calls[calls:]
            if call.method == "chat.postMessage"
            and call.status == 200
            and call.args.get("thread_ts") == ts
            and PASSED in call.args.get("text", "")
        ),
        None,
    )
    if posted is None:
        raise Broken(f"no '{PASSED}' reached the thread of the rollback to {tag}")
    return started - clicked, posted - clicked, wall


async def recorded(store: Path, clicked: float) -> float:
    """Seconds from the click (wall clock) to the verification the bot recorded in its store."""
    async with SQLiteStore(str(store)) as reader:
        (latest,) = await reader.find(service=SERVICE, limit=1)
        events = await reader.events(latest.id)
    at = next((e.at for e in events if e.kind == "verification"), None)
    if at is None:
        raise Broken(f"{latest.id} has no verification in its timeline")
    return at.timestamp() - clicked


def outcome(fake: FakeSlack, channel: str, ts: str) -> str | None:
    """The final state the card names once the thread has the outcome, else None."""
    fallback = str(fake.message(channel, ts).get("text", ""))  # "... (succeeded)"
    ended = next((s.label for s in FINAL_STATES if fallback.endswith(f"({s.label})")), None)
    if ended == State.SUCCEEDED.label:
        thread = "\n".join(text_of(m) for m in fake.thread(channel, ts))
        return ended if "[RESOLVED]" in thread else None
    return ended


async def running_tag(client: aiodocker.Docker, project: str) -> str:
    """The image of the one running container of `project`."""
    filters = json.dumps({"label": [f"{images.PROJECT_LABEL}={project}"], "status": ["running"]})
    found = await client.containers.list(filters=filters)
    if len(found) != 1:
        raise Broken(f"{project} runs {len(found)} containers, not 1")
    return str(found[0]["Image"])
