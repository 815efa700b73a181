"""Run the bot: Socket Mode, or an HTTP server for Slack's requests."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot.config import RollbotConfig
from bot.engine import Engine, ProviderPool
from bot.settings import Settings
from bot.store import open_store
from handlers.app import create_app, web_app

log = structlog.get_logger(__name__)

# Running rollbacks get this long to finish after SIGTERM (platforms kill at ~30 s);
# then they are cancelled, which puts the old containers back and records it.
DRAIN_SECONDS = 20.0


async def serve(
    settings: Settings, config: RollbotConfig, *, http: bool, host: str, port: int
) -> None:
    """Serve until SIGINT or SIGTERM, then close the store and providers."""
    settings.require("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET" if http else "SLACK_APP_TOKEN")
    store = open_store(settings.ROLLBOT_STORE)
    providers = ProviderPool(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await store.open()
        engine = Engine(config, store, providers)
        await engine.sweep()
        app = create_app(settings, engine, http=http)
        if http:
            runner = web.AppRunner(web_app(app, engine))
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            log.info("serving http", host=host, port=port, path="/slack/events")
            await stop.wait()
            await runner.shutdown()
            await engine.drain(DRAIN_SECONDS)
            await runner.cleanup()
        else:
            assert settings.SLACK_APP_TOKEN is not None
            handler = AsyncSocketModeHandler(
                app, settings.SLACK_APP_TOKEN.get_secret_value(), web_client=app.client
            )
            await handler.connect_async()
            log.info("connected to slack in socket mode")
            await stop.wait()
            with contextlib.suppress(Exception):
                await handler.close_async()
            await engine.drain(DRAIN_SECONDS)
    finally:
        await providers.aclose()
        await store.close()
