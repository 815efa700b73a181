"""`python -m playground.demo`: try rollbot in a browser, with no Slack and no credentials.

It starts a local Slack (the playground's fake Web API), the services of a demo config
(real where the machine has them, see playground/world.py), `rollbot serve --http` as a
child process on that config with its SQLite store in a data folder, and the playground web
app that speaks to the bot as Slack does. Ctrl-C (or SIGTERM) stops all of it, removes the
container it created and, unless --data was given, the data folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from aiohttp import web

from playground.slack_api import BOT_USER_ID, FakeSlack, SignedSlack
from playground.web import Person, playground_app
from playground.world import PEOPLE, REQUESTER, World, build_world, free_port

CHANNEL_NAME = "rollbacks"
BOT_START_SECONDS = 30.0
BOT_STOP_SECONDS = 30.0  # the bot drains running rollbacks for up to 23 s on SIGTERM
RULE = "-" * 72
CONFIG_HEADER = """\
# Written by `python -m playground.demo` at each start (see playground/world.py).
# Monitoring and escalation keep rollbot's defaults: a round of checks every 5 minutes
# for 30 minutes after a success, posting only changes. The freeze watch looks every
# 5 seconds (rollbot's default: 60), so a drift after a rollback shows quickly.
"""


class DemoError(Exception):
    """The demo could not start; the message says why and what to do."""


@dataclass
class Running:
    """What the banner names."""

    url: str
    bot_url: str
    slack: FakeSlack
    world: World
    data: Path
    kept: bool

    @property
    def log_path(self) -> Path:
        """Return the bot's log file."""
        return self.data / "rollbot.log"


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
            running, bot = setup.result()
            say(banner(running))
            code = await _serve_until_stopped(stop, bot, running)
            say("Stopping everything...")
            return code
    except DemoError as exc:
        say(f"rollbot demo could not start: {exc}")
        return 1


async def _serve_until_stopped(
    stop: asyncio.Event, bot: asyncio.subprocess.Process, running: Running
) -> int:
    """Return 0 on a stop signal, 1 when the bot exits by itself."""
    exited = asyncio.ensure_future(bot.wait())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not exited.done():
        exited.cancel()
        return 0
    say(f"The bot exited with {bot.returncode}; its log: {running.log_path}")
    say(_tail(running.log_path))
    return 1


async def start(
    stack: AsyncExitStack, port: int, data: Path, kept: bool
) -> tuple[Running, asyncio.subprocess.Process]:
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

    world = await build_world(data, stack, os.environ.get("DOCKER_HOST"))
    for remark in world.remarks:
        say(remark)
    config_path = data / "rollbot.yaml"
    config_path.write_text(CONFIG_HEADER + yaml.safe_dump(world.config(), sort_keys=False))

    signing_secret = f"demo-{secrets.token_hex(16)}"
    env = _bot_environment(slack, signing_secret, config_path, data, world)
    bot_port = free_port()
    bot_url = f"http://127.0.0.1:{bot_port}"
    bot = await _start_bot(bot_port, env, data / "rollbot.log")
    stack.push_async_callback(_stop_bot, bot)
    await _wait_healthy(bot_url, bot, data / "rollbot.log")

    users = SignedSlack(f"{bot_url}/slack/events", signing_secret, slack)
    app = playground_app(slack, users, people, channel, world.notes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as exc:
        raise DemoError(f"cannot listen on 127.0.0.1:{port} ({exc}): pass --port") from exc
    url = f"http://127.0.0.1:{port}"
    return Running(url, bot_url, slack, world, data, kept), bot


def _slack_user(person: Person) -> dict[str, object]:
    """What users.info says of a person."""
    return {
        "name": person.name.lower(),
        "real_name": person.name,
        "profile": {"display_name": person.name, "real_name": person.name},
        # Ana's profile puts her in Berlin: her user notification says Berlin's times.
        "tz": "Europe/Berlin" if person.id == REQUESTER[0] else "UTC",
    }


def _bot_environment(
    slack: FakeSlack, signing_secret: str, config: Path, data: Path, world: World
) -> dict[str, str]:
    """The bot's environment: the fake Slack, the demo config and store, providers' tokens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBOT_"))}
    env.update(
        SLACK_API_URL=slack.base_url,
        SLACK_BOT_TOKEN=f"xoxb-demo-{secrets.token_hex(12)}",
        SLACK_SIGNING_SECRET=signing_secret,
        ROLLBOT_CONFIG=str(config),
        ROLLBOT_STORE=f"sqlite:///{data / 'rollbot.db'}",
        ROLLBOT_LOG_FORMAT="json",
        **world.env(),
    )
    return env


def _rollbot() -> list[str]:
    """The `rollbot` command of this Python environment."""
    beside = Path(sys.executable).with_name("rollbot")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("rollbot")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())"]


async def _start_bot(port: int, env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    """Start `rollbot serve --http` on 127.0.0.1:port, its output in `log_path`."""
    args = ["serve", "--http", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("ab") as log:
        # A session of its own: Ctrl-C reaches the demo only, which stops the bot in order.
        return await asyncio.create_subprocess_exec(
            *_rollbot(),
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


async def _wait_healthy(url: str, bot: asyncio.subprocess.Process, log_path: Path) -> None:
    """Wait until the bot answers /healthz; fail with its log when it exits or hangs."""
    deadline = time.monotonic() + BOT_START_SECONDS
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if bot.returncode is not None:
                raise DemoError(f"rollbot exited with {bot.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise DemoError(f"rollbot did not answer {url}/healthz:\n{_tail(log_path)}")


async def _stop_bot(bot: asyncio.subprocess.Process) -> None:
    """SIGTERM, as a platform stops it; kill it if it has not exited in time."""
    if bot.returncode is not None:
        return
    bot.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(bot.wait(), BOT_STOP_SECONDS)
    except TimeoutError:
        bot.kill()
        await bot.wait()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def banner(running: Running) -> str:
    """What the terminal shows once everything answers."""
    width = max(len(service.name) for service in running.world.services)
    services = [f"   {service.name:<{width}}  {service.note}" for service in running.world.services]
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
            "   The Kubernetes Deployment (simulated API) too:  /rollback web v2.3.1",
            " Services (real ones change things on this machine):",
            *services,
            f" Data folder: {running.data} ({folder})",
            f" Bot: {running.bot_url}, log: {running.log_path}",
            f" Fake Slack Web API: {running.slack.base_url}",
            " Ctrl-C stops everything.",
            RULE,
        ]
    )


def say(text: str) -> None:
    """Print a line for the person at the terminal, at once."""
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
