"""Charts of the prometheus checks, uploaded into a rollback's thread during monitoring."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

import httpx
import structlog
from slack_sdk.errors import SlackApiError

from bot import charts
from bot.charts import ChartFailed
from bot.models import Rollback
from bot.prom_check import PrometheusCheck
from bot.redact import redact
from bot.text import escape
from bot.verification import Check
from handlers.thread import SlackThread

log = structlog.get_logger(__name__)

# All charts of one post, well inside the scheduler's timeout of a monitoring round: a
# slow Prometheus or Slack costs the charts, never the round's own lines.
CHARTS_SECONDS = 45.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ThreadCharts:
    """Uploads one chart per prometheus check; says in a line when one cannot be."""

    def __init__(self, thread: SlackThread, environ: Mapping[str, str] | None = None) -> None:
        self.thread = thread
        self.environ = os.environ if environ is None else environ

    async def post(self, rb: Rollback, checks: Sequence[Check], now: datetime) -> None:
        """Upload a chart of each prometheus check in `checks`; never raises."""
        wanted = [c for c in checks if isinstance(c, PrometheusCheck)]
        if not wanted or not (rb.channel_id and rb.thread_ts):
            return
        problems: list[str] = []
        try:
            async with asyncio.timeout(CHARTS_SECONDS):
                async with httpx.AsyncClient(follow_redirects=False) as client:
                    for check in wanted:
                        problem = await self._one(rb, check, now, client)
                        if problem:
                            problems.append(problem)
        except TimeoutError:
            problems.append(f"Charts not all posted: they took longer than {CHARTS_SECONDS:g} s")
        for problem in problems:
            try:
                await self.thread.reply(rb, f":warning: {escape(redact(problem))}.")
            except Exception as exc:
                log.warning("chart problem not posted", rollback_id=rb.id, error=type(exc).__name__)

    async def _one(
        self, rb: Rollback, check: PrometheusCheck, now: datetime, client: httpx.AsyncClient
    ) -> str | None:
        """Draw and upload one chart; return the line to post when that failed."""
        assert rb.channel_id and rb.thread_ts
        try:
            png = await charts.draw(check, rb, now, client, self.environ)
        except ChartFailed as exc:
            log.warning("chart not drawn", rollback_id=rb.id, check=check.name, reason=str(exc))
            return f"Could not draw the chart of {check.name}: {exc}"
        except Exception as exc:
            log.exception("chart not drawn", rollback_id=rb.id, check=check.name)
            return f"Could not draw the chart of {check.name} ({type(exc).__name__})"
        first = charts.markers(rb)[0]
        threshold = ""
        if check.threshold is not None:
            threshold = f" and the threshold ({check.op} {check.threshold:g})"
        try:
            await self.thread.client.files_upload_v2(
                channel=rb.channel_id,
                thread_ts=rb.thread_ts,
                filename=f"{_UNSAFE.sub('-', check.name).strip('-') or 'chart'}.png",
                content=png,
                title=f"{check.name}: {rb.service}/{rb.environment} after rollback {rb.id}",
                alt_txt=(
                    f"Line chart of {check.name} from before the {first.label} at"
                    f" {first.at:%H:%M} UTC until {now:%H:%M} UTC, with the rollback{threshold}"
                    " marked"
                ),
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            log.warning("chart upload refused", rollback_id=rb.id, check=check.name, error=error)
            return f"Could not upload the chart of {check.name}: Slack refused ({error})"
        except Exception as exc:
            log.warning("chart upload failed", rollback_id=rb.id, error=type(exc).__name__)
            return f"Could not upload the chart of {check.name} ({type(exc).__name__})"
        log.info("chart uploaded", rollback_id=rb.id, check=check.name, bytes=len(png))
        return None
