"""Verification checks against a real HTTP server, PostgreSQL, Redis and TCP ports."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import pytest

from bot.verification import (
    Check,
    CheckResult,
    HttpCheck,
    PostgresCheck,
    RedisCheck,
    TcpCheck,
    _tls_context,
    all_passed,
    render_table,
    run_checks,
)
from tests.support.services import HttpServerFactory

SECRET = "s3cr3t"


def http(url: str, **fields: object) -> HttpCheck:
    return HttpCheck.model_validate({"type": "http", "name": "api", "url": url} | fields)


async def run_one(
    check: Check,
    *,
    deadline_seconds: float = 0,
    interval_seconds: float = 0.1,
    environ: Mapping[str, str] | None = None,
) -> CheckResult:
    """Run one check, by default once and with an empty environment."""
    [result] = await run_checks(
        [check],
        deadline_seconds=deadline_seconds,
        interval_seconds=interval_seconds,
        environ={} if environ is None else environ,
    )
    return result


def with_password(dsn_or_url: str, password: str) -> str:
    parts = urlsplit(dsn_or_url)
    user = parts.username or ""
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


# --- http -----------------------------------------------------------------------------


async def test_http_ok(http_server: HttpServerFactory) -> None:
    server = await http_server(200, "ok")
    result = await run_one(http(server.url))
    assert result.ok
    assert re.fullmatch(r"HTTP 200 in \d+ ms", result.detail)
    assert (result.name, result.kind, result.attempts) == ("api", "http", 1)


async def test_http_wrong_status(http_server: HttpServerFactory) -> None:
    server = await http_server(503, "down")
    result = await run_one(http(server.url))
    assert not result.ok
    assert result.detail == "HTTP 503 (expected 200)"


async def test_http_accepts_listed_statuses(http_server: HttpServerFactory) -> None:
    server = await http_server(401, "who are you")
    assert (await run_one(http(server.url, expect_status=[200, 401]))).ok
    server.set(500)
    result = await run_one(http(server.url, expect_status=[200, 401]))
    assert result.detail == "HTTP 500 (expected 200 or 401)"


async def test_http_body_must_hold_substring(http_server: HttpServerFactory) -> None:
    server = await http_server(200, '{"status":"degraded"}')
    result = await run_one(http(server.url, body_contains='"status":"ok"'))
    assert not result.ok
    assert result.detail == 'body lacks \'"status":"ok"\' (HTTP 200)'
    server.set(200, '{"status":"ok","version":"v1.2.3"}')
    assert (await run_one(http(server.url, body_contains='"status":"ok"'))).ok


async def test_http_body_is_read_up_to_a_megabyte(http_server: HttpServerFactory) -> None:
    server = await http_server(200, "x" * 3_000_000 + "ok")
    result = await run_one(http(server.url, body_contains="ok"))
    assert result.detail == "body lacks 'ok' (HTTP 200)"


async def test_http_redirect_is_not_followed_by_default(http_server: HttpServerFactory) -> None:
    server = await http_server(302, "")
    result = await run_one(http(server.url))
    assert result.detail == "HTTP 302 (expected 200)"


async def test_retry_finds_a_server_that_comes_up_later(http_server: HttpServerFactory) -> None:
    server = await http_server(started=False)

    async def start_later() -> None:
        await asyncio.sleep(2)
        await server.start()

    starter = asyncio.create_task(start_later())
    result = await run_one(http(server.url), deadline_seconds=8, interval_seconds=0.5)
    await starter
    assert result.ok, result.detail
    assert result.attempts >= 3
    assert result.elapsed_seconds >= 1.9
    assert server.requests == 1  # the refused attempts never reached it


async def test_retry_until_the_server_stops_failing(http_server: HttpServerFactory) -> None:
    server = await http_server()
    server.fail_first(2)
    result = await run_one(http(server.url), deadline_seconds=5, interval_seconds=0.1)
    assert result.ok
    assert result.attempts == 3 == server.requests


async def test_deadline_exhausted_reports_the_last_failure(
    http_server: HttpServerFactory,
) -> None:
    server = await http_server(503)
    started = time.monotonic()
    result = await run_one(http(server.url), deadline_seconds=1, interval_seconds=0.25)
    assert not result.ok
    assert result.detail == "HTTP 503 (expected 200)"
    # Attempts start at 0, 0.25, 0.5 and 0.75 s; none may start at or after the deadline.
    assert 2 <= result.attempts <= 4
    assert server.requests == result.attempts
    assert time.monotonic() - started < 2


async def test_attempt_times_out(http_server: HttpServerFactory) -> None:
    server = await http_server()
    server.set(200, "ok", delay=5)
    started = time.monotonic()
    result = await run_one(http(server.url, timeout_seconds=0.3))
    assert not result.ok
    assert result.detail == "timed out after 0.3 s"
    assert time.monotonic() - started < 2


async def test_http_credentials_never_shown() -> None:
    result = await run_one(http(f"http://admin:{SECRET}@127.0.0.1:1/health"))
    assert result.detail == "connection refused"
    assert SECRET not in result.detail


async def test_https_checks_share_one_context_that_verifies_certificates(
    http_server: HttpServerFactory,
) -> None:
    server = await http_server(200, "ok")
    # A plain HTTP server cannot complete a TLS handshake: the check fails, twice alike.
    https = http(server.url.replace("http://", "https://"))
    first, second = await run_checks([https, https], deadline_seconds=0)
    assert not first.ok and not second.ok and first.detail == second.detail

    context = _tls_context()
    assert context is _tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


# --- postgres -------------------------------------------------------------------------


async def test_postgres_ok(pg_dsn: str) -> None:
    check = PostgresCheck(type="postgres", name="db")
    result = await run_one(check, environ={"DATABASE_URL": pg_dsn})
    assert result.ok, result.detail
    assert re.fullmatch(r"SELECT 1 in \d+ ms \(127\.0\.0\.1:55432/postgres\)", result.detail)


async def test_postgres_wrong_port_hides_password() -> None:
    check = PostgresCheck(type="postgres", name="db", dsn_env="APP_DSN")
    dsn = f"postgresql://postgres:{SECRET}@127.0.0.1:1/x"
    result = await run_one(check, environ={"APP_DSN": dsn})
    assert not result.ok
    assert result.detail == "connection refused (127.0.0.1:1/x)"
    assert SECRET not in result.detail


async def test_postgres_missing_database_hides_password(pg_dsn: str) -> None:
    # The test server trusts every password, so this one only has to stay hidden.
    dsn = with_password(pg_dsn, SECRET).rsplit("/", 1)[0] + "/rollbot_no_such_db"
    check = PostgresCheck(type="postgres", name="db")
    result = await run_one(check, environ={"DATABASE_URL": dsn})
    assert not result.ok
    assert 'database "rollbot_no_such_db" does not exist' in result.detail
    assert SECRET not in result.detail


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://postgres:{SECRET}@127.0.0.1:abc/x",
        f"postgresql://postgres@127.0.0.1:1/x?password={SECRET}",
        f"host=127.0.0.1 port=1 password={SECRET}",
        f"postgresql://postgres:{SECRET}@no-such-host.invalid/x",
    ],
)
async def test_postgres_bad_dsns_never_show_the_password(dsn: str) -> None:
    check = PostgresCheck(type="postgres", name="db")
    result = await run_one(check, environ={"DATABASE_URL": dsn})
    assert not result.ok
    assert result.detail
    assert SECRET not in result.detail


# --- redis ----------------------------------------------------------------------------


async def test_redis_ok(redis_url: str) -> None:
    check = RedisCheck(type="redis", name="cache")
    result = await run_one(check, environ={"REDIS_URL": redis_url})
    assert result.ok, result.detail
    assert re.fullmatch(r"PING in \d+ ms \(127\.0\.0\.1:56379/0\)", result.detail)


async def test_redis_unreachable_hides_password() -> None:
    check = RedisCheck(type="redis", name="cache")
    result = await run_one(check, environ={"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:1/0"})
    assert not result.ok
    assert result.detail == "connection refused (127.0.0.1:1/0)"


# --- tcp ------------------------------------------------------------------------------


async def test_tcp_ok(http_server: HttpServerFactory) -> None:
    server = await http_server()
    result = await run_one(TcpCheck(type="tcp", name="port", host="127.0.0.1", port=server.port))
    assert result.ok
    assert re.fullmatch(r"connected in \d+ ms", result.detail)


async def test_tcp_refused(http_server: HttpServerFactory) -> None:
    server = await http_server(started=False)  # port bound but not listening
    result = await run_one(TcpCheck(type="tcp", name="port", host="127.0.0.1", port=server.port))
    assert not result.ok
    assert result.detail == "connection refused"


# --- environment ----------------------------------------------------------------------


async def test_missing_variable_fails_without_attempts() -> None:
    checks: list[Check] = [
        PostgresCheck(type="postgres", name="db"),
        RedisCheck(type="redis", name="cache", url_env="SESSION_REDIS"),
    ]
    started = time.monotonic()
    results = await run_checks(checks, deadline_seconds=30, environ={"SESSION_REDIS": ""})
    assert time.monotonic() - started < 1  # no waiting for a variable to appear
    assert [(r.ok, r.detail, r.attempts) for r in results] == [
        (False, "DATABASE_URL is not set", 0),
        (False, "SESSION_REDIS is empty", 0),
    ]


async def test_environ_defaults_to_os_environ_at_call_time(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    [result] = await run_checks([RedisCheck(type="redis", name="cache")], deadline_seconds=0)
    assert result.ok, result.detail


# --- the run as a whole ---------------------------------------------------------------


async def test_checks_run_concurrently_and_keep_their_order(
    http_server: HttpServerFactory, redis_url: str
) -> None:
    server = await http_server()
    server.set(200, "ok", delay=1)
    checks: list[Check] = [http(server.url, name=f"slow-{i}") for i in range(3)]
    checks.insert(1, RedisCheck(type="redis", name="cache"))
    started = time.monotonic()
    results = await run_checks(checks, deadline_seconds=0, environ={"REDIS_URL": redis_url})
    assert [r.name for r in results] == ["slow-0", "cache", "slow-1", "slow-2"]
    assert all_passed(results)
    # All three slow requests were inside the server at once: proof without a stopwatch.
    assert server.max_in_flight == 3
    assert time.monotonic() - started < 2.5


async def test_rejects_a_busy_loop_interval() -> None:
    with pytest.raises(ValueError, match="interval_seconds"):
        await run_checks([], deadline_seconds=1, interval_seconds=0)


# --- rendering ------------------------------------------------------------------------


def result(name: str, ok: bool, detail: str, kind: str = "http") -> CheckResult:
    return CheckResult(name=name, kind=kind, ok=ok, detail=detail, attempts=3, elapsed_seconds=1.0)


def test_render_table_lists_every_check_aligned() -> None:
    results = [
        result("api", True, "HTTP 200 in 12 ms"),
        result("primary-db", False, "connection refused (127.0.0.1:1/x)", "postgres"),
        result("odd", False, "line one\nline `two`", "tcp"),
    ]
    table = render_table(results)
    lines = table.splitlines()
    assert lines[0].split() == ["check", "type", "result", "detail", "attempts"]
    for name in ("api", "primary-db", "odd"):
        assert any(line.startswith(name) for line in lines)
    assert "FAIL" in table and " ok " in table
    assert "`" not in table  # would close the Slack code block
    assert len(lines) == 5  # header, rule, three rows: the newline was flattened
    assert len({len(line) for line in lines}) == 1


def test_render_table_truncates_long_details() -> None:
    table = render_table([result("api", False, "x" * 500)])
    assert "…" in table
    assert max(len(line) for line in table.splitlines()) < 120


def test_all_passed() -> None:
    assert all_passed([result("a", True, ""), result("b", True, "")])
    assert not all_passed([result("a", True, ""), result("b", False, "")])
    assert all_passed([])
