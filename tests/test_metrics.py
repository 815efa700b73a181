"""GET /metrics: counts seeded once from the store, then kept by transitions; an optional token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from bot.config import parse_config
from bot.engine import Engine
from bot.metrics import Metrics
from bot.models import FINAL_STATES, State
from bot.pool import ProviderPool
from bot.settings import Settings
from bot.store.sqlite import SQLiteStore
from handlers.app import create_app, web_app
from tests.e2e_helpers import CHANNEL, REQUESTER, backend_config, backend_rollback
from tests.support.bot import BOT_TOKEN, SIGNING_SECRET, StartBot
from tests.support.docker import unique_project
from tests.support.services import ServeApp

TOKEN = "metrics-token-5b0e7d2a91"
# Rows in several states, none in flight: a starting bot's sweep leaves these alone.
STORED = {State.REQUESTED: 2, State.AWAITING_APPROVAL: 1, State.SUCCEEDED: 3, State.FAILED: 1}
NOTHING = {state.value: 0.0 for state in State}

ServeMetrics = Callable[[Metrics], Awaitable[str]]


async def fill(store: SQLiteStore, counts: dict[State, int], first: int = 0) -> None:
    """Write rollbacks straight into the store: `counts[state]` of each state."""
    index = first
    for state, count in counts.items():
        for _ in range(count):
            # One open rollback per service environment: open ones get one each.
            env = "production" if state in FINAL_STATES else f"env-{index}"
            await store.create(backend_rollback(f"rb-{index:08x}", state=state, environment=env))
            index += 1


def by_state(text: str) -> dict[str, float]:
    """Return the rollbot_rollbacks gauge of a scrape, by state."""
    found = re.findall(r'^rollbot_rollbacks\{state="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {state: float(value) for state, value in found}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as opened:
        yield opened


@pytest.fixture
async def serve_metrics(store: SQLiteStore, serve_app: ServeApp) -> AsyncIterator[ServeMetrics]:
    """Serve the bot's HTTP app in this process over `store`; return its URL."""
    config = parse_config(backend_config(unique_project(), 9))
    providers = ProviderPool(config)
    settings = Settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET)

    async def serve(metrics: Metrics) -> str:
        engine = Engine(config, store, providers)
        app, _ = create_app(settings, engine, metrics, http=True)
        return await serve_app(web_app(app, engine, metrics))

    yield serve
    await providers.aclose()


async def test_counts_start_from_the_store_and_follow_transitions(
    store: SQLiteStore, serve_metrics: ServeMetrics
) -> None:
    await fill(store, STORED)
    assert await store.count_by_state() == STORED
    metrics = Metrics()
    await metrics.seed(store)
    url = await serve_metrics(metrics)

    async with httpx.AsyncClient(base_url=url) as client:
        first = await client.get("/metrics")
        assert first.status_code == 200
        assert first.headers["Content-Type"].startswith("text/plain")
        assert by_state(first.text) == NOTHING | {s.value: float(n) for s, n in STORED.items()}
        assert "rollbot_locks_held 0.0" in first.text.splitlines()

        metrics.transitioned(None, State.REQUESTED)
        metrics.transitioned(State.REQUESTED, State.SEVERITY_CONFIRMED)
        metrics.transitioned(State.AWAITING_APPROVAL, State.APPROVED)
        metrics.transitioned(State.APPROVED, State.RUNNING)
        metrics.transitioned(State.REQUESTED, State.CANCELLED)
        metrics.transitioned(None, State.REQUESTED)
        text = (await client.get("/metrics")).text

    assert by_state(text) == NOTHING | {
        "requested": 2.0,
        "severity_confirmed": 1.0,
        "running": 1.0,
        "succeeded": 3.0,
        "failed": 1.0,
        "cancelled": 1.0,
    }
    lines = text.splitlines()
    for line in [
        'rollbot_transitions_total{from_state="none",to_state="requested"} 2.0',
        'rollbot_transitions_total{from_state="requested",to_state="severity_confirmed"} 1.0',
        'rollbot_transitions_total{from_state="awaiting_approval",to_state="approved"} 1.0',
        'rollbot_transitions_total{from_state="approved",to_state="running"} 1.0',
        'rollbot_transitions_total{from_state="requested",to_state="cancelled"} 1.0',
    ]:
        assert line in lines


async def test_a_scrape_reads_no_rollbacks_however_many_there_are(
    store: SQLiteStore, serve_metrics: ServeMetrics
) -> None:
    await fill(store, {State.SUCCEEDED: 4_000, State.FAILED: 1_000})
    metrics = Metrics()
    await metrics.seed(store)
    url = await serve_metrics(metrics)
    statements: list[str] = []
    # The store's own connection, traced: every statement a scrape makes is seen here.
    assert store._conn is not None
    await store._conn.set_trace_callback(statements.append)

    async with httpx.AsyncClient(base_url=url) as client:
        first = (await client.get("/metrics")).text
        scraped = list(statements)
        await fill(store, {State.SUCCEEDED: 1}, first=5_000)  # behind the metrics' back
        statements.clear()
        second = (await client.get("/metrics")).text
        scraped += statements

    assert first == second
    assert by_state(first) == NOTHING | {"succeeded": 4_000.0, "failed": 1_000.0}
    assert not [s for s in scraped if "rollbacks" in s], scraped
    assert [s for s in scraped if "FROM leases" in s], scraped


async def test_a_token_guards_metrics_and_never_reaches_the_log(
    start_rollbot: StartBot, tmp_path: Path
) -> None:
    # The store a deployed bot restarts with: seeding happens in the real process.
    async with SQLiteStore(str(tmp_path / "data" / "rollbot.db")) as store:
        await fill(store, STORED)
    config = backend_config(unique_project(), 9)
    bot = await start_rollbot(config, extra_env={"ROLLBOT_METRICS_TOKEN": TOKEN})
    status, _ = await bot.slack.command("help", user=REQUESTER, channel=CHANNEL)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    forged, _ = await bot.slack.raw(b"command=%2Frollback&text=help", form)

    async with httpx.AsyncClient(base_url=bot.url) as client:
        refused = [
            await client.get("/metrics"),
            await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}),
            await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}"}),
            await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}),
            await client.get("/metrics", headers={"Authorization": TOKEN}),
        ]
        allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        health = await client.get("/readyz")

    assert [r.status_code for r in refused] == [401] * len(refused)
    assert {r.headers["WWW-Authenticate"] for r in refused} == {"Bearer"}
    assert not [r for r in refused if "rollbot_" in r.text]
    assert (status, forged) == (200, 401)
    assert allowed.status_code == 200
    lines = allowed.text.splitlines()
    assert 'rollbot_slack_requests_total{kind="command"} 1.0' in lines  # the signed one
    assert "rollbot_ack_seconds_count 1.0" in lines
    assert by_state(allowed.text) == NOTHING | {s.value: float(n) for s, n in STORED.items()}
    assert health.status_code == 200 and health.json()["store"] == "ok"
    assert TOKEN not in bot.log()
    assert TOKEN[:-1] not in bot.log()


async def test_without_a_token_metrics_stay_open(
    store: SQLiteStore, serve_metrics: ServeMetrics
) -> None:
    url = await serve_metrics(Metrics())
    async with httpx.AsyncClient(base_url=url) as client:
        scraped = await client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert scraped.status_code == 200
    assert by_state(scraped.text) == NOTHING


def test_a_blank_token_stops_http_serving_instead_of_leaving_metrics_open() -> None:
    settings = Settings(
        SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, ROLLBOT_METRICS_TOKEN=" "
    )
    (problem,) = settings.for_serving(http=True)
    assert "ROLLBOT_METRICS_TOKEN is empty" in problem
    assert settings.for_serving(http=False) == ["environment variable SLACK_APP_TOKEN is not set"]
