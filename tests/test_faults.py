"""The fault proxy: forwards faithfully, and answers each fault as platforms do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from tests.support.docker import free_port
from tests.support.faults import (
    ALL_FAULTS,
    CLOUDFLARE_502,
    Fault,
    FaultProxy,
    names_cause,
)


async def echo(request: web.Request) -> web.Response:
    """Answer with what arrived, so a test can see what the proxy forwarded."""
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "body": (await request.read()).decode(),
            "token": request.headers.get("Authorization", ""),
        },
        status=201 if request.method == "POST" else 200,
        headers={"X-Upstream": "yes"},
    )


async def echo_runner() -> web.AppRunner:
    """A set-up runner of the echo app, ready for a site."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    runner = await echo_runner()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def proxy(upstream: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(upstream, hang_seconds=2.0) as fault_proxy:
        yield fault_proxy


async def test_requests_without_a_rule_reach_the_upstream_unchanged(proxy: FaultProxy) -> None:
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        answer = await client.post(
            "/v9/projects/p/rollback?teamId=t", content=b'{"a": 1}', headers={"Authorization": "T"}
        )
    assert answer.status_code == 201
    assert answer.headers["X-Upstream"] == "yes"
    assert answer.json() == {
        "method": "POST",
        "path": "/v9/projects/p/rollback?teamId=t",
        "body": '{"a": 1}',
        "token": "T",
    }
    assert proxy.calls == [("POST", "/v9/projects/p/rollback?teamId=t")]


async def test_a_rule_answers_as_many_times_as_it_says_then_requests_go_through(
    proxy: FaultProxy,
) -> None:
    proxy.inject(Fault.RATE_LIMITED, method="GET", path=r"^/v6/deployments", times=2)
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        statuses = [(await client.get("/v6/deployments")).status_code for _ in range(3)]
        other = await client.post("/v6/deployments")
    assert statuses == [429, 429, 200]
    assert other.status_code == 201
    assert [fault for fault, _, _ in proxy.faulted] == [Fault.RATE_LIMITED] * 2


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault.UNAUTHORIZED, 401),
        (Fault.FORBIDDEN, 403),
        (Fault.FORBIDDEN_RATE_LIMIT, 403),
        (Fault.NOT_FOUND, 404),
        (Fault.CONFLICT, 409),
        (Fault.RATE_LIMITED, 429),
        (Fault.SERVER_ERROR, 500),
        (Fault.BAD_GATEWAY_HTML, 502),
    ],
)
async def test_each_answered_fault_has_the_status_and_shape_platforms_send(
    proxy: FaultProxy, fault: Fault, status: int
) -> None:
    proxy.inject(fault)
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        answer = await client.get("/anything")
    assert answer.status_code == status
    if fault is Fault.BAD_GATEWAY_HTML:
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.text == CLOUDFLARE_502
        return
    assert answer.json()["message"]
    assert answer.json()["error"]["code"]
    if fault is Fault.RATE_LIMITED:
        assert answer.headers["Retry-After"] == "1"
    if fault is Fault.FORBIDDEN_RATE_LIMIT:
        assert answer.headers["x-ratelimit-remaining"] == "0"
        assert "rate limit" in answer.json()["message"]


async def test_a_timeout_holds_the_request_past_the_clients_patience(proxy: FaultProxy) -> None:
    proxy.inject(Fault.TIMEOUT)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow")


async def test_a_reset_closes_the_connection_with_no_answer(proxy: FaultProxy) -> None:
    proxy.inject(Fault.RESET)
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        with pytest.raises(httpx.TransportError):
            await client.get("/gone")
        assert (await client.get("/back")).status_code == 200


async def test_a_unix_socket_upstream_is_reached_over_tcp(tmp_path: Path) -> None:
    runner = await echo_runner()
    socket = tmp_path / "engine.sock"
    await web.UnixSite(runner, str(socket)).start()
    try:
        async with FaultProxy(f"unix://{socket}") as proxy:
            async with httpx.AsyncClient(base_url=proxy.url) as client:
                answer = await client.get("/v1.43/containers/json?all=1")
        assert answer.json()["path"] == "/v1.43/containers/json?all=1"
    finally:
        await runner.cleanup()


def test_names_cause_wants_the_cause_and_refuses_what_misleads() -> None:
    assert names_cause(Fault.FORBIDDEN_RATE_LIMIT, "GitHub: rate limited; retry after 60 s")
    assert not names_cause(
        Fault.FORBIDDEN_RATE_LIMIT, "GitHub: the token was rejected (HTTP 403): rate limit"
    )
    assert not names_cause(Fault.BAD_GATEWAY_HTML, "Vercel failed (HTTP 502): <!DOCTYPE html>")
    assert names_cause(Fault.BAD_GATEWAY_HTML, "Vercel: an error page from a proxy (HTTP 502)")
    assert all(not names_cause(fault, "Something went wrong.") for fault in ALL_FAULTS)
