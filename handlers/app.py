"""Build the Bolt app, its error handler and the HTTP server around it."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.typedefs import Handler
from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.checklists import ChecklistSection, checklist_sections
from bot.engine import Engine
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.metrics import Metrics, RequestKind
from bot.models import Rollback
from bot.settings import Settings
from bot.store import StoreUnavailable
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
from handlers.fit import FittingWebClient, install
from handlers.readiness import SlackAuth
from handlers.slack_retries import slack_retry_handlers
from handlers.thread import SlackThread
from handlers.tracing import TracedApp

SLACK_PATH = "/slack/events"
SLACK_TIMEOUT_SECONDS = 15
# Under load Slack may refuse a call a few times running; the outbox waits beside the work.
RATE_LIMIT_RETRIES = 4
# /healthz answers within this even when the store hangs (probes time out at 1-5 s).
HEALTH_TIMEOUT_SECONDS = 1.0
CHALLENGE = {"WWW-Authenticate": "Bearer"}
REQUEST_KINDS: dict[str, RequestKind] = {
    "block_actions": "action",
    "view_submission": "view",
    "view_closed": "view",
}


def web_client(
    settings: Settings,
    count_failure: Callable[[str, str], None] | None = None,
    session: ClientSession | None = None,
) -> AsyncWebClient:
    """Create the Web API client, pointed at SLACK_API_URL when set (retries: slack_retries)."""
    token = settings.SLACK_BOT_TOKEN.get_secret_value() if settings.SLACK_BOT_TOKEN else None
    client = FittingWebClient(
        token=token,
        base_url=settings.SLACK_API_URL or AsyncWebClient.BASE_URL,
        timeout=SLACK_TIMEOUT_SECONDS,
        session=session,
    )
    client.retry_handlers[:] = slack_retry_handlers(RATE_LIMIT_RETRIES, count_failure)
    return client


def slack_session() -> ClientSession:
    """One pool of connections for every call to Slack: its API and response_urls.

    Without it slack_sdk opens and closes a connection, TLS handshake and all, per call.
    """
    return ClientSession(timeout=ClientTimeout(total=SLACK_TIMEOUT_SECONDS))


def create_app(
    settings: Settings,
    engine: Engine,
    metrics: Metrics,
    *,
    http: bool,
    session: ClientSession | None = None,
) -> tuple[AsyncApp, SlackThread]:
    """Build the Bolt app with every listener registered, and the thread they all use."""
    settings.require("SLACK_BOT_TOKEN", *(["SLACK_SIGNING_SECRET"] if http else []))
    client = web_client(settings, metrics.slack_api_failed, session)
    engine.directory = SlackDirectory(client)
    secret = settings.SLACK_SIGNING_SECRET
    app = TracedApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else None,
        request_verification_enabled=http,
    )
    thread = SlackThread(client, engine)
    engine.events.subscribe(thread.on_moved)

    async def checklist_of(rb: Rollback) -> list[ChecklistSection]:
        return await checklist_sections(engine.rollbacks, engine.records, rb.id)

    # Before any listener: what listeners send fits Slack's limits; a request Slack
    # delivers twice is handled once.
    install(app, session)
    once.register(app, engine, exempt=commands.answered_from_text)
    # The timeline registers its hook first so that it stays the thread's first reply.
    reports = incident_report.register(thread, checklist=checklist_of)
    commands.register(app, engine, thread, reports=reports)
    actions.register(app, engine, thread)
    restores.register(app, engine)
    checklist = checklists.register(app, engine, thread)
    notifications.register(app, engine, thread, on_status=checklist.refresh)
    jobs.register(engine, thread)
    incident_channel.register(thread)

    # Global middleware runs after Bolt's signature check: forged requests never count.
    app.middleware(CountRequests(metrics))

    @app.error
    async def on_error(
        error: Exception, body: dict[str, Any], respond: Any, client: AsyncWebClient
    ) -> None:
        await report(error, body, respond, client)

    return app, thread


class CountRequests(AsyncMiddleware):
    """Counts the requests from Slack by what they ask for."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        """Count the request, then go on."""
        self.metrics.slack_request(request_kind(req.body))
        return await next()


def web_app(
    app: AsyncApp, engine: Engine, metrics: Metrics, *, metrics_token: SecretStr | None = None
) -> web.Application:
    """The HTTP server: Slack events, health and metrics (behind a bearer token when given)."""
    server = app.web_app(path=SLACK_PATH)

    slack_auth = SlackAuth(app.client)

    async def readyz(_: web.Request) -> web.Response:
        # Ready only while the store answers and Slack takes the token: a load balancer
        # sends Slack's requests to the replicas that can act on them.
        slack_ok, slack = await slack_auth.state()
        try:
            await asyncio.wait_for(engine.store.ping(), HEALTH_TIMEOUT_SECONDS)
        except (StoreUnavailable, TimeoutError) as exc:
            why = exc.message if isinstance(exc, StoreUnavailable) else "no answer in time"
            return web.json_response(
                {"status": "unavailable", "store": f"unreachable: {why}", "slack": slack},
                status=503,
            )
        status = 200 if slack_ok else 503
        state = "ok" if slack_ok else "unavailable"
        return web.json_response({"status": state, "store": "ok", "slack": slack}, status=status)

    async def scrape(request: web.Request) -> web.Response:
        if metrics_token is not None and not bearer_matches(request, metrics_token):
            return web.Response(status=401, text="401: Unauthorized\n", headers=CHALLENGE)
        body = await metrics.exposition(engine.lease_table)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    @web.middleware
    async def time_answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        # A 401 is a request that failed its signature check: not Slack waiting for us.
        if request.path == SLACK_PATH and response.status != 401:
            metrics.acked(time.perf_counter() - started)
        return response

    server.middlewares.append(time_answer)

    async def healthz(_: web.Request) -> web.Response:
        # Alive is not ready: a database outage must not get every replica restarted.
        return web.json_response({"status": "ok"})

    server.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/livez", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", scrape),
        ]
    )
    return server


def request_kind(body: dict[str, Any]) -> RequestKind:
    """Name what a request from Slack asks for: a command, an action or a view."""
    if "command" in body:
        return "command"
    return REQUEST_KINDS.get(str(body.get("type")), "other")


def bearer_matches(request: web.Request, token: SecretStr) -> bool:
    """Return True when the request carries `Authorization: Bearer <token>`."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time, so the answer's timing does not tell how much of a guess was right.
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())
