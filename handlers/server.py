"""Run the bot: Socket Mode, or an HTTP server for Slack's requests."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Awaitable

import structlog
from aiohttp import ClientSession, web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import redact
from bot.config import RollbotConfig
from bot.engine import Engine
from bot.errors import ConfigError
from bot.metrics import Metrics
from bot.pool import ProviderPool
from bot.settings import Settings, withdraw_own_secrets
from bot.store import Store, StoreUnavailable, open_store
from handlers import flow, jobs
from handlers.app import create_app, slack_session, web_app

log = structlog.get_logger(__name__)

REFUSED_TOKEN = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked"})

# Running rollbacks get this long to finish after SIGTERM, then this long to clean up
# once cancelled (put the old containers back, record it): together under the ~30 s
# that platforms allow before SIGKILL.
DRAIN_SECONDS = 15.0
CANCEL_SECONDS = 8.0
# Then what is still queued for Slack (the outcome of a rollback that just ended) gets this.
FLUSH_SECONDS = 5.0
# How often a replica that starts before its database tries again.
STORE_RETRY_SECONDS = 2.0


async def serve(
    settings: Settings, config: RollbotConfig, *, http: bool, host: str, port: int
) -> None:
    """Serve until SIGINT or SIGTERM, then close the store and providers."""
    if problems := settings.for_serving(http=http):
        raise ConfigError(problems)
    # Logs and Slack messages from here on hide the values of every secret variable.
    redact.install(config, os.environ)
    withdraw_own_secrets(os.environ)
    store = open_store(settings.ROLLBOT_STORE)
    providers = ProviderPool(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sweeper: asyncio.Future[None] | None = None
    session: ClientSession | None = None
    scheduled: asyncio.Future[None] | None = None
    try:
        if not await open_when_reachable(store, stop):
            return
        # Seeded before the start-up sweep moves anything; from then on kept by events.
        metrics = Metrics(provider_of=lambda rb: config.provider_kind(rb.service, rb.environment))
        await metrics.seed(store)
        engine = Engine(config, store, providers)
        engine.events.subscribe(metrics.on_moved)
        # One thread for listeners and the sweeper alike, so hooks run for swept rollbacks.
        session = slack_session()
        app, thread = create_app(settings, engine, metrics, http=http, session=session)
        await flow.sweep(engine, thread)
        sweeper = asyncio.ensure_future(flow.sweep_every(engine, thread, stop))
        # Started after the start-up sweep; it first runs whatever fell due while stopped.
        tick = config.runtime.scheduler_tick_seconds
        scheduled = asyncio.ensure_future(jobs.scheduler(engine, thread).run_every(tick, stop))
        if http:
            runner = web.AppRunner(
                web_app(app, engine, metrics, metrics_token=settings.ROLLBOT_METRICS_TOKEN)
            )
            await runner.setup()
            settle_memory()
            await web.TCPSite(runner, host, port).start()
            log.info("serving http", host=host, port=port, path="/slack/events")
            await stop.wait()
            await runner.shutdown()
            await engine.drain(DRAIN_SECONDS, CANCEL_SECONDS)
            await thread.outbox.flush(within=FLUSH_SECONDS)
            await runner.cleanup()
        else:
            assert settings.SLACK_APP_TOKEN is not None
            app_token = settings.SLACK_APP_TOKEN.get_secret_value()
            await check_app_token(app.client, app_token)
            settle_memory()
            handler = AsyncSocketModeHandler(app, app_token, web_client=app.client)
            # slack_sdk retries a failed connect forever; a stop signal must still win.
            if await until_stopped(handler.connect_async(), stop):
                log.info("connected to slack in socket mode")
                await stop.wait()
            with contextlib.suppress(Exception):
                await handler.close_async()
            await engine.drain(DRAIN_SECONDS, CANCEL_SECONDS)
            await thread.outbox.flush(within=FLUSH_SECONDS)
    finally:
        stop.set()
        if sweeper is not None:
            await sweeper
        if scheduled is not None:
            await scheduled
        await providers.aclose()
        if session is not None:
            await session.close()
        await store.close()


def settle_memory() -> None:
    """Keep what start-up made (modules, config, the app) out of the garbage collector's way.

    A full collection walks every tracked object, and most of rollbot's are imported
    modules that live as long as the process: walking them stalled every request in flight
    for about 100 ms (bench/ack.py). Frozen, they are never walked again.
    """
    gc.collect()
    gc.freeze()


async def open_when_reachable(store: Store, stop: asyncio.Event) -> bool:
    """Open the store, waiting while its database is unreachable; False if stopped first.

    Replicas often start beside their database (compose, a rolling restart): waiting
    here, unready, beats crash-looping.
    """
    while True:
        try:
            await store.open()
            return True
        except StoreUnavailable as exc:
            log.warning("store unreachable at start; retrying", reason=exc.message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STORE_RETRY_SECONDS)
        if stop.is_set():
            return False


async def check_app_token(client: AsyncWebClient, app_token: str) -> None:
    """Fail at start-up when Slack refuses the app token (slack_sdk would retry forever)."""
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        code = str(exc.response.get("error"))
        if code in REFUSED_TOKEN:
            raise ConfigError([f"SLACK_APP_TOKEN was refused by Slack ({code})"]) from None
        log.warning("slack not reachable yet; retrying", error=code)
    except (OSError, TimeoutError) as exc:
        log.warning("slack not reachable yet; retrying", error=type(exc).__name__)


async def until_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run `work` until it ends or `stop` is set; return True if it ended first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        stopper.cancel()
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False
