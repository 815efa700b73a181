"""Several `rollbot serve --http` replicas behind one Slack request URL, for end-to-end tests.

`Replicas` starts N real processes (default 3, named A, B, C...) that share one store URL,
one config and one fake Slack, each with its own port, log file and process group, and
puts the round-robin TCP proxy of `tests/support/proxy.py` in front of them: each new
connection to its entrance goes to the next replica, the way a load balancer spreads
Slack's requests, passing over a killed one. Its pinned entrances, one per replica, let a
test send a request to a chosen replica; `proxy.chosen` says which replica got each
connection.

Each replica is a `RunningBot` whose Slack sends through its pinned entrance; they share
what the user's client holds (the options picked on a card), as one person's Slack would.
`kill(i)` SIGKILLs exactly one replica's process group; `restart(i)` starts it again on
the same port. When a test using `start_replicas` fails, its report shows the tail of
every replica's log.

They share `store_url` (`tests/support/stores.py`): a SQLite file, or a fresh PostgreSQL
database, as the test's `store_kind` says. `bench/replicas.py` uses `Replicas` too,
outside pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import string
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.leases import Owner
from bot.store import Store, open_store
from tests.support.bot import (
    SIGNING_SECRET,
    NotServing,
    RunningBot,
    bot_environment,
    check_log,
    launch,
    serve_http,
    wait_healthy,
)
from tests.support.docker import free_port
from tests.support.proxy import TcpProxy
from tests.support.slack import FakeSlack, SignedSlack

STOP_SECONDS = 30.0  # what platforms allow; rollbot drains, cancels and flushes within it
LOG_TAIL_LINES = 40


class PinnedSlack(SignedSlack):
    """Signed requests through the proxy: its round-robin entrance, or one pinned entrance.

    `via(i)` and `composing()` return the same user's Slack (a shallow copy: the picks on
    cards and the payloads sent are shared), so a severity picked through one replica is
    carried by a click sent to another.
    """

    def __init__(self, proxy: TcpProxy, fake: FakeSlack) -> None:
        super().__init__(_events_url(proxy.port), SIGNING_SECRET, fake)
        self.proxy = proxy
        self.sending = True
        self.held: list[bytes] = []  # what a composing copy kept instead of sending

    def via(self, replica: int) -> PinnedSlack:
        """Return this Slack sending to `replica` only."""
        pinned = copy.copy(self)
        pinned.events_url = _events_url(self.proxy.pinned_ports[replica])
        return pinned

    def composing(self) -> PinnedSlack:
        """Return this Slack keeping what a user's action would send in `held`, unsent."""
        composer = copy.copy(self)
        composer.sending, composer.held = False, []
        return composer

    async def raw(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """POST `body` with these headers, or keep the body when composing."""
        if not self.sending:
            self.held.append(body)
            return 0, ""
        return await super().raw(body, headers)

    async def deliver(self, body: bytes, to: Sequence[int]) -> list[tuple[int, str]]:
        """Deliver one request to several replicas at once, as Slack and its retries would.

        The first replica gets it as sent; each next one the same body with Slack's retry
        headers (`X-Slack-Retry-Num` 1, 2..., reason `http_timeout`), all signed anew.
        """

        def headers(attempt: int) -> dict[str, str]:
            signed = self.signed_headers(body)
            if attempt:
                signed |= {
                    "X-Slack-Retry-Num": str(attempt),
                    "X-Slack-Retry-Reason": "http_timeout",
                }
            return signed

        return list(
            await asyncio.gather(
                *(self.via(replica).raw(body, headers(n)) for n, replica in enumerate(to))
            )
        )


def _events_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/slack/events"


@dataclass
class Replica(RunningBot):
    """One replica: a RunningBot on its own port whose Slack reaches it through the proxy.

    `url` is the replica's own address; `slack` sends through its pinned entrance.
    """

    index: int = 0
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    killed: bool = False  # by the test, on purpose

    @property
    def name(self) -> str:
        """Return its letter: A, B, C..."""
        return string.ascii_uppercase[self.index]

    @property
    def alive(self) -> bool:
        """Return True while its process runs."""
        return self.process.poll() is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines of its log."""
        return "\n".join(self.log().splitlines()[-lines:])


class Replicas:
    """N replicas of rollbot on one store, one config and one fake Slack, behind one proxy.

    `slack` sends through the round-robin entrance; `replicas[i].slack` to replica i.
    `store` is a connection of the test's own to the shared store, to read what they wrote.
    """

    def __init__(
        self,
        root: Path,
        fake: FakeSlack,
        store_url: str,
        config: dict[str, Any],
        *,
        count: int = 3,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        if not 1 <= count <= len(string.ascii_uppercase):
            raise ValueError(f"count must be 1 to 26, not {count}")
        self.root = root
        self.fake = fake
        self.store_url = store_url
        self.config = config
        self.count = count
        self.extra_env = dict(extra_env or {})
        self.config_path = root / "rollbot.yaml"
        self.store: Store = open_store(store_url)
        self.proxy = TcpProxy([("127.0.0.1", free_port()) for _ in range(count)], pinned=True)
        self.slack = PinnedSlack(self.proxy, fake)
        self.replicas: list[Replica] = []
        self._closed = False

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    def __len__(self) -> int:
        return len(self.replicas)

    async def start(self) -> None:
        """Open the proxy, start every replica at once, wait until all serve, open the store.

        Raises NotServing, every replica stopped, when one does not come up.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))
        await self.proxy.start()
        env = bot_environment(self.config_path, self.store_url, self.fake) | self.extra_env
        for index, (_, port) in enumerate(self.proxy.backends):
            log_path = self.root / f"replica-{string.ascii_uppercase[index]}.log"
            process = launch(serve_http(port), env, log_path, own_group=True)
            slack = self.slack.via(index)
            url = f"http://127.0.0.1:{port}"
            replica = Replica(
                process, url, slack, self.fake, self.store, log_path, self.config_path
            )
            replica.index, replica.port, replica.env = index, port, env
            self.replicas.append(replica)
        try:
            await asyncio.gather(*(self._healthy(r) for r in self.replicas))
            await self.store.open()
        except BaseException:
            await self.close()
            raise

    async def kill(self, index: int) -> None:
        """SIGKILL replica `index`'s process group, as a crash or the OOM killer would."""
        replica = self.replicas[index]
        replica.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(replica.process.pid, signal.SIGKILL)
        await asyncio.to_thread(replica.process.wait, timeout=10)

    async def restart(self, index: int) -> Replica:
        """Start replica `index` again on its port (killed, stopped or still running)."""
        replica = self.replicas[index]
        if replica.alive:
            await self.kill(index)
        replica.process = launch(
            serve_http(replica.port), replica.env, replica.log_path, own_group=True
        )
        replica.killed = False
        await self._healthy(replica)
        return replica

    def holding(self, owner: str) -> Replica | None:
        """Return the live replica whose process a lease owner names, if any."""
        parsed = Owner.parse(owner)
        return next(
            (r for r in self.replicas if parsed and r.alive and r.process.pid == parsed.pid),
            None,
        )

    def tails(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the tail of every replica's log, each under its name and exit status."""
        parts = []
        for r in self.replicas:
            status = "running" if r.alive else f"exited {r.process.returncode}"
            parts.append(f"--- replica {r.name} (port {r.port}, {status}) ---\n{r.tail(lines)}")
        return "\n".join(parts)

    async def close(self) -> list[str]:
        """Stop every replica (SIGTERM, then SIGKILL), the proxy and the store.

        Returns what went wrong: a replica that died without the test killing it, one that
        ignored SIGTERM, one whose log holds a secret.
        """
        if self._closed:
            return []
        self._closed = True
        problems = []
        for r in self.replicas:
            if not r.alive and not r.killed:
                problems.append(f"replica {r.name} exited with {r.process.returncode} on its own")
        await asyncio.gather(*(self._stop(r, problems) for r in self.replicas))
        await self.proxy.close()
        await self.store.close()
        for r in self.replicas:
            try:
                check_log(r.log())
            except AssertionError:
                problems.append(f"replica {r.name} logged a secret")
        return problems

    async def _healthy(self, replica: Replica) -> None:
        try:
            await wait_healthy(replica.url, replica.process, replica.log_path)
        except NotServing as exc:
            raise NotServing(f"replica {replica.name}: {exc}") from None

    @staticmethod
    async def _stop(replica: Replica, problems: list[str]) -> None:
        if not replica.alive:
            return
        replica.process.send_signal(signal.SIGTERM)
        try:
            # Off the event loop: the fake Slack shares it and answers the replica meanwhile.
            await asyncio.to_thread(replica.process.wait, timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            problems.append(f"replica {replica.name} ignored SIGTERM for {STOP_SECONDS:.0f} s")
            os.killpg(replica.process.pid, signal.SIGKILL)
            await asyncio.to_thread(replica.process.wait, timeout=10)


StartReplicas = Callable[..., Awaitable[Replicas]]
STARTED = pytest.StashKey[list[Replicas]]()


@pytest.fixture
async def start_replicas(
    fake_slack: FakeSlack, store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StartReplicas]:
    """Start replicas of rollbot with a config on the shared store; stop them after the test.

    `start(config, count=3, extra_env=None)`. A replica that died on its own, ignored
    SIGTERM or logged a secret fails the test.
    """
    started = request.node.stash.setdefault(STARTED, [])

    async def start(
        config: dict[str, Any], count: int = 3, extra_env: dict[str, str] | None = None
    ) -> Replicas:
        root = tmp_path / f"replicas-{len(started)}"
        replicas = Replicas(root, fake_slack, store_url, config, count=count, extra_env=extra_env)
        started.append(replicas)
        try:
            await replicas.start()
        except NotServing as exc:
            pytest.fail(str(exc))
        return replicas

    yield start
    problems = [p for replicas in started for p in await replicas.close()]
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, add the tail of every replica's log to the test's report."""
    report = yield
    started: list[Replicas] = item.stash[STARTED] if STARTED in item.stash else []
    if report.failed:
        for number, replicas in enumerate(started):
            report.sections.append((f"replica logs ({number})", replicas.tails()))
    return report
