"""The shared HTTP boundary against a local server that answers as platforms do on bad days."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from providers.base import (
    AuthRejected,
    ProviderError,
    RateLimited,
    Refused,
    TimedOut,
    Transient,
)
from providers.http import error_for, new_client, send
from providers.retry import backoff, retrying

# What Cloudflare serves when the origin behind it is down (abridged).
CLOUDFLARE_502 = """<!DOCTYPE html>
<html><head><title>api.vercel.com | 502: Bad gateway</title></head>
<body><div id="cf-error-details"><h1>Bad gateway</h1><span>Error code 502</span>
<p>Visit cloudflare.com for more information.</p><span>Cloudflare Ray ID: 7d1f</span>
</div></body></html>"""

Answer = tuple[int, dict[str, str], str]


@contextlib.asynccontextmanager
async def answering(answer: Answer) -> AsyncIterator[str]:
    """Serve one canned answer to every request on 127.0.0.1; yield the base URL."""
    status, headers, body = answer

    async def handle(request: web.Request) -> web.Response:
        sent = {"Content-Type": "application/json", **headers}
        return web.Response(status=status, body=body.encode(), headers=sent)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def classify(answer: Answer, detail: str = "", service: str = "Vercel") -> ProviderError:
    """Fetch the answer over real HTTP and translate it."""
    async with answering(answer) as url, new_client(2) as client:
        response = await send(client, "GET", f"{url}/v9/projects/x", what="Reading")
        return error_for(response, "Reading", detail, service=service)


async def test_a_github_primary_rate_limit_403_is_a_rate_limit_not_a_bad_token() -> None:
    reset = int(time.time()) + 30
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    body = '{"message": "API rate limit exceeded for user ID 1."}'

    error = await classify((403, headers, body))

    assert type(error) is RateLimited
    assert "rate limited (HTTP 403)" in error.message and "token" not in error.message
    assert error.retry_after is not None and 25 <= error.retry_after <= 30


async def test_a_github_secondary_rate_limit_403_waits_as_retry_after_asks() -> None:
    body = '{"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}'

    error = await classify((403, {"Retry-After": "60"}, body))

    assert type(error) is RateLimited
    assert error.retry_after == 60
    assert "retry after 60 s" in error.message


async def test_a_vercel_rate_limited_code_on_403_is_a_rate_limit() -> None:
    body = '{"error": {"code": "rate_limited", "message": "Rate limit exceeded"}}'
    error = await classify((403, {}, body), detail="Rate limit exceeded (rate_limited)")
    assert type(error) is RateLimited
    assert "Rate limit exceeded (rate_limited)" in error.message


async def test_a_plain_403_is_a_rejected_token_with_the_platforms_message() -> None:
    body = '{"message": "Bad credentials"}'
    error = await classify((403, {"x-ratelimit-remaining": "4999"}, body), detail="Bad credentials")
    assert type(error) is AuthRejected
    assert error.message == "Reading: the token was rejected (HTTP 403): Bad credentials"


async def test_a_cdn_error_page_is_named_never_quoted() -> None:
    error = await classify((502, {"Content-Type": "text/html; charset=UTF-8"}, CLOUDFLARE_502))

    assert type(error) is Transient
    assert "an error page from a proxy or CDN in front of Vercel (HTTP 502)" in error.message
    assert "<" not in error.message and "Cloudflare" not in error.message


async def test_an_html_403_is_a_blocked_request_not_a_rejected_token() -> None:
    page = "<html><body><h1>403 Forbidden</h1>Request blocked.</body></html>"
    error = await classify((403, {"Content-Type": "text/html"}, page))
    assert type(error) is Refused
    assert "error page from a proxy or CDN in front of Vercel (HTTP 403)" in error.message
    assert "token" not in error.message and "<" not in error.message


async def test_an_html_429_is_a_rate_limit_with_its_wait() -> None:
    page = "<html><body>Too many requests</body></html>"
    error = await classify((429, {"Content-Type": "text/html", "Retry-After": "3"}, page))
    assert type(error) is RateLimited and error.retry_after == 3
    assert "<" not in error.message


async def test_a_closed_connection_is_transient_and_names_the_connection() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with new_client(2) as client:
            with pytest.raises(Transient) as caught:
                await send(client, "POST", f"http://127.0.0.1:{port}/", what="Rolling back")
    finally:
        server.close()
        await server.wait_closed()
    assert "connection closed before an answer came" in caught.value.message


async def test_a_refused_connection_is_transient() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with new_client(2) as client:
        with pytest.raises(Transient, match="cannot open a connection"):
            await send(client, "GET", f"http://127.0.0.1:{port}/", what="Reading")


async def test_a_silent_server_times_out() -> None:
    held: list[asyncio.StreamWriter] = []

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()

    server = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with new_client(0.3) as client:
            with pytest.raises(TimedOut, match="no answer in time"):
                await send(client, "GET", f"http://127.0.0.1:{port}/", what="Reading")
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


class Flaky:
    """A read that fails with the given errors first, then answers."""

    def __init__(self, *errors: ProviderError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_reads_retry_timeouts_only_when_asked() -> None:
    read = Flaky(TimedOut("no answer in time"))
    assert await retrying(read, base_delay=0.01, timeouts=True) == "ok"
    assert read.calls == 2

    write = Flaky(TimedOut("no answer in time"))
    with pytest.raises(TimedOut):
        await retrying(write, base_delay=0.01)
    assert write.calls == 1


async def test_retries_wait_at_least_what_retry_after_asks() -> None:
    read = Flaky(RateLimited("rate limited", retry_after=0.5))
    started = time.monotonic()
    assert await retrying(read, base_delay=0.01) == "ok"
    assert time.monotonic() - started >= 0.5


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_backoff_is_jittered_and_bounded(attempt: int) -> None:
    waits: set[float] = {backoff(attempt, Transient("x"), base_delay=1) for _ in range(20)}
    top = 2 ** (attempt - 1)
    assert all(top / 2 <= wait <= top for wait in waits)
    assert len(waits) > 1  # jitter: retries of many clients do not line up
    assert backoff(attempt, RateLimited("x", retry_after=30), base_delay=1) == 30
