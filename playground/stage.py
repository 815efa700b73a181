"""What the demo runs behind the page: its services and the bot, and Reset, which starts them over.

A `Generation` is one start: the services of playground/world.py, the config written for
them and `rollbot serve --http` as a child process on a SQLite store in the data folder.
Reset throws a generation away whole and starts another exactly as the demo starts: the
bot is stopped (its monitoring windows and freeze watches with it), every service stops
(the backend's containers are removed, the rollback's new one included), the fake Slack
forgets its messages, the bot's store, the release repository and the caches are deleted,
and all of it starts again on fresh ports with a new signing secret. Nothing the old bot
knew survives: an old card's button names a rollback the new store never heard of.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import httpx
import yaml

from playground.controls import ResetFailed, Services
from playground.slack_api import FakeSlack, SignedSlack
from playground.world import World, build_world, free_port

BOT_START_SECONDS = 30.0
BOT_STOP_SECONDS = 30.0  # the bot drains running rollbacks for up to 23 s on SIGTERM
# A reset throws away whatever a rollback still running would finish: no drain to wait for.
RESET_STOP_SECONDS = 5.0
# What one generation leaves in the data folder besides the log, which goes on across resets.
GENERATION_FILES = (
    "rollbot.yaml",
    "rollbot.db",
    "rollbot.db-journal",
    "rollbot.db-wal",
    "rollbot.db-shm",
    "kubeconfig",
    "release.git",
    "git-cache",
)
CONFIG_HEADER = """\
# Written by `python -m playground.demo` at each start (see playground/world.py).
# Monitoring and escalation keep rollbot's defaults: a round of checks every 5 minutes
# for 30 minutes after a success, posting only changes. The freeze watch looks every
# 5 seconds (rollbot's default: 60), so a drift after a rollback shows quickly.
"""


class DemoError(Exception):
    """The demo could not start; the message says why and what to do."""


@dataclass
class Generation:
    """The services and the bot of one start; `stack` stops the services."""

    world: World
    bot: asyncio.subprocess.Process
    url: str
    users: SignedSlack  # what the page sends reaches this bot, signed with its secret
    stack: AsyncExitStack

    async def stop(self, grace: float) -> None:
        """Stop the bot first, so that it acts on nothing while the services go."""
        try:
            await stop_bot(self.bot, grace)
        finally:
            await self.stack.aclose()


class Stage:
    """The demo behind the page: one generation at a time, started over by `reset`."""

    def __init__(self, slack: FakeSlack, data: Path, docker_host: str | None) -> None:
        self.slack = slack
        self.data = data
        self.docker_host = docker_host
        self.now: Generation | None = None
        self.failure = ""  # why the last reset left no bot running
        self.shown = Services(notes={})  # what the page says: the last generation that started
        self._lock = asyncio.Lock()

    @property
    def log_path(self) -> Path:
        """Return the bot's log file, which every generation appends to."""
        return self.data / "rollbot.log"

    @property
    def current(self) -> Generation:
        """Return the generation running now."""
        if self.now is None:
            raise DemoError(self.failure or "the demo is not running")
        return self.now

    async def start(self) -> Generation:
        """Start the services and the bot."""
        async with self._lock:
            self.now = await self._start()
            return self.now

    async def reset(self) -> SignedSlack:
        """Throw the generation away and start a new one; return how the page reaches its bot."""
        async with self._lock:
            began = time.monotonic()
            say("Reset (from the page): stopping the bot and the services...")
            old, self.now = self.now, None
            try:
                if old is not None:
                    await old.stop(RESET_STOP_SECONDS)
                self.slack.start_over()
                forget(self.data)
                self.now = await self._start()
            except (DemoError, OSError, subprocess.SubprocessError, aiodocker.DockerError) as exc:
                self.failure = f"the reset failed: {exc}"
                say(f"Reset failed: {exc}")
                raise ResetFailed(str(exc)) from exc
            say(f"Reset done in {time.monotonic() - began:.1f} s. Bot: {self.now.url}")
            return self.now.users

    async def close(self) -> None:
        """Stop the bot (with rollbot's usual drain) and the services."""
        async with self._lock:
            old, self.now = self.now, None
            if old is not None:
                await old.stop(BOT_STOP_SECONDS)

    async def stopped(self) -> str:
        """Wait until the bot exits by itself, or a reset failed; return what to tell."""
        while True:
            current = self.now
            if current is None:
                return f"The demo cannot go on: {self.failure}; the bot's log: {self.log_path}"
            await current.bot.wait()
            async with self._lock:  # a reset stops its bot on purpose and starts another
                if self.now is current:
                    code, log = current.bot.returncode, self.log_path
                    return f"The bot exited with {code}; its log: {log}\n{tail(log)}"

    def services(self) -> Services:
        """What the page says is real and simulated: the generation started last."""
        return self.shown

    async def _start(self) -> Generation:
        """Start what playground/world.py describes, write the config, start the bot on it."""
        stack = AsyncExitStack()
        bot: asyncio.subprocess.Process | None = None
        try:
            world = await build_world(self.data, stack, self.docker_host)
            for remark in world.remarks:
                say(remark)
            config = self.data / "rollbot.yaml"
            config.write_text(CONFIG_HEADER + yaml.safe_dump(world.config(), sort_keys=False))
            secret = f"demo-{secrets.token_hex(16)}"
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = bot_environment(self.slack, secret, config, self.data, world)
            bot = await start_bot(port, env, self.log_path)
            await wait_healthy(url, bot, self.log_path)
        except BaseException:
            if bot is not None:
                await stop_bot(bot, RESET_STOP_SECONDS)
            await stack.aclose()
            raise
        self.shown = Services(
            notes=world.notes(),
            remarks=tuple(world.remarks),
            bot=f"rollbot serve --http, pid {bot.pid}",
            slack=self.slack.base_url,
        )
        users = SignedSlack(f"{url}/slack/events", secret, self.slack)
        return Generation(world, bot, url, users, stack)


def forget(data: Path) -> None:
    """Delete what a generation left in the data folder: the store, the repository, caches."""
    for name in GENERATION_FILES:
        path = data / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def bot_environment(
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


async def start_bot(port: int, env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
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


async def wait_healthy(url: str, bot: asyncio.subprocess.Process, log_path: Path) -> None:
    """Wait until the bot answers /healthz; fail with its log when it exits or hangs."""
    deadline = time.monotonic() + BOT_START_SECONDS
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if bot.returncode is not None:
                raise DemoError(f"rollbot exited with {bot.returncode}:\n{tail(log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise DemoError(f"rollbot did not answer {url}/healthz:\n{tail(log_path)}")


async def stop_bot(bot: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM, as a platform stops it; kill it if it has not exited within `grace` seconds.

    The kill goes to the bot's process group (it leads a session of its own), so a
    program it started and was waiting for (a git push, helm) goes with it.
    """
    if bot.returncode is not None:
        return
    bot.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(bot.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bot.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            bot.kill()  # in case it leads no group: never wait on a bot left running
        await bot.wait()


def tail(path: Path, lines: int = 20) -> str:
    """The end of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def say(text: str) -> None:
    """Print a line for the person at the terminal, at once."""
    print(text, flush=True)
