"""The prometheus check against a real Prometheus scraping a test app whose error rate we set."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from bot.prom_check import PrometheusCheck
from bot.verification import CheckResult, run_checks
from tests.support.docker import free_port
from tests.support.faults import Fault, FaultProxy, assert_names_cause
from tests.support.prometheus import ERROR_RATIO, JOB, ErrorRateApp, wait_for_ratio
from tests.support.services import HttpServerFactory

TOKEN = "pr0m-Token-9f8e7d6c5b"


def check(url: str, **settings: Any) -> PrometheusCheck:
    values: dict[str, Any] = {
        "name": "error rate",
        "type": "prometheus",
        "url": url,
        "query": ERROR_RATIO,
        "op": "<",
        "threshold": 0.05,
    }
    return PrometheusCheck.model_validate(values | settings)


def near(expected: float) -> Callable[[float], bool]:
    return lambda value: abs(value - expected) < 1e-6


async def run_once(one: PrometheusCheck, environ: dict[str, str] | None = None) -> CheckResult:
    (result,) = await run_checks([one], deadline_seconds=0, environ=environ or {})
    return result


async def test_passes_below_the_threshold_and_fails_above(
    prometheus_url: str, error_rate_app: ErrorRateApp
) -> None:
    error_rate_app.set_ratio(100, 0)
    await wait_for_ratio(prometheus_url, near(0))
    passed = await run_once(check(prometheus_url))
    assert passed.ok, passed.detail
    assert passed.detail.startswith("0 < 0.05: sum(rate(test_http_requests_total")
    assert passed.link == (
        f"{prometheus_url}/graph?g0.expr=sum%28rate%28test_http_requests_total%7Bjob%3D%22"
        f"{JOB}%22%2Ccode%3D%22500%22%7D%5B5s%5D%29%29"
        f"%20%2F%20sum%28rate%28test_http_requests_total%7Bjob%3D%22{JOB}%22%7D%5B5s%5D%29%29"
        "&g0.tab=0"
    )

    error_rate_app.set_ratio(50, 50)
    await wait_for_ratio(prometheus_url, near(0.5))
    failed = await run_once(check(prometheus_url))
    assert not failed.ok
    assert failed.detail.startswith("0.5 is not < 0.05: sum(rate(test_http_requests_total")


async def test_for_seconds_fails_when_the_condition_broke_inside_the_window(
    prometheus_url: str, error_rate_app: ErrorRateApp
) -> None:
    error_rate_app.set_ratio(50, 50)
    await wait_for_ratio(prometheus_url, near(0.5))
    error_rate_app.set_ratio(100, 0)
    await wait_for_ratio(prometheus_url, near(0))

    assert (await run_once(check(prometheus_url))).ok  # fine right now
    window = await run_once(check(prometheus_url, for_seconds=30, step_seconds=1))
    assert not window.ok
    assert "not < 0.05 (within the last 30 s)" in window.detail, window.detail

    # Every rate window of the last 2 s is clean once 2 s more have passed.
    await asyncio.sleep(2.5)
    calm = await run_once(check(prometheus_url, for_seconds=2, step_seconds=1))
    assert calm.ok, calm.detail
    assert calm.detail.startswith("0 at worst < 0.05 over 2 s")


async def test_comparison_with_the_value_before(
    prometheus_url: str, error_rate_app: ErrorRateApp
) -> None:
    error_rate_app.set_ratio(50, 50)
    await wait_for_ratio(prometheus_url, near(0.5))
    bad_release = time.time()
    error_rate_app.set_ratio(99, 1)
    await wait_for_ratio(prometheus_url, near(0.01))
    before = round(time.time() - bad_release)

    recovered = await run_once(check(prometheus_url, threshold=None, compare_before_seconds=before))
    assert recovered.ok, recovered.detail
    assert recovered.detail.startswith(f"0.01 now < 0.5 {before} s ago: sum(rate(")

    worse = await run_once(
        check(prometheus_url, op=">", threshold=None, compare_before_seconds=before)
    )
    assert not worse.ok
    assert worse.detail.startswith(f"0.01 now, not > 0.5 {before} s ago")


async def test_a_bad_query_fails_with_prometheus_own_message(prometheus_url: str) -> None:
    result = await run_once(check(prometheus_url, query="sum(rate(x[5m])"))
    assert not result.ok
    assert result.detail.startswith("Prometheus said (bad_data): invalid parameter")
    assert "parse error" in result.detail


async def test_more_than_one_sample_fails_saying_how_many(
    prometheus_url: str, error_rate_app: ErrorRateApp
) -> None:
    await wait_for_ratio(prometheus_url, lambda v: True)
    query = f'test_http_requests_total{{job="{JOB}"}}'
    result = await run_once(check(prometheus_url, query=query))
    assert not result.ok
    assert result.detail == "the query returned 2 series; it must return exactly one"

    none = await run_once(check(prometheus_url, query='up{job="no-such-job"}'))
    assert none.detail == "the query returned no series; it must return exactly one"


async def test_nan_fails(prometheus_url: str, error_rate_app: ErrorRateApp) -> None:
    error_rate_app.set_ratio(0, 0)
    await wait_for_ratio(prometheus_url, math.isnan)
    result = await run_once(check(prometheus_url))
    assert not result.ok
    assert "NaN" in result.detail


async def test_a_proxy_error_page_fails_naming_a_proxy(prometheus_url: str) -> None:
    async with FaultProxy(prometheus_url) as proxy:
        proxy.inject(Fault.BAD_GATEWAY_HTML, path="^/api/v1/query", times=None)
        result = await run_once(check(proxy.url))
    assert not result.ok
    assert result.detail.startswith("HTTP 502 with an HTML page")
    assert_names_cause(Fault.BAD_GATEWAY_HTML, result.detail)


async def test_an_unreachable_prometheus_fails(prometheus_url: str) -> None:
    result = await run_once(check(f"http://127.0.0.1:{free_port()}"))
    assert not result.ok
    assert result.detail == "connection refused"


async def test_the_token_is_sent_and_never_shown(
    prometheus_url: str, http_server: HttpServerFactory
) -> None:
    environ = {"PROM_TOKEN": TOKEN}
    # A stand-in that records headers, answering as a login page would.
    login = await http_server(200, "<html>sign in</html>")
    result = await run_once(
        check(login.url.removesuffix("/health"), token_env="PROM_TOKEN"), environ
    )
    assert login.received[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert not result.ok and TOKEN not in result.detail

    async with FaultProxy(prometheus_url) as proxy:
        proxy.inject(Fault.UNAUTHORIZED, path="^/api/v1/query")
        refused = await run_once(check(proxy.url, token_env="PROM_TOKEN"), environ)
    assert refused.detail == "HTTP 401: Prometheus refused the request (token?)"

    # Even a query that holds the token's value shows it redacted, in detail and link.
    query = f'absent(up{{job="{TOKEN}"}})'
    leaky = await run_once(check(prometheus_url, query=query, token_env="PROM_TOKEN"), environ)
    assert leaky.detail == '1 is not < 0.05: absent(up{job="[redacted]"})'
    assert leaky.link is not None and TOKEN not in leaky.link

    missing = await run_once(check(prometheus_url, token_env="PROM_TOKEN"))
    assert missing.detail == "PROM_TOKEN is not set"
