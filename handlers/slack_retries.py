"""Which Slack calls are sent again, and when.

A 429 means Slack did nothing: every call is retried after the Retry-After it names. A
connection lost before the answer is different: the call may have landed. An edit or a
read is sent again (a second edit shows the same thing); a call that creates something
(a message, an ephemeral, a file) is not, since a second one would post it twice. The
outbox logs what a failed call did not show.
"""

from __future__ import annotations

from collections.abc import Callable

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

# Web API methods whose second send makes a second thing.
CREATES = frozenset(
    {
        "chat.postMessage",
        "chat.postEphemeral",
        "chat.scheduleMessage",
        "chat.meMessage",
        "files.upload",
        "files.completeUploadExternal",
        "conversations.create",
    }
)


def method_of(url: str) -> str:
    """Return the Web API method a request URL calls (`.../api/chat.update` -> chat.update)."""
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


class ResendUnlessItCreates(AsyncConnectionErrorRetryHandler):
    """Resend a call whose connection was lost, unless sending it twice would post twice."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if method_of(request.url) in CREATES:
            return False
        return await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


class CountFailures(AsyncRetryHandler):
    """Never retries: counts each failed call (a 429, a 5xx, a lost connection) by method.

    slack_sdk asks every handler in turn after each answer until one retries: placed
    first, this one sees every attempt.
    """

    def __init__(self, count: Callable[[str, str], None]) -> None:
        super().__init__(max_retry_count=0)
        self._count = count

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if error is not None:
            self._count(method_of(request.url), type(error).__name__)
        elif response is not None and response.status_code >= 400:
            self._count(method_of(request.url), str(response.status_code))
        return False


def slack_retry_handlers(
    rate_limit_retries: int, count: Callable[[str, str], None] | None = None
) -> list[AsyncRetryHandler]:
    """The retry handlers of rollbot's Web API client; `count` hears of every failure."""
    counting: list[AsyncRetryHandler] = [CountFailures(count)] if count is not None else []
    return [
        *counting,
        ResendUnlessItCreates(),
        AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
    ]
