"""Build the Bolt app, its error handler and the HTTP server around it."""

from __future__ import annotations

import secrets
from typing import Any

import structlog
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.engine import Engine
from bot.errors import RollbotError
from bot.models import State
from bot.settings import Settings
from handlers import actions, commands
from handlers.directory import SlackDirectory
from handlers.thread import SlackThread

log = structlog.get_logger(__name__)

SLACK_ERRORS = {
    "not_in_channel": "I am not in this channel: invite me with `/invite @rollbot` and retry.",
    "channel_not_found": "I cannot see this channel: invite me with `/invite @rollbot`.",
    "expired_trigger_id": "That took too long for Slack; click the button again.",
}


def web_client(settings: Settings) -> AsyncWebClient:
    """Create the Web API client, pointed at SLACK_API_URL when set, retrying 429s."""
    token = settings.SLACK_BOT_TOKEN.get_secret_value() if settings.SLACK_BOT_TOKEN else None
    client = AsyncWebClient(
        token=token, base_url=settings.SLACK_API_URL or AsyncWebClient.BASE_URL, timeout=15
    )
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    return client


def create_app(settings: Settings, engine: Engine, *, http: bool) -> AsyncApp:
    """Build the Bolt app with every listener registered on the given engine."""
    settings.require("SLACK_BOT_TOKEN", *(["SLACK_SIGNING_SECRET"] if http else []))
    client = web_client(settings)
    engine.directory = SlackDirectory(client)
    secret = settings.SLACK_SIGNING_SECRET
    app = AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else None,
        request_verification_enabled=http,
    )
    thread = SlackThread(client, engine)
    commands.register(app, engine, thread)
    actions.register(app, engine, thread)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any], respond: Any) -> None:
        text = user_message(error)
        if respond is not None and body.get("response_url"):
            await respond(text=text, response_type="ephemeral", replace_original=False)
        else:
            log.warning("error reply dropped: no response_url", text=text)

    return app


def user_message(error: Exception) -> str:
    """Turn an exception into what the user sees; unknown ones get a logged error id."""
    cause = error.__cause__ if isinstance(error.__cause__, RollbotError) else error
    if isinstance(cause, RollbotError):
        log.info("refused", reason=cause.message)
        return cause.message
    if isinstance(error, SlackApiError):
        code = str(error.response.get("error", "unknown"))
        log.warning("slack api error", error=code)
        return SLACK_ERRORS.get(code, f"Slack refused a call ({code}). Nothing else changed.")
    error_id = secrets.token_hex(4)
    log.error("unexpected error", error_id=error_id, exc_info=error)
    return (
        f"Something went wrong (error id `{error_id}`). "
        "The rollback's card and thread show its real state."
    )


def web_app(app: AsyncApp, engine: Engine) -> web.Application:
    """The HTTP server: Slack events, health and metrics."""
    server = app.web_app(path="/slack/events")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(_: web.Request) -> web.Response:
        lines = ["# TYPE rollbot_rollbacks gauge"]
        rollbacks = await engine.store.find(limit=100_000)
        for state in State:
            count = sum(rb.state is state for rb in rollbacks)
            lines.append(f'rollbot_rollbacks{{state="{state.value}"}} {count}')
        lines.append("# TYPE rollbot_locks_held gauge")
        lines.append(f"rollbot_locks_held {len(await engine.store.locks())}")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    server.add_routes([web.get("/healthz", healthz), web.get("/metrics", metrics)])
    return server
