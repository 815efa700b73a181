"""A real Prometheus started by the test command, and the app it scrapes.

`scripts/start-prometheus.sh` runs Prometheus on 127.0.0.1:59090, scraping
127.0.0.1:59091 every second; run pytest with
`ROLLBOT_TEST_PROMETHEUS_URL=http://127.0.0.1:59090`. A missing or silent Prometheus
fails the tests that need it instead of skipping them.

`ErrorRateApp` is the scraped target: it serves `test_http_requests_total{code}` with
prometheus-client's exposition, and every scrape counts `ok` requests with code 200 and
`errors` with code 500, so the error ratio Prometheus computes is what the test set.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

PROMETHEUS_URL_VAR = "ROLLBOT_TEST_PROMETHEUS_URL"
# Fixed: scripts/start-prometheus.sh writes it into the scrape config.
APP_PORT = 59091
JOB = "rollbot-test-app"
ERROR_RATIO = (
    f'sum(rate(test_http_requests_total{{job="{JOB}",code="500"}}[5s]))'
    f' / sum(rate(test_http_requests_total{{job="{JOB}"}}[5s]))'
)

# One series at any instant, a new one (a new `bucket` label) every 2 s: an instant query
# returns one sample, a range query of more than 2 s several series.
SHIFTING = 'count_values("bucket", floor(vector(time()) / 2))'


class ErrorRateApp:
    """Serves /metrics on 127.0.0.1:`APP_PORT` from its own thread and event loop."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "test_http_requests", "Requests served, by status code.", ["code"],
            registry=self.registry,
        )  # fmt: skip
        # Both series exist from the start, as a real app's would after its first requests.
        self.requests.labels(code="200")
        self.requests.labels(code="500")
        self.per_scrape = (100, 0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def set_ratio(self, ok: int, errors: int) -> None:
        """Count `ok` good and `errors` failed requests at every later scrape."""
        self.per_scrape = (ok, errors)

    def start(self) -> None:
        """Listen, or fail the test saying the port is taken."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        try:
            future.result(timeout=10)
        except OSError as exc:
            self.stop()
            pytest.fail(f"the scraped test app cannot listen on 127.0.0.1:{APP_PORT}: {exc}")

    def stop(self) -> None:
        """Stop listening and end the thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", APP_PORT).start()

    async def _metrics(self, request: web.Request) -> web.Response:
        ok, errors = self.per_scrape
        self.requests.labels(code="200").inc(ok)
        self.requests.labels(code="500").inc(errors)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@pytest.fixture(scope="session")
def prometheus_url() -> str:
    """Base URL of the test Prometheus, checked through its readiness endpoint."""
    url = os.environ.get(PROMETHEUS_URL_VAR)
    if not url:
        pytest.fail(
            f"{PROMETHEUS_URL_VAR} is not set: start Prometheus with"
            " scripts/start-prometheus.sh and export it",
            pytrace=False,
        )
    try:
        httpx.get(f"{url}/-/ready", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(
            f"{PROMETHEUS_URL_VAR} is set but Prometheus does not answer there ({exc}); "
            "start it with scripts/start-prometheus.sh",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def error_rate_app(prometheus_url: str) -> Iterator[ErrorRateApp]:
    """The app Prometheus scrapes, serving for the whole session."""
    app = ErrorRateApp()
    app.start()
    yield app
    app.stop()


async def wait_for_ratio(
    prometheus_url: str, accept: Callable[[float], bool], *, timeout: float = 40
) -> float:
    """Poll the error ratio until Prometheus has scraped the change (bounded)."""
    deadline = time.monotonic() + timeout
    seen: Any = None
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            answer = await client.get(
                f"{prometheus_url}/api/v1/query", params={"query": ERROR_RATIO}
            )
            seen = answer.json()["data"]["result"]
            if len(seen) == 1 and accept(value := float(seen[0]["value"][1])):
                return value
            await asyncio.sleep(0.5)
    raise AssertionError(f"the error ratio did not change in {timeout:g} s; last seen {seen}")
