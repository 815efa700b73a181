"""End to end: charts of the prometheus checks in the rollback's thread while monitoring,
from a real Prometheus into the fake Slack, with a real bot process."""

from __future__ import annotations

from typing import Any

from playground.slack_api import FakeSlack
from tests.e2e_helpers import CHANNEL
from tests.support.bot import StartBot
from tests.support.png import png_size
from tests.support.prometheus import ERROR_RATIO, SHIFTING, ErrorRateApp, wait_for_ratio
from tests.support.services import HttpServerFactory
from tests.support.vercel import FakeVercel
from tests.test_e2e_monitoring import frontend_config, replies, rolled_back


def with_prometheus_check(
    config: dict[str, Any], url: str, name: str, query: str, threshold: float
) -> None:
    checks = config["services"]["frontend"]["environments"]["production"]["checks"]
    checks.append(
        {"name": name, "type": "prometheus", "url": url, "query": query, "threshold": threshold}
    )


def is_timeline(message: dict[str, Any]) -> bool:
    """The live timeline reply repeats every line of the thread."""
    return str(message.get("text", "")).startswith("Timeline of rollback")


def charts(fake: FakeSlack, card: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in fake.uploads(CHANNEL, card["ts"]) if f["name"].endswith(".png")]


async def test_a_chart_goes_with_the_alert_and_another_ends_the_window(
    start_rollbot: StartBot,
    vercel: FakeVercel,
    http_server: HttpServerFactory,
    prometheus_url: str,
    error_rate_app: ErrorRateApp,
) -> None:
    error_rate_app.set_ratio(100, 0)
    await wait_for_ratio(prometheus_url, lambda v: v < 0.01)
    site = await http_server(200, "<html>frontend</html>")
    monitoring = {"interval_minutes": 0.02, "window_minutes": 0.25}  # a round every 1.2 s
    config = frontend_config(vercel, site, monitoring=monitoring)
    with_prometheus_check(config, prometheus_url, "error rate", ERROR_RATIO, 0.05)
    bot = await start_rollbot(config, extra_env={"VERCEL_TOKEN": vercel.token})
    card = await rolled_back(bot)
    await bot.fake.wait_for(lambda: replies(bot, card, "Monitoring frontend/production"))
    assert charts(bot.fake, card) == []  # nothing to show while all is well

    error_rate_app.set_ratio(50, 50)
    await bot.fake.wait_for(lambda: replies(bot, card, "started failing"), timeout=30)
    (first,) = await bot.fake.wait_for(lambda: charts(bot.fake, card), timeout=20)
    error_rate_app.set_ratio(100, 0)
    await bot.fake.wait_for(lambda: replies(bot, card, "Monitoring complete"), timeout=30)
    first, last = await bot.fake.wait_for(
        lambda: found if len(found := charts(bot.fake, card)) == 2 else None, timeout=20
    )

    (rb,) = await bot.store.find()
    for chart in (first, last):
        assert chart["name"] == "error-rate.png"
        assert chart["title"] == f"error rate: frontend/production after rollback {rb.id}"
        assert png_size(chart["data"]) == (640, 280)
        assert chart["alt_txt"].startswith("Line chart of error rate from before the release")
        assert "the threshold (< 0.05)" in chart["alt_txt"]
    # One chart after the alert, before the last line; the other after the last line.
    thread = [m for m in bot.fake.thread(CHANNEL, card["ts"]) if not is_timeline(m)]
    alert = next(i for i, m in enumerate(thread) if "started failing" in m["text"])
    done = next(i for i, m in enumerate(thread) if "Monitoring complete" in m["text"])
    pngs = {f["id"] for f in charts(bot.fake, card)}
    shared = [i for i, m in enumerate(thread) if {f["id"] for f in m.get("files") or []} & pngs]
    assert [thread[i]["files"][0]["id"] for i in shared] == [first["id"], last["id"]]
    assert alert < shared[0] < done < shared[1]
    assert not replies(bot, card, "Could not")


async def test_a_chart_that_cannot_be_drawn_leaves_the_last_line_and_says_why(
    start_rollbot: StartBot,
    vercel: FakeVercel,
    http_server: HttpServerFactory,
    prometheus_url: str,
) -> None:
    site = await http_server(200, "<html>frontend</html>")
    monitoring = {"interval_minutes": 0.01, "window_minutes": 0.05}  # 5 rounds in 3 s
    config = frontend_config(vercel, site, monitoring=monitoring)
    # The check passes (one sample, 1 < 2); its range query, the chart's, has several series.
    with_prometheus_check(config, prometheus_url, "buckets", SHIFTING, 2)
    bot = await start_rollbot(config, extra_env={"VERCEL_TOKEN": vercel.token})
    card = await rolled_back(bot)

    (line,) = await bot.fake.wait_for(lambda: replies(bot, card, "Could not draw"), timeout=30)
    assert line.startswith(":warning: Could not draw the chart of buckets: the query returned ")
    assert line.endswith(" series; it must return exactly one.")
    (done,) = replies(bot, card, "Monitoring complete")
    assert "0 changes" in done
    texts = [m.get("text", "") for m in bot.fake.thread(CHANNEL, card["ts"])]
    assert texts.index(done) < texts.index(line)
    assert charts(bot.fake, card) == []


async def test_without_files_write_the_window_ends_with_a_line_for_the_chart(
    start_rollbot: StartBot,
    vercel: FakeVercel,
    http_server: HttpServerFactory,
    prometheus_url: str,
    error_rate_app: ErrorRateApp,
) -> None:
    error_rate_app.set_ratio(100, 0)
    await wait_for_ratio(prometheus_url, lambda v: v < 0.01)
    site = await http_server(200, "<html>frontend</html>")
    monitoring = {"interval_minutes": 0.01, "window_minutes": 0.05}
    config = frontend_config(vercel, site, monitoring=monitoring)
    with_prometheus_check(config, prometheus_url, "error rate", ERROR_RATIO, 0.05)
    bot = await start_rollbot(config, extra_env={"VERCEL_TOKEN": vercel.token})
    bot.fake.scopes -= {"files:write"}
    card = await rolled_back(bot)

    (line,) = await bot.fake.wait_for(lambda: replies(bot, card, "Could not upload"), timeout=30)
    assert line == (
        ":warning: Could not upload the chart of error rate: Slack refused (missing_scope)."
    )
    (done,) = replies(bot, card, "Monitoring complete")
    texts = [m["text"] for m in bot.fake.thread(CHANNEL, card["ts"])]
    assert texts.index(done) < texts.index(line)
    assert charts(bot.fake, card) == []
