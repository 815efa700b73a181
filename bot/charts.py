"""A small PNG of a prometheus check's metric across the release, the rollback and now.

`draw` asks Prometheus for the check's query over a range (the check's own client code,
`prom_check.series`) and renders it off the event loop; `render` is the drawing alone.
Everything that goes wrong becomes `ChartFailed`, whose message names no token or URL.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from bot import prom_check
from bot.models import Rollback
from bot.prom_check import PrometheusCheck

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Enough points for a chart 600 pixels wide; Prometheus caps a series at 11,000.
MAX_POINTS = 300
# A release older than this is shown as the request instead: a chart of days would
# flatten the hour that matters.
LOOKBACK = timedelta(hours=24)
# How much of the chart comes before its first marker, so the metric before it shows.
LEAD_SHARE = 0.25
MIN_LEAD = timedelta(minutes=1)
SIZE_INCHES = (6.4, 2.8)
DPI = 100


class ChartFailed(Exception):
    """The chart could not be drawn; the message says why in a few words."""


@dataclass(frozen=True)
class Marker:
    """A moment marked on the chart with a vertical line and a label."""

    at: datetime
    label: str


@dataclass(frozen=True)
class Chart:
    """What one chart shows: a series, the moments around it and the check's threshold."""

    title: str
    points: Sequence[tuple[float, float]]
    start: datetime
    end: datetime
    step_seconds: float
    markers: Sequence[Marker]
    threshold: float | None = None
    op: str = "<"


def markers(rb: Rollback) -> list[Marker]:
    """Return the release (or, unknown or long before, the request) and the rollback's end."""
    if rb.released_at is not None and rb.created_at - rb.released_at <= LOOKBACK:
        found = [Marker(rb.released_at, "release")]
    else:
        found = [Marker(rb.created_at, "requested")]
    if rb.finished_at is not None:
        found.append(Marker(rb.finished_at, "rollback"))
    return found


async def draw(
    check: PrometheusCheck,
    rb: Rollback,
    now: datetime,
    client: httpx.AsyncClient,
    environ: Mapping[str, str],
) -> bytes:
    """Query the check's metric from before the release until `now` and render it as PNG."""
    token = None
    if check.token_env:
        token = environ.get(check.token_env) or None
        if token is None:
            raise ChartFailed(f"{check.token_env} is not set")
    marks = markers(rb)
    first = min(m.at for m in marks)
    start = first - max(MIN_LEAD, (now - first) * LEAD_SHARE)
    step = max(1.0, math.ceil((now - start).total_seconds() / MAX_POINTS))
    try:
        points = await prom_check.series(
            check, client, token, start.timestamp(), now.timestamp(), step
        )
    except prom_check.PrometheusFailed as exc:
        raise ChartFailed(str(exc)) from exc
    except httpx.TimeoutException as exc:
        raise ChartFailed(f"Prometheus did not answer within {check.timeout_seconds:g} s") from exc
    except httpx.HTTPError as exc:
        # The exception's text holds the URL, which may carry credentials.
        raise ChartFailed(f"Prometheus could not be reached ({type(exc).__name__})") from exc
    if not points:
        raise ChartFailed(f"the query has no values since {start:%H:%M} UTC")
    chart = Chart(
        title=check.name,
        points=points,
        start=start,
        end=now,
        step_seconds=step,
        markers=marks,
        threshold=check.threshold,
        op=check.op,
    )
    # Rendering is synchronous and CPU-bound: in a thread, the bot keeps answering Slack.
    return await asyncio.to_thread(render, chart)


def render(chart: Chart) -> bytes:
    """Render a chart as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure(chart)).print_png(buffer)
    return buffer.getvalue()


def figure(chart: Chart) -> Figure:
    """Build the chart's figure: the series, a dashed threshold, a dotted line per marker."""
    # Imported here: matplotlib adds half a second to the bot's start, and only a chart
    # needs it.
    from matplotlib.dates import DateFormatter, date2num
    from matplotlib.figure import Figure

    # A Figure of its own, not pyplot: no global state shared between threads.
    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    axes = fig.add_subplot()
    times, values = _with_gaps(chart.points, chart.step_seconds)
    axes.plot(date2num(times), values, color="tab:blue", linewidth=1.5, label="value")
    # Labels sit on a white patch so the series under them does not hide them.
    label_box = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1}
    if chart.threshold is not None:
        threshold = f"threshold ({chart.op} {chart.threshold:g})"
        axes.axhline(chart.threshold, color="tab:red", linestyle="--", linewidth=1, label=threshold)
        axes.annotate(
            threshold,
            xy=(1, chart.threshold),
            xycoords=("axes fraction", "data"),
            xytext=(-3, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=8,
            color="tab:red",
            bbox=label_box,
        )
    for marker in chart.markers:
        axes.axvline(
            float(date2num(marker.at)),
            color="dimgray",
            linestyle=":",
            linewidth=1.2,
            label=marker.label,
        )
        axes.annotate(
            marker.label,
            xy=(float(date2num(marker.at)), 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=8,
            color="dimgray",
            bbox=label_box,
        )
    axes.set_title(chart.title, fontsize=10)
    axes.set_xlim(float(date2num(chart.start)), float(date2num(chart.end)))
    axes.set_xlabel("UTC", fontsize=8)
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=UTC))
    axes.tick_params(labelsize=8)
    axes.grid(alpha=0.3)
    return fig


def _with_gaps(
    points: Sequence[tuple[float, float]], step: float
) -> tuple[list[datetime], list[float]]:
    """Times and values, with a NaN where steps are missing so the line breaks there."""
    times: list[datetime] = []
    values: list[float] = []
    previous: float | None = None
    for at, value in points:
        if previous is not None and at - previous > step * 1.5:
            times.append(datetime.fromtimestamp(previous + step, UTC))
            values.append(math.nan)
        times.append(datetime.fromtimestamp(at, UTC))
        values.append(value)
        previous = at
    return times, values
