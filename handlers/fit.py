"""Every message cut to Slack's limits before it is sent: never refused, never cut silently.

Slack refuses a message over its limits (`msg_too_long` over 40,000 characters of text,
`invalid_blocks` for a section over 3,000, a header over 150, a button over 75, more than
50 blocks or 10 context elements; https://docs.slack.dev/reference/block-kit/blocks).
A refused progress line or outcome is lost to the thread, so what the bot sends passes
through here: too long a text is cut at a line end with a note of how much was left out.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from handlers.long_text import MESSAGE_TEXT_MAX, split_text

TEXT_MAX = 40_000
SECTION_TEXT_MAX = 3_000
FIELD_TEXT_MAX = 2_000
FIELDS_MAX = 10
HEADER_MAX = 150
BUTTON_TEXT_MAX = 75
CONTEXT_ELEMENTS_MAX = 10
MESSAGE_BLOCKS_MAX = 50
VIEW_BLOCKS_MAX = 100
# A response_url takes 5 posts in 30 minutes; an answer keeps one for a follow-up.
RESPOND_PARTS_MAX = 4
MESSAGE_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral"})
VIEW_METHODS = frozenset({"views.open", "views.update", "views.push"})


def shorten(text: str, limit: int, where: str = "") -> str:
    """Cut `text` to `limit` characters at a line end, saying how many lines were left out."""
    if len(text) <= limit:
        return text
    tail = f": {where}" if where else ""
    budget = max(0, limit - len(f"\n… (9999999 more line(s) not shown{tail})"))
    cut = text.rfind("\n", 0, budget + 1)
    kept = text[:cut] if cut > budget // 2 else text[:budget]
    more = text[len(kept) :].strip("\n").count("\n") + 1
    return f"{kept}\n… ({more} more line(s) not shown{tail})"


def _cut_text(obj: Any, limit: int) -> None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        obj["text"] = shorten(obj["text"], limit)


def _fit_element(element: Any) -> None:
    if isinstance(element, dict) and element.get("type") == "button":
        text = element.get("text")
        if isinstance(text, dict) and len(text.get("text", "")) > BUTTON_TEXT_MAX:
            text["text"] = text["text"][: BUTTON_TEXT_MAX - 1] + "…"


def fit_block(block: dict[str, Any]) -> dict[str, Any]:
    """One block cut to what Slack accepts in it."""
    kind = block.get("type")
    if kind == "header":
        text = block.get("text") or {}
        if len(text.get("text", "")) > HEADER_MAX:
            text["text"] = text["text"][: HEADER_MAX - 1] + "…"
    elif kind == "section":
        _cut_text(block.get("text"), SECTION_TEXT_MAX)
        fields = block.get("fields") or []
        if len(fields) > FIELDS_MAX:
            block["fields"] = fields = fields[:FIELDS_MAX]
        for field in fields:
            _cut_text(field, FIELD_TEXT_MAX)
        _fit_element(block.get("accessory"))
    elif kind == "context":
        elements = block.get("elements") or []
        if len(elements) > CONTEXT_ELEMENTS_MAX:
            more = len(elements) - CONTEXT_ELEMENTS_MAX + 1
            shown = elements[: CONTEXT_ELEMENTS_MAX - 1]
            block["elements"] = [*shown, {"type": "mrkdwn", "text": f"… and {more} more"}]
        for element in block["elements"] if elements else []:
            _cut_text(element, SECTION_TEXT_MAX)
    elif kind == "actions":
        for element in block.get("elements") or []:
            _fit_element(element)
    return block


def fit_blocks(blocks: list[Any], limit: int = MESSAGE_BLOCKS_MAX) -> list[Any]:
    """Blocks cut to Slack's limits; over `limit` blocks, the last one says how many are left."""
    fitted = [fit_block(copy.deepcopy(b)) if isinstance(b, dict) else b for b in blocks]
    if len(fitted) <= limit:
        return fitted
    more = len(fitted) - limit + 1
    note = {"type": "mrkdwn", "text": f"… {more} more block(s) not shown: Slack shows {limit}."}
    return [*fitted[: limit - 1], {"type": "context", "elements": [note]}]


def fit_message(args: dict[str, Any], *, blocks_max: int = MESSAGE_BLOCKS_MAX) -> dict[str, Any]:
    """A message's arguments with its text and blocks cut to Slack's limits."""
    fitted = dict(args)
    if isinstance(fitted.get("text"), str):
        fitted["text"] = shorten(fitted["text"], TEXT_MAX)
    if isinstance(fitted.get("blocks"), list):
        fitted["blocks"] = fit_blocks(fitted["blocks"], blocks_max)
    return fitted


class FittingWebClient(AsyncWebClient):
    """The Web API client, cutting every message and view to Slack's limits first."""

    @classmethod
    def like(cls, client: AsyncWebClient) -> FittingWebClient:
        """A fitting client with the settings (token, URL, retries) of `client`."""
        return cls(
            token=client.token,
            base_url=client.base_url,
            timeout=client.timeout,
            ssl=client.ssl,
            proxy=client.proxy,
            session=client.session,
            trust_env_in_session=client.trust_env_in_session,
            headers=client.headers,
            team_id=getattr(client, "team_id", None),
            logger=client.logger,
            retry_handlers=client.retry_handlers,
        )

    async def api_call(
        self, api_method: str, *, json: dict[str, Any] | None = None, **kwargs: Any
    ) -> AsyncSlackResponse:
        """Send a call, its message or view fitted to Slack's limits."""
        if json is not None and api_method in MESSAGE_METHODS:
            json = fit_message(json)
        elif json is not None and api_method in VIEW_METHODS and isinstance(json.get("view"), dict):
            view = dict(json["view"])
            view["blocks"] = fit_blocks(view.get("blocks") or [], VIEW_BLOCKS_MAX)
            json = {**json, "view": view}
        return await super().api_call(api_method, json=json, **kwargs)


class FittingRespond(AsyncRespond):
    """`respond`, with a long text answered in parts (a few), then a note of what is left.

    With a `session`, every answer goes over its pooled connections: Bolt's own `respond`
    opens (and closes) a connection, TLS and all, for each one.
    """

    def __init__(self, *, response_url: str, session: ClientSession | None = None) -> None:
        super().__init__(response_url=response_url)
        self.session = session

    async def __call__(  # type: ignore[override]
        self, text: str | dict[str, Any] = "", **kwargs: Any
    ) -> WebhookResponse:
        """Answer through the response_url, in parts when the text is long."""
        if not isinstance(text, str):
            return await super().__call__(text, **kwargs)
        if kwargs.get("blocks"):
            kwargs["blocks"] = fit_blocks(list(kwargs["blocks"]))
        parts = split_text(text, MESSAGE_TEXT_MAX) if len(text) > MESSAGE_TEXT_MAX else [text]
        if len(parts) > RESPOND_PARTS_MAX:
            rest = "\n".join(parts[RESPOND_PARTS_MAX - 1 :])
            parts = [*parts[: RESPOND_PARTS_MAX - 1], shorten(rest, MESSAGE_TEXT_MAX)]
        answer = await self._send(parts[0], **kwargs)
        # The parts after the first are new messages, never a replacement of the first.
        follow = {k: v for k, v in kwargs.items() if k not in ("blocks", "replace_original")}
        for part in parts[1:]:
            answer = await self._send(part, **follow, replace_original=False)
        return answer

    async def _send(self, text: str, **kwargs: Any) -> WebhookResponse:
        assert self.response_url is not None
        hook = AsyncWebhookClient(self.response_url, session=self.session)
        return await hook.send(text=text, **kwargs)


class Fitting(AsyncMiddleware):
    """Gives every listener a `client` and a `respond` that fit what they send to Slack."""

    def __init__(self, session: ClientSession | None) -> None:
        self.session = session
        # One fitting client per token: building one per request cost more than the ack.
        self._clients: dict[str | None, FittingWebClient] = {}

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        """Swap the request's client and respond for fitting ones, then go on."""
        context = req.context
        client = context.client
        if client is not None and not isinstance(client, FittingWebClient):
            fitting = self._clients.get(client.token)
            if fitting is None or fitting.base_url != client.base_url:
                fitting = self._clients[client.token] = FittingWebClient.like(client)
            context["client"] = fitting
        if context.response_url:
            context["respond"] = FittingRespond(
                response_url=context.response_url, session=self.session
            )
        return await next()


def install(app: AsyncApp, session: ClientSession | None = None) -> None:
    """Make every listener's `client` and `respond` fit what they send to Slack's limits."""
    app.middleware(Fitting(session))
