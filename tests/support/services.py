"""Real PostgreSQL and Redis started by the test command, and a local HTTP server to aim at.

Start the servers with `scripts/start-postgres.sh` and `scripts/start-redis.sh`, then run
pytest with `ROLLBOT_TEST_PG_DSN=postgresql://postgres@127.0.0.1:55432/postgres` and
`ROLLBOT_TEST_REDIS_URL=redis://127.0.0.1:56379/0`. A missing server fails the tests that
need it instead of skipping them, so a green run always means they ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import pytest
import redis
from aiohttp import web

PG_DSN_VAR = "ROLLBOT_TEST_PG_DSN"
REDIS_URL_VAR = "ROLLBOT_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of the test PostgreSQL, checked with `SELECT 1`."""
    dsn = _required(PG_DSN_VAR, "scripts/start-postgres.sh")
    # Its own thread and loop: a session fixture must not touch the tests' event loops.
    with ThreadPoolExecutor(max_workers=1) as pool:
        error = pool.submit(asyncio.run, _postgres_error(dsn)).result()
    if error:
        pytest.fail(
            f"{PG_DSN_VAR} is set but PostgreSQL does not answer there ({error}); "
            "start it with scripts/start-postgres.sh",
            pytrace=False,
        )
    return dsn


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the test Redis, checked with PING."""
    url = _required(REDIS_URL_VAR, "scripts/start-redis.sh")
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    error = None
    try:
        client.ping()
    except redis.RedisError as exc:
        error = str(exc)
    finally:
        client.close()
    if error:
        pytest.fail(
            f"{REDIS_URL_VAR} is set but Redis does not answer there ({error}); "
            "start it with scripts/start-redis.sh",
            pytrace=False,
        )
    return url


def _required(name: str, script: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: start the server with {script} and export it", False)
    return value


async def _postgres_error(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class Received:
    """One request a FakeHttpServer received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class FakeHttpServer:
    """An HTTP server on 127.0.0.1 whose answer to every path a test changes as it runs."""

    def __init__(self, status: int, body: str) -> None:
        # Bound now, listening only once started: until then connecting is refused, and
        # the port cannot be taken by anyone else meanwhile.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/health"
        self.requests = 0
        self.received: list[Received] = []  # every request, in the order it came
        self.in_flight = 0
        self.max_in_flight = 0
        self._answer = (status, body)
        self._delay = 0.0
        self._bad_left = 0
        self._bad_answer = (503, "starting")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Handlers of clients that gave up (a timed-out check) are cancelled, so teardown
        # does not wait for their delay.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)

    def set(self, status: int = 200, body: str = "ok", *, delay: float = 0.0) -> None:
        """Answer every later request with this status and body, after `delay` seconds."""
        self._answer = (status, body)
        self._delay = delay

    def fail_first(self, count: int, status: int = 503, body: str = "starting") -> None:
        """Answer the next `count` requests with this (bad) status and body instead."""
        self._bad_left = count
        self._bad_answer = (status, body)

    async def start(self) -> None:
        """Start accepting connections."""
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def close(self) -> None:
        """Stop the server and release its port."""
        if self._runner.server is not None:
            await self._runner.cleanup()
        self._sock.close()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.received.append(
            Received(request.method, request.path, dict(request.headers), await request.read())
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._bad_left > 0:
                self._bad_left -= 1
                status, body = self._bad_answer
            else:
                status, body = self._answer
            if self._delay:
                await asyncio.sleep(self._delay)
            return web.Response(status=status, text=body)
        finally:
            self.in_flight -= 1


class HttpServerFactory(Protocol):
    """Makes a `FakeHttpServer`; `started=False` leaves it refusing connections."""

    def __call__(
        self, status: int = 200, body: str = "ok", *, started: bool = True
    ) -> Awaitable[FakeHttpServer]: ...


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServerFactory]:
    """Factory of local HTTP servers, all closed after the test."""
    servers: list[FakeHttpServer] = []

    async def make(status: int = 200, body: str = "ok", *, started: bool = True) -> FakeHttpServer:
        server = FakeHttpServer(status, body)
        servers.append(server)
        if started:
            await server.start()
        return server

    yield make
    for server in servers:
        await server.close()


ServeApp = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Serve aiohttp apps on 127.0.0.1 for the test; return each one's base URL."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield serve
    finally:
        for runner in runners:
            await runner.cleanup()


# Databases 1-15 of the test Redis; each test claims a free one through a key in db 0.
SCRATCH_DATABASES = range(1, 16)


def database_url(redis_url: str, db: int) -> str:
    return f"{redis_url.rsplit('/', 1)[0]}/{db}"


@pytest.fixture
def scratch_db(redis_url: str) -> Iterator[str]:
    """URL of an empty logical database claimed for this test, emptied after it."""
    claims = redis.Redis.from_url(redis_url, socket_timeout=5)
    owner = uuid.uuid4().hex
    try:
        for db in SCRATCH_DATABASES:
            claim = f"rollbot-test:scratch-db:{db}"
            if not claims.set(claim, owner, nx=True, ex=900):
                continue
            url = database_url(redis_url, db)
            with redis.Redis.from_url(url, socket_timeout=5) as client:
                if client.dbsize() == 0:
                    yield url
                    client.flushdb()
                    claims.delete(claim)
                    return
            claims.delete(claim)
        pytest.fail("no empty Redis database among 1-15 to test in")
    finally:
        claims.close()
