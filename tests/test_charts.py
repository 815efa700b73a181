"""The monitoring chart: what it marks on given data, and its query against a real Prometheus."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from matplotlib.dates import date2num, num2date
from matplotlib.lines import Line2D

from bot.charts import Chart, ChartFailed, Marker, draw, figure, markers, render
from bot.models import Rollback, utcnow
from bot.prom_check import PrometheusCheck
from tests.support.png import png_size
from tests.support.prometheus import ERROR_RATIO, SHIFTING, ErrorRateApp, wait_for_ratio

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def chart() -> Chart:
    # One value a minute, 09:00 to 09:40, with 09:20-09:23 missing.
    points = [(at(m).timestamp(), 0.4 if 10 <= m < 25 else 0.01) for m in range(41)]
    points = [p for p in points if not at(20).timestamp() <= p[0] <= at(23).timestamp()]
    return Chart(
        title="error rate",
        points=points,
        start=at(0),
        end=at(40),
        step_seconds=60,
        markers=[Marker(at(10), "release"), Marker(at(25), "rollback")],
        threshold=0.05,
        op="<",
    )


def lines(chart_: Chart) -> dict[str, Line2D]:
    return {line.get_label(): line for line in figure(chart_).axes[0].get_lines()}


def test_the_chart_marks_the_release_the_rollback_and_the_threshold() -> None:
    fig = figure(chart())
    axes = fig.axes[0]
    assert axes.get_title() == "error rate"
    drawn = {line.get_label(): line for line in axes.get_lines()}
    assert set(drawn) == {"value", "threshold (< 0.05)", "release", "rollback"}

    threshold = drawn["threshold (< 0.05)"]
    assert list(threshold.get_ydata()) == [0.05, 0.05] and threshold.get_linestyle() == "--"
    for label, minute in (("release", 10), ("rollback", 25)):
        xs = list(drawn[label].get_xdata())
        assert xs == [pytest.approx(date2num(at(minute)))] * 2, label
    labels = {text.get_text() for text in axes.texts}
    assert labels == {"release", "rollback", "threshold (< 0.05)"}

    # The axis spans the chart's range and reads in UTC.
    start, end = axes.get_xlim()
    assert num2date(start) == at(0) and num2date(end) == at(40)
    assert axes.get_xlabel() == "UTC"
    assert axes.xaxis.get_major_formatter().format_data(date2num(at(25))) == "09:25"


def test_the_line_breaks_where_prometheus_has_no_values() -> None:
    line = lines(chart())["value"]
    values, times = list(line.get_ydata()), [num2date(x) for x in line.get_xdata()]
    assert sum(math.isnan(v) for v in values) == 1
    gap = next(i for i, v in enumerate(values) if math.isnan(v))
    assert (times[gap - 1], times[gap + 1]) == (at(19), at(24))


def test_a_comparison_check_has_no_threshold_line() -> None:
    plain = Chart(**{**chart().__dict__, "threshold": None})
    assert "threshold (< 0.05)" not in lines(plain)


def test_the_png_is_small() -> None:
    data = render(chart())
    assert png_size(data) == (640, 280)
    assert len(data) < 100_000


def rollback(**fields: object) -> Rollback:
    values: dict[str, object] = {
        "id": "rb-1",
        "service": "backend",
        "environment": "production",
        "requested_by": "U1",
        "current_version": "v2",
        "target_version": "v1",
        "created_at": at(30),
        "finished_at": at(34),
    }
    return Rollback.model_validate(values | fields)


def test_the_release_is_marked_when_the_platform_said_when() -> None:
    known = markers(rollback(released_at=at(10)))
    assert known == [Marker(at(10), "release"), Marker(at(34), "rollback")]
    # Unknown, or too long before to share a chart with the rollback: the request instead.
    assert markers(rollback())[0] == Marker(at(30), "requested")
    assert markers(rollback(released_at=at(30) - timedelta(days=3)))[0].label == "requested"


def check(url: str, **settings: object) -> PrometheusCheck:
    values = {"name": "error rate", "type": "prometheus", "url": url, "query": ERROR_RATIO,
              "threshold": 0.05}  # fmt: skip
    return PrometheusCheck.model_validate(values | settings)


async def test_draw_charts_the_query_from_before_the_release(
    prometheus_url: str, error_rate_app: ErrorRateApp
) -> None:
    error_rate_app.set_ratio(100, 0)
    await wait_for_ratio(prometheus_url, lambda v: v < 0.05)
    now = utcnow()
    rb = rollback(
        released_at=now - timedelta(seconds=20),
        created_at=now - timedelta(seconds=10),
        finished_at=now - timedelta(seconds=5),
    )
    async with httpx.AsyncClient() as client:
        data = await draw(check(prometheus_url), rb, now, client, {})
    assert png_size(data) == (640, 280)


async def test_draw_says_why_it_cannot_without_the_secrets(prometheus_url: str) -> None:
    rb = rollback(created_at=utcnow() - timedelta(seconds=30), finished_at=None)
    async with httpx.AsyncClient() as client:
        with pytest.raises(ChartFailed, match=r"^PROM_TOKEN is not set$"):
            await draw(check(prometheus_url, token_env="PROM_TOKEN"), rb, utcnow(), client, {})
        with pytest.raises(ChartFailed) as failed:
            url = "http://alice:s3cret-Pass@127.0.0.1:9"  # nothing listens on the discard port
            await draw(check(url), rb, utcnow(), client, {})
    assert str(failed.value) == "Prometheus could not be reached (ConnectError)"
    with pytest.raises(ChartFailed, match="it must return exactly one"):
        async with httpx.AsyncClient() as client:
            await draw(check(prometheus_url, query=SHIFTING), rb, utcnow(), client, {})
