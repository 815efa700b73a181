"""The `prometheus` verification check: a PromQL query's value against a threshold.

Three modes, all through Prometheus's HTTP API:

- instant: `/api/v1/query` now; the one sample must meet `op threshold`;
- window (`for_seconds`): `/api/v1/query_range` over [now - for_seconds, now] at
  `step_seconds`; the value must exist and meet the condition at every step;
- comparison (`compare_before_seconds`): two instant queries, now and at
  now - compare_before_seconds (`time=`); the value now must be `op` the value then
  (and meet `op threshold` too, when a threshold is given).

`probe` raises `PrometheusFailed` with a detail that names the value, the condition and
the (shortened) query, never the token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Literal, Self
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

Op = Literal["<", "<=", ">", ">="]

_OPS: dict[str, Any] = {
    "<": float.__lt__,
    "<=": float.__le__,
    ">": float.__gt__,
    ">=": float.__ge__,
}
_QUERY_SHOWN = 60
# Prometheus refuses a range query of more than 11,000 points per series.
_MAX_STEPS = 10_000


class PrometheusCheck(BaseModel):
    """Compare the value of a PromQL query with a threshold, or with its value earlier."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name shown in the verification table.")
    timeout_seconds: float = Field(default=5, gt=0, description="Timeout of one attempt.")
    type: Literal["prometheus"]
    url: str = Field(description="Prometheus base URL, e.g. https://prometheus.internal:9090.")
    query: str = Field(min_length=1, description="PromQL query returning exactly one sample.")
    op: Op = Field(default="<", description="How the value must compare: <, <=, > or >=.")
    threshold: float | None = Field(
        default=None,
        description="Value to compare with; required unless compare_before_seconds is set.",
    )
    for_seconds: float | None = Field(
        default=None,
        gt=0,
        description="The condition must hold at every step of the last for_seconds"
        " (one query_range call), not only now.",
    )
    step_seconds: float = Field(
        default=5, gt=0, description="Resolution of the for_seconds window."
    )
    compare_before_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Comparison mode: the value now must be `op` the value this many"
        " seconds ago (say, before the bad release).",
    )
    token_env: str | None = Field(
        default=None, description="Variable holding a bearer token for Prometheus."
    )

    @model_validator(mode="after")
    def _one_mode(self) -> Self:
        if self.threshold is None and self.compare_before_seconds is None:
            raise ValueError("a prometheus check needs threshold or compare_before_seconds")
        if self.for_seconds is not None and self.compare_before_seconds is not None:
            raise ValueError("for_seconds and compare_before_seconds cannot be combined")
        if self.for_seconds is not None and self.for_seconds / self.step_seconds > _MAX_STEPS:
            raise ValueError(f"for_seconds / step_seconds must be at most {_MAX_STEPS}")
        return self


class PrometheusFailed(Exception):
    """Prometheus answered, but the check failed; the message is the detail."""


def graph_url(check: PrometheusCheck) -> str:
    """Link to the query in Prometheus's graph page, without URL credentials."""
    parts = urlsplit(_base(check))
    netloc = parts.netloc.rpartition("@")[2]
    base = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return f"{base}/graph?g0.expr={quote(check.query, safe='')}&g0.tab=0"


async def probe(check: PrometheusCheck, client: httpx.AsyncClient, token: str | None) -> str:
    """Evaluate the check once; return the detail, or raise `PrometheusFailed`."""
    api = _Api(check, client, token)
    now = time.time()
    if check.for_seconds is not None:
        return await _window(check, api, now)
    value = await api.instant(now)
    shown = _short(check.query)
    if check.compare_before_seconds is not None:
        before = await api.instant(now - check.compare_before_seconds)
        ago = f"{check.compare_before_seconds:g} s ago"
        if not _holds(value, check.op, before):
            raise PrometheusFailed(
                f"{_num(value)} now, not {check.op} {_num(before)} {ago}: {shown}"
            )
        if check.threshold is not None and not _holds(value, check.op, check.threshold):
            raise PrometheusFailed(
                f"{_num(value)} is not {check.op} {_num(check.threshold)}: {shown}"
            )
        return f"{_num(value)} now {check.op} {_num(before)} {ago}: {shown}"
    assert check.threshold is not None
    if not _holds(value, check.op, check.threshold):
        raise PrometheusFailed(f"{_num(value)} is not {check.op} {_num(check.threshold)}: {shown}")
    return f"{_num(value)} {check.op} {_num(check.threshold)}: {shown}"


async def series(
    check: PrometheusCheck,
    client: httpx.AsyncClient,
    token: str | None,
    start: float,
    end: float,
    step: float,
) -> list[tuple[float, float]]:
    """The query's one series over [start, end] at `step`, as (time, value); raise on errors."""
    return await _Api(check, client, token).range(start, end, step)


async def _window(check: PrometheusCheck, api: _Api, now: float) -> str:
    assert check.for_seconds is not None and check.threshold is not None
    start = now - check.for_seconds
    points = await api.range(start, now, check.step_seconds)
    expected = int(check.for_seconds // check.step_seconds) + 1
    shown = _short(check.query)
    within = f"within the last {check.for_seconds:g} s"
    for at, value in points:
        if not _holds(value, check.op, check.threshold):
            ago = round(now - at)
            raise PrometheusFailed(
                f"{_num(value)} {ago} s ago, not {check.op} {_num(check.threshold)}"
                f" ({within}): {shown}"
            )
    # A breach is the more useful news, so gaps are reported only when there is none.
    if len(points) < expected:
        raise PrometheusFailed(
            f"no value at {expected - len(points)} of {expected} steps {within}: {shown}"
        )
    worst = max(v for _, v in points) if check.op in ("<", "<=") else min(v for _, v in points)
    return (
        f"{_num(worst)} at worst {check.op} {_num(check.threshold)}"
        f" over {check.for_seconds:g} s: {shown}"
    )


class _Api:
    """The two Prometheus API calls the check makes, with its errors in plain words."""

    def __init__(self, check: PrometheusCheck, client: httpx.AsyncClient, token: str | None):
        self.check = check
        self.client = client
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    async def instant(self, at: float) -> float:
        """The query's one sample at `at` (a vector of one series, or a scalar)."""
        data = await self._get("/api/v1/query", {"query": self.check.query, "time": f"{at:.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return _sample(result)
        if kind != "vector" or not isinstance(result, list):
            raise PrometheusFailed(f"the query returned a {kind}, not one sample")
        _exactly_one(result)
        return _sample(result[0].get("value"))

    async def range(self, start: float, end: float, step: float) -> list[tuple[float, float]]:
        """The query's one series over [start, end], as (time, value) pairs."""
        params = {
            "query": self.check.query,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step:g}",
        }
        data = await self._get("/api/v1/query_range", params)
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list):
            raise PrometheusFailed(f"the query returned a {data.get('resultType')}, not a series")
        _exactly_one(result)
        points = [
            (float(pair[0]), _sample(pair, nan_ok=True)) for pair in result[0].get("values") or []
        ]
        # A NaN step (0/0: no traffic then) has no value, like a missing one.
        return [(at, value) for at, value in points if not math.isnan(value)]

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        response = await self.client.get(
            _base(self.check) + path,
            params=params,
            headers=self.headers,
            timeout=self.check.timeout_seconds,
        )
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        body: Any = None
        if "json" in content_type:
            try:
                body = response.json()
            except ValueError:
                body = None
        if isinstance(body, dict) and body.get("status") == "error":
            # Prometheus's own words: a PromQL syntax error, a query timeout, ...
            kind = body.get("errorType") or "error"
            raise PrometheusFailed(f"Prometheus said ({kind}): {_oneline(str(body.get('error')))}")
        if status in (401, 403):
            raise PrometheusFailed(f"HTTP {status}: Prometheus refused the request (token?)")
        if "html" in content_type:
            raise PrometheusFailed(
                f"HTTP {status} with an HTML page, not Prometheus's API:"
                " a proxy or login page in front of it?"
            )
        if status >= 400:
            raise PrometheusFailed(f"HTTP {status} from Prometheus")
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise PrometheusFailed(f"HTTP {status} without Prometheus's JSON: is {path} there?")
        data: dict[str, Any] = body["data"]
        return data


def _exactly_one(result: Sequence[Any]) -> None:
    if len(result) != 1:
        what = "no series" if not result else f"{len(result)} series"
        raise PrometheusFailed(f"the query returned {what}; it must return exactly one")


def _sample(pair: Any, *, nan_ok: bool = False) -> float:
    """The value of a [time, "value"] pair; NaN fails (0/0: no traffic in the window)."""
    try:
        value = float(pair[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise PrometheusFailed(f"unreadable sample {str(pair)[:40]}") from exc
    if math.isnan(value) and not nan_ok:
        raise PrometheusFailed("the query returned NaN (a division by zero: no traffic?)")
    return value


def _holds(value: float, op: str, other: float) -> bool:
    return bool(_OPS[op](value, other))


def _base(check: PrometheusCheck) -> str:
    return check.url.rstrip("/")


def _num(value: float) -> str:
    return f"{value:.4g}"


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _short(query: str) -> str:
    text = _oneline(query)
    return text if len(text) <= _QUERY_SHOWN else text[: _QUERY_SHOWN - 1] + "…"
