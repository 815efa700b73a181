"""A real `rollbot serve` process wired to the fake Slack, for end-to-end tests.

It serves HTTP (`--http`, signed requests) by default, or Socket Mode with `socket=True`.
`launch`, `wait_healthy` and `check_log` start, wait for and check any such process; the
replicas of `tests/support/replicas.py` and the benches use them too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.store import Store
from bot.store.sqlite import SQLiteStore
from tests.support.docker import free_port
from tests.support.slack import FakeSlack, SignedSlack, SocketSlack

SIGNING_SECRET = "test-signing-secret-8c1f0e"
BOT_TOKEN = "xoxb-test-0000-secret-token"
APP_TOKEN = "xapp-1-A_ROLLBOT-0000-secret-app-token"
ROLLBOT = Path(sys.executable).with_name("rollbot")


@dataclass
class RunningBot:
    """A started bot process, the Slack that talks to it and its store on disk.

    In Socket Mode `url` is empty (the bot serves no HTTP) and `slack` is a SocketSlack.
    """

    process: subprocess.Popen[bytes]
    url: str
    slack: SignedSlack | SocketSlack
    fake: FakeSlack
    store: Store
    log_path: Path
    config_path: Path

    def log(self) -> str:
        """Return what the process logged so far."""
        return self.log_path.read_text(errors="replace")

    async def stop(self) -> None:
        """Stop the process as a platform would (SIGTERM) and wait until it has exited.

        A bot started afterwards by the same fixture uses the same store: a restart.
        """
        self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, timeout=15)


StartBot = Callable[..., Awaitable[RunningBot]]


def bot_environment(config_path: Path, store: Path | str, fake: FakeSlack) -> dict[str, str]:
    """The environment a deployed bot would have, pointed at the fakes.

    `store` is the SQLite file, or a store URL as `ROLLBOT_STORE` takes it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBOT_"))}
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake.base_url,
        ROLLBOT_CONFIG=str(config_path),
        ROLLBOT_STORE=store if isinstance(store, str) else f"sqlite:///{store}",
        ROLLBOT_LOG_FORMAT="json",
    )
    return env


def serve_http(port: int) -> list[str]:
    """The arguments of `rollbot serve --http` on 127.0.0.1:`port`."""
    return ["serve", "--http", "--host", "127.0.0.1", "--port", str(port)]


def launch(
    args: list[str], env: dict[str, str], log_path: Path, *, own_group: bool = False
) -> subprocess.Popen[bytes]:
    """Start `rollbot ARGS`, its output appended to `log_path`.

    `own_group` starts it in a process group of its own, so a signal sent to that group
    (SIGKILL to one replica) reaches it and nothing else, and Ctrl-C reaches only pytest.
    """
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [str(ROLLBOT), *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )


def check_log(log: str) -> None:
    """Secrets must never reach a bot's log, whatever the test did."""
    assert BOT_TOKEN not in log
    assert SIGNING_SECRET not in log
    assert APP_TOKEN not in log


class NotServing(Exception):
    """A started bot exited, or did not answer /healthz in time; carries its log."""


@pytest.fixture
async def start_rollbot(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[StartBot]:
    """Start `rollbot serve` with a config; stop it and check its log after the test.

    `socket=True` runs it in Socket Mode (an app token, no signing secret, no HTTP server)
    and waits for its websocket to reach the fake instead of polling /healthz.
    """
    bots: list[RunningBot] = []

    async def start(
        config: dict[str, Any], extra_env: dict[str, str] | None = None, *, socket: bool = False
    ) -> RunningBot:
        index = len(bots)
        config_path = tmp_path / f"rollbot-{index}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        store_path = tmp_path / "data" / "rollbot.db"
        log_path = tmp_path / f"rollbot-{index}.log"
        env = bot_environment(config_path, store_path, fake_slack)
        if socket:
            # Socket Mode apps have an app-level token and no signing secret.
            del env["SLACK_SIGNING_SECRET"]
            env["SLACK_APP_TOKEN"] = APP_TOKEN
            args, url = ["serve"], ""
        else:
            port = free_port()
            args = serve_http(port)
            url = f"http://127.0.0.1:{port}"
        env |= extra_env or {}
        connections = fake_slack.connections_opened
        process = launch(args, env, log_path)
        slack: SignedSlack | SocketSlack
        if socket:
            await _wait_connected(fake_slack, connections + 1, process, log_path)
            slack = SocketSlack(fake_slack)
        else:
            try:
                await wait_healthy(url, process, log_path)
            except NotServing as exc:
                pytest.fail(str(exc))
            slack = SignedSlack(f"{url}/slack/events", SIGNING_SECRET, fake_slack)
        store = SQLiteStore(str(store_path))
        await store.open()
        bot = RunningBot(process, url, slack, fake_slack, store, log_path, config_path)
        bots.append(bot)
        return bot

    try:
        yield start
    finally:
        for bot in bots:
            await bot.store.close()
            bot.process.send_signal(signal.SIGTERM)
            try:
                # Off the event loop: the fake Slack shares it and must answer the bot's
                # websocket close while it shuts down.
                await asyncio.to_thread(bot.process.wait, timeout=15)
            except subprocess.TimeoutExpired:
                bot.process.kill()
                pytest.fail(f"rollbot did not stop on SIGTERM:\n{bot.log()[-3000:]}")
            check_log(bot.log())


async def wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait until the bot at `url` answers /healthz; raise NotServing (and kill it) if not."""
    async with httpx.AsyncClient(timeout=1.0) as client:
        for _ in range(150):
            if process.poll() is not None:
                raise NotServing(
                    f"rollbot exited with {process.returncode}:\n{log_path.read_text()}"
                )
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    process.kill()
    raise NotServing(f"rollbot did not become healthy:\n{log_path.read_text()}")


async def _wait_connected(
    fake: FakeSlack, opened: int, process: subprocess.Popen[bytes], log_path: Path
) -> None:
    """Wait until the bot opened its Socket Mode connection to the fake."""
    for _ in range(150):
        if process.poll() is not None:
            pytest.fail(f"rollbot exited with {process.returncode}:\n{log_path.read_text()}")
        if fake.connections_opened >= opened and fake.connected:
            return
        await asyncio.sleep(0.1)
    process.kill()
    pytest.fail(f"rollbot did not connect in Socket Mode:\n{log_path.read_text()}\n{fake.dump()}")
