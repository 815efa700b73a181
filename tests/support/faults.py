"""A platform's bad days, on demand: an HTTP proxy that answers chosen calls with a fault.

`FaultProxy` forwards every request to a fake or real service (over TCP or a unix socket,
such as the Docker engine's) and answers the ones a test names with one of the faults
below instead, shaped as the platforms send them:

- 401 and 403 with a JSON error body, as an API answers a rejected or too weak token;
- 403 that is really a rate limit, as GitHub sends it (``x-ratelimit-remaining: 0``,
  ``x-ratelimit-reset``, "API rate limit exceeded" in the body);
- 404, 409, 500 with JSON bodies; 429 with ``Retry-After: 1``;
- 502 with a ``text/html`` page, as Cloudflare or a load balancer answers for a service
  behind it that is down;
- a request held until the client gives up (timeout), and a connection closed with no
  answer (reset).

`names_cause` says whether a message shown to a user names the fault in words they
understand, and never pastes an HTML page.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from dataclasses import dataclass
from enum import StrEnum

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from tests.support.docker import free_port


class Fault(StrEnum):
    """One way a platform's API answers on a bad day."""

    UNAUTHORIZED = "401"
    FORBIDDEN = "403 token"
    FORBIDDEN_RATE_LIMIT = "403 rate limit"
    NOT_FOUND = "404"
    CONFLICT = "409"
    RATE_LIMITED = "429"
    SERVER_ERROR = "500"
    BAD_GATEWAY_HTML = "502 html"
    TIMEOUT = "timeout"
    RESET = "connection reset"


ALL_FAULTS = tuple(Fault)

# Faults worth retrying for a read: after one of them, the second try may well succeed.
TRANSIENT = frozenset(
    {
        Fault.FORBIDDEN_RATE_LIMIT,
        Fault.RATE_LIMITED,
        Fault.SERVER_ERROR,
        Fault.BAD_GATEWAY_HTML,
        Fault.TIMEOUT,
        Fault.RESET,
    }
)

CLOUDFLARE_502 = """<!DOCTYPE html>
<html lang="en-US"><head><title>api.example.com | 502: Bad gateway</title></head>
<body><div id="cf-error-details"><h1>Bad gateway</h1><span>Error code 502</span>
<p>The web server reported a bad gateway error.</p>
<p>Cloudflare Ray ID: 8f1e2d3c4b5a6978</p></div></body></html>
"""

# Words a user-facing message must contain (one of) to name each fault's cause.
CAUSE_WORDS: dict[Fault, tuple[str, ...]] = {
    Fault.UNAUTHORIZED: ("token", "credential", "unauthori", "not authori"),
    Fault.FORBIDDEN: ("token", "credential", "permission", "forbidden", "access denied"),
    Fault.FORBIDDEN_RATE_LIMIT: ("rate limit",),
    Fault.NOT_FOUND: ("not found", "does not exist", "no such"),
    Fault.CONFLICT: ("conflict", "busy", "in progress", "already"),
    Fault.RATE_LIMITED: ("rate limit", "too many requests"),
    Fault.SERVER_ERROR: ("http 500", "server error", "internal error", "the service failed"),
    Fault.BAD_GATEWAY_HTML: ("error page", "proxy", "gateway", "cdn"),
    Fault.TIMEOUT: ("in time", "timed out", "timeout", "no answer"),
    Fault.RESET: ("connection", "cannot reach", "reset", "disconnected"),
}

# What a message must never say for a fault: a rate limit is not a rejected token.
WRONG_WORDS: dict[Fault, tuple[str, ...]] = {
    Fault.FORBIDDEN_RATE_LIMIT: ("token was rejected", "permission"),
    Fault.BAD_GATEWAY_HTML: ("<html", "<!doctype", "cloudflare ray"),
}


def names_cause(fault: Fault, message: str) -> bool:
    """Return True when `message` names `fault`'s cause and says nothing wrong about it."""
    text = message.lower()
    if any(word in text for word in WRONG_WORDS.get(fault, ())):
        return False
    return any(word in text for word in CAUSE_WORDS[fault])


def assert_names_cause(fault: Fault, message: str) -> None:
    """Fail with the message and the words looked for when it does not name the cause."""
    assert names_cause(fault, message), (
        f"the message for {fault.value!r} does not name its cause "
        f"(looked for one of {CAUSE_WORDS[fault]}, none of {WRONG_WORDS.get(fault, ())}): "
        f"{message!r}"
    )


@dataclass
class Rule:
    """Answer matching requests with `fault`, `times` times (None: every time)."""

    fault: Fault
    method: str | None
    path: re.Pattern[str]
    times: int | None
    # Forward the request first, then answer with the fault: a write the platform applied
    # whose answer never arrived (the case where retrying blindly would apply it twice).
    applied: bool = False

    def matches(self, method: str, path: str) -> bool:
        """Return True when this rule still applies to the request."""
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path.search(path) is not None


# Hop-by-hop and framing headers the proxy sets itself on each side.
DROPPED = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "upgrade",
        "proxy-connection",
    }
)


def _kept(headers: CIMultiDict[str] | dict[str, str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in DROPPED)


class FaultProxy:
    """Forwards to `upstream` (``http://host:port`` or ``unix:///path``), faults on demand."""

    def __init__(
        self, upstream: str, *, hang_seconds: float = 5.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.upstream = upstream
        self.hang_seconds = hang_seconds
        # How to trust an https upstream (the test cluster's own CA).
        self.tls = tls
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Every request that reached the proxy, faulted or not, in order.
        self.calls: list[tuple[str, str]] = []
        # The requests answered with a fault, in order.
        self.faulted: list[tuple[Fault, str, str]] = []
        self._rules: list[Rule] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> FaultProxy:
        """Start listening on 127.0.0.1:`port`."""
        if self.upstream.startswith("unix://"):
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(
                path=self.upstream.removeprefix("unix://")
            )
            self._base = "http://localhost"
        else:
            connector = aiohttp.TCPConnector(ssl=self.tls if self.tls is not None else True)
            self._base = self.upstream.rstrip("/")
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def close(self) -> None:
        """Stop listening and drop the upstream connections."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def inject(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        path: str = "",
        times: int | None = 1,
        applied: bool = False,
    ) -> None:
        """Answer requests whose path matches the regex `path` with `fault`.

        With `applied`, the request reaches the service first and only its answer is lost.
        """
        self._rules.append(Rule(fault, method, re.compile(path), times, applied))

    def clear(self) -> None:
        """Forget every rule and every call seen."""
        self._rules.clear()
        self.calls.clear()
        self.faulted.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        self.calls.append((request.method, path))
        for rule in self._rules:
            if rule.matches(request.method, path):
                if rule.times is not None:
                    rule.times -= 1
                self.faulted.append((rule.fault, request.method, path))
                if rule.applied:
                    await self._forward(request)
                return await self._fault(request, rule.fault)
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        async with self._session.request(
            request.method,
            self._base + request.path_qs,
            headers=_kept(request.headers),
            data=body or None,
            allow_redirects=False,
        ) as answer:
            headers = _kept(answer.headers)
            if answer.headers.get("Content-Encoding"):
                headers["Content-Encoding"] = answer.headers["Content-Encoding"]
            return web.Response(status=answer.status, headers=headers, body=await answer.read())

    async def _fault(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault is Fault.TIMEOUT:
            await asyncio.sleep(self.hang_seconds)
            return web.Response(status=504, text="held too long")
        if fault is Fault.RESET:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the proxy reset the connection")
        if fault is Fault.BAD_GATEWAY_HTML:
            return web.Response(status=502, text=CLOUDFLARE_502, content_type="text/html")
        status, headers, body = _json_fault(fault)
        return web.Response(
            status=status, headers=headers, text=json.dumps(body), content_type="application/json"
        )


def _json_fault(fault: Fault) -> tuple[int, dict[str, str], dict[str, object]]:
    """Status, headers and body of a fault a platform answers in JSON.

    The body carries both common shapes, GitHub's ``message`` and Vercel's
    ``error: {code, message}``, so each provider's parser finds what it looks for.
    """

    def body(code: str, message: str) -> dict[str, object]:
        return {"message": message, "error": {"code": code, "message": message}}

    if fault is Fault.UNAUTHORIZED:
        return 401, {}, body("unauthorized", "Bad credentials")
    if fault is Fault.FORBIDDEN:
        return 403, {}, body("forbidden", "Resource not accessible by integration")
    if fault is Fault.FORBIDDEN_RATE_LIMIT:
        reset = str(int(time.time()) + 1)
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": reset,
        }
        return 403, headers, body("rate_limited", "API rate limit exceeded for installation.")
    if fault is Fault.NOT_FOUND:
        return 404, {}, body("not_found", "Not Found")
    if fault is Fault.CONFLICT:
        return 409, {}, body("conflict", "Conflict: another operation is in progress")
    if fault is Fault.RATE_LIMITED:
        return 429, {"Retry-After": "1"}, body("rate_limited", "Too many requests")
    if fault is Fault.SERVER_ERROR:
        return 500, {}, body("internal_server_error", "Internal Server Error")
    raise AssertionError(f"{fault} is not answered in JSON")  # pragma: no cover
