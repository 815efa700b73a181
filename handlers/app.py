"""Build the Bolt app, its error handler and the HTTP server around it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.checklists import ChecklistSection, checklist_sections
from bot.engine import Engine
from bot.models import Rollback, State
from bot.settings import Settings
from handlers import (
    actions,
    checklists,
    commands,
    incident_channel,
    incident_report,
    jobs,
    notifications,
    once,
    restores,
)
from handlers.directory import SlackDirectory
from handlers.errors import report
from handlers.thread import SlackThread


def web_client(settings: Settings) -> AsyncWebClient:
    """Create the Web API client, pointed at SLACK_API_URL when set, retrying 429s."""
    token = settings.SLACK_BOT_TOKEN.get_secret_value() if settings.SLACK_BOT_TOKEN else None
    client = AsyncWebClient(
        token=token, base_url=settings.SLACK_API_URL or AsyncWebClient.BASE_URL, timeout=15
    )
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    return client


def create_app(settings: Settings, engine: Engine, *, http: bool) -> tuple[AsyncApp, SlackThread]:
    """Build the Bolt app with every listener registered, and the thread they all use."""
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

    async def checklist_of(rb: Rollback) -> list[ChecklistSection]:
        return await checklist_sections(engine.store, rb.id)

    # Before any listener: a request Slack delivers twice is handled once.
    once.register(app, engine)
    # The timeline registers its hook first so that it stays the thread's first reply.
    reports = incident_report.register(thread, checklist=checklist_of)
    commands.register(app, engine, thread, reports=reports)
    actions.register(app, engine, thread)
    restores.register(app, engine)
    checklist = checklists.register(app, engine, thread)
    notifications.register(app, engine, thread, on_status=checklist.refresh)
    jobs.register(engine, thread)
    incident_channel.register(thread)

    @app.error
    async def on_error(
        error: Exception, body: dict[str, Any], respond: Any, client: AsyncWebClient
    ) -> None:
        await report(error, body, respond, client)

    return app, thread


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
