"""The fake Vercel's error answers: its own, and those tests inject in place of real ones.

Errors are ``{"error": {"code", "message"}}``. A test may queue, per route, an error with
Vercel's body, a 429 as Vercel sends it, or the HTML page of the CDN in front of the API.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

Json = dict[str, Any]
Route = Literal[
    "deployments",
    "project",
    "project-update",
    "rollback",
    "promote",
    "rolling",
    "rolling-abort",
    "rolling-complete",
]

CDN_ERROR_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><title>api.vercel.com | {status}: Bad gateway</title></head>
<body><div id="cf-error-details" class="cf-error-details-wrapper">
<h1><span class="cf-error-type">Bad gateway</span>
<span class="code-label">Error code {status}</span></h1>
<p>The web server reported a bad gateway error.</p>
<p>Cloudflare Ray ID: <strong>8f2a6c1b0d4e7a93</strong> &bull; Your IP: 127.0.0.1</p>
</div></body></html>"""

DEFAULT_ERRORS = {
    400: ("bad_request", "An english description of the error that just occurred"),
    401: ("forbidden", "Not authorized"),
    403: ("forbidden", "Not authorized"),
    404: ("not_found", "Could not find the resource"),
    409: ("conflict", "The request conflicts with the current state"),
    500: ("internal_server_error", "An unexpected internal error occurred"),
    502: ("internal_server_error", "An unexpected internal error occurred"),
    503: ("internal_server_error", "An unexpected internal error occurred"),
}


@dataclass
class Failure:
    """An answer a test injected in place of the real one."""

    status: int
    body: Json | str
    headers: dict[str, str]
    during_job: bool = False  # only while an alias job runs (status polling)

    def answer(self) -> web.Response:
        """The injected answer, as JSON unless its body is a page."""
        if isinstance(self.body, str):
            return web.Response(body=self.body.encode(), status=self.status, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


class FailureKnobs:
    """The knobs that make the fake answer a route's next requests with an error."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[Failure]] = {}

    def fail(
        self,
        route: Route,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        extra: Json | None = None,
        during_job: bool = False,
    ) -> None:
        """Answer the next `times` requests of a route with this error instead."""
        default_code, default_message = DEFAULT_ERRORS.get(status, ("bad_request", "Bad request"))
        detail: Json = {"code": code or default_code, "message": message or default_message}
        detail.update(extra or {})
        queue = self._failures.setdefault(route, deque())
        queue.extend(
            Failure(status, {"error": detail}, dict(headers or {}), during_job)
            for _ in range(times)
        )

    def fail_html(self, route: Route, status: int = 502, *, times: int = 1) -> None:
        """Answer the next `times` requests of a route with the CDN's HTML error page."""
        page = CDN_ERROR_PAGE.format(status=status)
        headers = {"Content-Type": "text/html; charset=UTF-8", "Server": "cloudflare"}
        queue = self._failures.setdefault(route, deque())
        queue.extend(Failure(status, page, headers) for _ in range(times))

    def rate_limit(
        self,
        route: Route,
        *,
        times: int = 1,
        retry_after: int | None = 1,
        reset_in: int = 1,
        status: int = 429,
        during_job: bool = False,
    ) -> None:
        """Answer the next `times` requests of a route with 429, as Vercel does."""
        reset = int(time.time()) + max(reset_in, retry_after or 0)
        headers = {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset),
        }
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        limit = {"remaining": 0, "reset": reset, "resetMs": reset * 1000, "total": 100}
        self.fail(
            route,
            status,
            code="rate_limited",
            message=f"The rate limit of 100 exceeded for '{route}'. Try again in {retry_after} s",
            times=times,
            headers=headers,
            extra={"limit": limit},
            during_job=during_job,
        )

    def _next_failure(self, route: str, job_running: Callable[[], bool]) -> Failure | None:
        """Take the next injected answer of a route, if one applies now."""
        queue = self._failures.get(route)
        if not queue:
            return None
        if queue[0].during_job and not job_running():
            return None
        return queue.popleft()


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """Answer with Vercel's error body."""
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)
