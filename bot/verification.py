"""Health verification after a rollback: http, postgres, redis, tcp and prometheus checks.

`run_checks` never raises for a failing check: every problem, including a missing
variable, becomes a failed `CheckResult` whose `detail` is free of credentials.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal, assert_never
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis.asyncio
import redis.exceptions
import structlog
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot import prom_check
from bot.prom_check import PrometheusCheck
from bot.redact import Redactor


class _CheckBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name shown in the verification table.")
    timeout_seconds: float = Field(default=5, gt=0, description="Timeout of one attempt.")


class HttpCheck(_CheckBase):
    """GET a URL and accept some status codes, optionally requiring a body substring."""

    type: Literal["http"]
    url: str = Field(description="http(s) URL to GET.")
    expect_status: list[int] = Field(default=[200], description="Accepted status codes.")
    body_contains: str | None = Field(default=None, description="Substring the body must hold.")
    follow_redirects: bool = Field(
        default=False,
        description="Follow redirects; off so a health URL that redirects (say, to a login"
        " page) fails instead of passing on the page it lands on. A redirect status can"
        " also be accepted through expect_status.",
    )


class PostgresCheck(_CheckBase):
    """Run `SELECT 1` against a database whose DSN is in an environment variable."""

    type: Literal["postgres"]
    dsn_env: str = Field(default="DATABASE_URL", description="Variable holding the DSN.")


class RedisCheck(_CheckBase):
    """PING a Redis whose URL is in an environment variable."""

    type: Literal["redis"]
    url_env: str = Field(default="REDIS_URL", description="Variable holding the Redis URL.")


class TcpCheck(_CheckBase):
    """Open a TCP connection."""

    type: Literal["tcp"]
    host: str
    port: int = Field(ge=1, le=65535)


Check = Annotated[
    HttpCheck | PostgresCheck | RedisCheck | TcpCheck | PrometheusCheck,
    Field(discriminator="type"),
]


class CheckResult(BaseModel):
    """The outcome of one check after its retries."""

    name: str
    kind: str
    ok: bool
    detail: str
    attempts: int
    elapsed_seconds: float
    # Where to look further (a prometheus check's graph page), shown under the table.
    link: str | None = None


log = structlog.get_logger(__name__)

# A health body is small; reading more than this to look for a substring only costs memory.
_MAX_BODY_BYTES = 1024 * 1024
_MAX_DETAIL = 200
_ERRNO = re.compile(r"\[Errno (\d+)\]")
# Errors that carry the server's own words.
_REDIS_REPLIES = redis.exceptions.ResponseError | redis.exceptions.AuthenticationError


class _Failed(Exception):
    """The target answered, but not as the check requires; the message is the detail."""


class _NotConfigured(Exception):
    """The check cannot be attempted (a variable is missing); the message is the detail."""


@dataclass(frozen=True)
class _Plan:
    """How to attempt one check, and what its details must not reveal."""

    probe: Callable[[], Awaitable[str]]
    secrets: Redactor = field(default_factory=Redactor)
    where: str = ""
    link: str | None = None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS context of the checks' HTTP clients, made once for the process."""
    # Loading the CA bundle costs some 25 ms of CPU: per client, it delayed every verification.
    return httpx.create_ssl_context()


async def run_checks(
    checks: Sequence[Check],
    *,
    deadline_seconds: float,
    interval_seconds: float = 1.0,
    environ: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """Run all checks concurrently, retrying each until it passes or the deadline passes.

    An attempt starts every `interval_seconds` while the deadline has not passed, and
    every check gets at least one; each attempt is bounded by the check's own
    `timeout_seconds`, so the run ends at most one timeout after the deadline.
    Results are in the order of `checks`. `environ` defaults to `os.environ`.
    """
    if deadline_seconds < 0 or interval_seconds <= 0:
        raise ValueError("deadline_seconds must be >= 0 and interval_seconds > 0")
    env = os.environ if environ is None else environ
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + deadline_seconds
    # Redirects are off by default, per check (see HttpCheck.follow_redirects).
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(10.0), follow_redirects=False, verify=_tls_context()
    ) as client:
        return list(
            await asyncio.gather(
                *(
                    _run_one(
                        check,
                        env,
                        client,
                        start=start,
                        deadline=deadline,
                        interval=interval_seconds,
                    )
                    for check in checks
                )
            )
        )


def all_passed(results: Sequence[CheckResult]) -> bool:
    """Return True when every check passed (also when there were none)."""
    return all(result.ok for result in results)


def render_table(results: Sequence[CheckResult]) -> str:
    """Render results as a monospace table for a Slack code block."""
    header = ("check", "type", "result", "detail", "attempts")
    # ok/FAIL rather than emoji: emoji are double width and break the alignment.
    rows = [
        (
            _cell(r.name, 40),
            r.kind,
            "ok" if r.ok else "FAIL",
            _cell(r.detail, 80),
            str(r.attempts),
        )
        for r in results
    ]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(header)]
    lines = [header, tuple("-" * w for w in widths), *rows]
    return "\n".join(_table_line(line, widths) for line in lines)


def _table_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    *left, attempts = cells
    padded = [cell.ljust(width) for cell, width in zip(left, widths[:-1], strict=True)]
    return "  ".join([*padded, attempts.rjust(widths[-1])])


async def _run_one(
    check: Check,
    environ: Mapping[str, str],
    client: httpx.AsyncClient,
    *,
    start: float,
    deadline: float,
    interval: float,
) -> CheckResult:
    loop = asyncio.get_running_loop()
    attempts = 0
    link = None
    try:
        plan = _plan(check, environ, client)
    except _NotConfigured as exc:
        # Retrying cannot make a variable appear, so fail at once without an attempt.
        ok, detail = False, str(exc)
    else:
        link = plan.link
        while True:
            attempt_start = loop.time()
            attempts += 1
            ok, detail = await _attempt(plan, check.timeout_seconds)
            next_start = attempt_start + interval
            if ok or next_start >= deadline:
                break
            await asyncio.sleep(max(0.0, next_start - loop.time()))
    result = CheckResult(
        name=check.name,
        kind=check.type,
        ok=ok,
        detail=detail,
        attempts=attempts,
        elapsed_seconds=round(loop.time() - start, 3),
        link=link,
    )
    log.info(
        "verification.check",
        check=result.name,
        kind=result.kind,
        ok=ok,
        attempts=attempts,
        seconds=result.elapsed_seconds,
        detail=detail,
    )
    return result


async def _attempt(plan: _Plan, limit_seconds: float) -> tuple[bool, str]:
    """Make one attempt and describe it; never raises for the target's failures."""
    try:
        async with asyncio.timeout(limit_seconds):
            ok, detail = True, await plan.probe()
    except (TimeoutError, httpx.TimeoutException, redis.exceptions.TimeoutError):
        ok, detail = False, f"timed out after {limit_seconds:g} s"
    except (_Failed, prom_check.PrometheusFailed) as exc:
        ok, detail = False, str(exc)
    except Exception as exc:
        ok, detail = False, _describe_error(exc)
    if plan.where:
        detail = f"{detail} ({plan.where})"
    return ok, _truncate(plan.secrets.redact(detail), _MAX_DETAIL)


def _plan(check: Check, environ: Mapping[str, str], client: httpx.AsyncClient) -> _Plan:
    timeout = check.timeout_seconds
    match check:
        case HttpCheck():
            return _Plan(lambda: _probe_http(check, client), Redactor([check.url]))
        case PostgresCheck():
            dsn = _required(environ, check.dsn_env)
            return _Plan(lambda: _probe_postgres(dsn, timeout), Redactor([dsn]), _location(dsn))
        case RedisCheck():
            url = _required(environ, check.url_env)
            return _Plan(lambda: _probe_redis(url, timeout), Redactor([url]), _location(url))
        case TcpCheck():
            return _Plan(lambda: _probe_tcp(check.host, check.port))
        case PrometheusCheck():
            token = _required(environ, check.token_env) if check.token_env else None
            return _Plan(
                lambda: prom_check.probe(check, client, token),
                Redactor([token, check.url] if token else [check.url]),
                # The link must keep its URL; only a token in the query is hidden.
                link=Redactor([token] if token else []).redact(prom_check.graph_url(check)),
            )
    assert_never(check)


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise _NotConfigured(f"{name} is not set" if name not in environ else f"{name} is empty")
    return value


async def _probe_http(check: HttpCheck, client: httpx.AsyncClient) -> str:
    started = time.perf_counter()
    async with client.stream(
        "GET", check.url, timeout=check.timeout_seconds, follow_redirects=check.follow_redirects
    ) as response:
        status = response.status_code
        if status not in check.expect_status:
            expected = " or ".join(str(code) for code in check.expect_status)
            raise _Failed(f"HTTP {status} (expected {expected})")
        if check.body_contains is not None:
            body = await _read_capped(response)
            if check.body_contains not in body:
                raise _Failed(f"body lacks {check.body_contains!r} (HTTP {status})")
    return f"HTTP {status} in {_ms_since(started)} ms"


async def _read_capped(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _MAX_BODY_BYTES:
            break
    return b"".join(chunks)[:_MAX_BODY_BYTES].decode(response.encoding or "utf-8", "replace")


async def _probe_postgres(dsn: str, socket_seconds: float) -> str:
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn, timeout=socket_seconds)
    try:
        await conn.fetchval("SELECT 1")
    except BaseException:
        # A connection in an unknown state gets no graceful goodbye that could hang.
        conn.terminate()
        raise
    await conn.close(timeout=socket_seconds)
    return f"SELECT 1 in {_ms_since(started)} ms"


async def _probe_redis(url: str, socket_seconds: float) -> str:
    started = time.perf_counter()
    # No client-side retries: the runner retries, on its own interval and deadline.
    client = redis.asyncio.Redis.from_url(
        url,
        socket_connect_timeout=socket_seconds,
        socket_timeout=socket_seconds,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        # ping() is typed for both sync and async clients, which mypy cannot await.
        await client.execute_command("PING")
    finally:
        await client.aclose()
    return f"PING in {_ms_since(started)} ms"


async def _probe_tcp(host: str, port: int) -> str:
    started = time.perf_counter()
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    await writer.wait_closed()
    return f"connected in {_ms_since(started)} ms"


def _describe_error(exc: BaseException) -> str:
    """Say in plain words what went wrong, preferring the OS-level cause."""
    chain = list(_causes(exc))
    for link in chain:
        if isinstance(link, socket.gaierror):
            return "host not found"
        if isinstance(link, ssl.SSLError):
            return f"TLS error: {link.reason or link}"
        if isinstance(link, OSError):
            # asyncio joins the errors of several addresses into one message.
            codes = {link.errno} if link.errno else {int(c) for c in _ERRNO.findall(str(link))}
            if len(codes) == 1:
                return os.strerror(codes.pop()).lower()
    for link in chain:
        if isinstance(link, asyncpg.PostgresError | _REDIS_REPLIES):
            return f"server said: {_first_line(link)}"
    message = _first_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _location(url: str) -> str:
    """Return host, port and path of a URL or DSN without credentials or query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "unparsable URL"
    if not parts.scheme:
        return "unparsable URL"
    return (parts.netloc.rpartition("@")[2] + parts.path) or "local socket"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().split("\n", 1)[0]


def _cell(text: str, width: int) -> str:
    # A backtick would end the Slack code block the table is shown in.
    return _truncate(" ".join(text.split()).replace("`", "'"), width)


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
