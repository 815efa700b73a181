"""`python -m playground.demo`: try rollbot in a browser, with no Slack and no credentials.

It starts a local Slack (the playground's fake Web API), the services of a demo config
(real where the machine has them, see playground/world.py), `rollbot serve --http` as a
child process on that config with its SQLite store in a data folder, and the playground web
app that speaks to the bot as Slack does (playground/stage.py runs the services and the bot,
and starts them over when the page's Reset asks). Ctrl-C (or SIGTERM) stops all of it,
removes the container it created and, unless --data was given, the data folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from playground.slack_api import BOT_USER_ID, FakeSlack
from playground.stage import DemoError, Stage, say
from playground.web import Person, playground_app
from playground.world import PEOPLE, REQUESTER

CHANNEL_NAME = "rollbacks"
RULE = "-" * 72


@dataclass
class Running:
    """What the banner names."""

    url: str
    slack: FakeSlack
    stage: Stage
    data: Path
    kept: bool


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo until Ctrl-C or SIGTERM; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m playground.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=3000, help="playground port (default 3000)")
    parser.add_argument(
        "--data", type=Path, help="data folder to keep (default: a temporary one, removed at exit)"
    )
    args = parser.parse_args(argv)
    kept = args.data is not None
    folder = args.data.resolve() if kept else Path(tempfile.mkdtemp(prefix="rollbot-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    say(f"rollbot demo: setting up in {folder}")
    try:
        code = asyncio.run(run(args.port, folder, kept))
    finally:
        if not kept:
            shutil.rmtree(folder, ignore_errors=True)
    say("Stopped." + ("" if kept else f" Removed {folder}."))
    return code


async def run(port: int, folder: Path, kept: bool) -> int:
    """Start everything, wait for a stop signal, stop everything; return the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await _run_in(folder, port, kept, stop)


async def _run_in(folder: Path, port: int, kept: bool, stop: asyncio.Event) -> int:
    """Start, serve until `stop`, and stop everything started (the exit stack's job)."""
    try:
        async with AsyncExitStack() as stack:
            setup = asyncio.ensure_future(start(stack, port, folder, kept))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({setup, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not setup.done():
                say("Stopping before the demo was ready...")
                setup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await setup
                return 0
            stopped.cancel()
            running = setup.result()
            say(banner(running))
            code = await _serve_until_stopped(stop, running.stage)
            say("Stopping everything...")
            return code
    except DemoError as exc:
        say(f"rollbot demo could not start: {exc}")
        return 1


async def _serve_until_stopped(stop: asyncio.Event, stage: Stage) -> int:
    """Return 0 on a stop signal, 1 when the bot exits by itself or a reset failed."""
    ended = asyncio.ensure_future(stage.stopped())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not ended.done():
        ended.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ended
        return 0
    say(ended.result())
    return 1


async def start(stack: AsyncExitStack, port: int, data: Path, kept: bool) -> Running:
    """Start the fake Slack, the services, the bot and the playground; `stack` stops them."""
    if not _port_free(port):
        raise DemoError(f"port {port} on 127.0.0.1 is taken: pass --port (make demo PORT=...)")
    slack = FakeSlack()
    await slack.start()
    stack.push_async_callback(slack.stop)
    people = [Person(*person) for person in PEOPLE]
    for person in people:
        slack.users[person.id] = _slack_user(person)
    members = (BOT_USER_ID, *(person.id for person in people))
    channel = slack.create_channel(CHANNEL_NAME, members=members, creator=REQUESTER[0])

    stage = Stage(slack, data, os.environ.get("DOCKER_HOST"))
    stack.push_async_callback(stage.close)
    now = await stage.start()
    app = playground_app(slack, now.users, people, channel, stage.services, stage.reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as exc:
        raise DemoError(f"cannot listen on 127.0.0.1:{port} ({exc}): pass --port") from exc
    return Running(f"http://127.0.0.1:{port}", slack, stage, data, kept)


def _slack_user(person: Person) -> dict[str, object]:
    """What users.info says of a person."""
    return {
        "name": person.name.lower(),
        "real_name": person.name,
        "profile": {"display_name": person.name, "real_name": person.name},
        # Ana's profile puts her in Berlin: her user notification says Berlin's times.
        "tz": "Europe/Berlin" if person.id == REQUESTER[0] else "UTC",
    }


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def banner(running: Running) -> str:
    """What the terminal shows once everything answers."""
    now = running.stage.current
    width = max(len(service.name) for service in now.world.services)
    services = [f"   {service.name:<{width}}  {service.note}" for service in now.world.services]
    folder = "kept at exit" if running.kept else "removed at exit"
    return "\n".join(
        [
            RULE,
            f" rollbot playground: open {running.url}",
            RULE,
            " Try a rollback:",
            "   1. As Ana (requester), type:  /rollback backend v1.2.3",
            "   2. Pick the issue type on the card, then press Confirm severity.",
            '   3. Switch "you are" to Ben (approver) and press Approve.',
            "   4. Watch the thread: progress, the verification table, the notification.",
            "   Cy (no rights) may neither request nor approve: try it.",
            "   Reset (top right) starts everything over, as it was at start.",
            "   The Kubernetes Deployment (simulated API) too:  /rollback web v2.3.1",
            " Services (real ones change things on this machine):",
            *services,
            f" Data folder: {running.data} ({folder})",
            f" Bot: {now.url}, log: {running.stage.log_path}",
            f" Fake Slack Web API: {running.slack.base_url}",
            " Ctrl-C stops everything.",
            RULE,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
