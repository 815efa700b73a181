"""HTTP boundary shared by API providers: explicit timeouts and one error translation.

What an answer means is read from the answer, not only from its status code:

- an error status with a ``text/html`` body came from a proxy or CDN in front of the
  platform (Cloudflare's 502 page, a load balancer's 504), not from its API: the page
  is named, never quoted, and a 5xx one is Transient like any 5xx;
- a 403 is a rate limit, not a rejected token, when the platform says so: GitHub sends
  ``x-ratelimit-remaining: 0`` (primary limit) or a body about a "secondary rate limit",
  Vercel an error code ``rate_limited``; it becomes RateLimited with the wait the
  headers ask for (Retry-After, else ``x-ratelimit-reset`` in epoch seconds);
- any other 401/403 is AuthRejected with the platform's own (redacted) message.

Transport failures become TimedOut (no answer in time) or Transient (no connection, or
one that closed before an answer): both are safe to retry for reads only.
"""

from __future__ import annotations

import math
import os
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import SecretStr

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    ProviderError,
    RateLimited,
    Refused,
    TimedOut,
    Transient,
)

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Enough of a body to find a rate-limit notice in, never enough to matter for memory.
SNIFFED_BODY = 4000
RATE_LIMIT_WORDS = ("rate limit", "rate_limit", "ratelimit", "too many requests")
# Above this, x-ratelimit-reset is an epoch timestamp (GitHub, Vercel), below a delay.
EPOCH_SECONDS = 1_000_000_000


def retry_after(response: httpx.Response) -> float | None:
    """Read Retry-After as seconds (either form HTTP allows), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    date = response.headers.get("Date")
    now = parsedate_to_datetime(date) if date else None
    if now is None:
        return None
    return max(0.0, (when - now).total_seconds())


def rate_limit_wait(response: httpx.Response) -> float | None:
    """Seconds a rate-limited answer asks us to wait: Retry-After, else x-ratelimit-reset."""
    wait = retry_after(response)
    if wait is not None:
        return wait
    try:
        reset = float(response.headers["x-ratelimit-reset"])
    except (KeyError, ValueError):
        return None
    return max(0.0, reset - time.time()) if reset > EPOCH_SECONDS else max(0.0, reset)


def is_html(response: httpx.Response) -> bool:
    """Return True when the answer is a web page (a proxy's or CDN's), not an API document."""
    return "text/html" in response.headers.get("Content-Type", "").lower()


def is_rate_limit(response: httpx.Response) -> bool:
    """Return True when a 403 or 429 says the caller is over a rate limit."""
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    if response.headers.get("x-ratelimit-remaining", "").strip() == "0":
        return True
    try:
        body = response.text[:SNIFFED_BODY].lower()
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return False
    return any(word in body for word in RATE_LIMIT_WORDS)


def error_for(
    response: httpx.Response, what: str, detail: str = "", *, service: str = ""
) -> ProviderError:
    """Translate an unsuccessful response into the provider error tree.

    `detail` is the platform's own message, already redacted by the caller; `service`
    names the platform for a proxy's error page ("Vercel").
    """
    status = response.status_code
    tail = f": {detail}" if detail else ""
    if is_html(response):
        return _page_error(response, what, service or "the service")
    if is_rate_limit(response):
        wait = rate_limit_wait(response)
        # A 429 says it all; a 403 that is a rate limit keeps the platform's words.
        said = tail if status == 403 else ""
        return RateLimited(
            f"{what}: rate limited (HTTP {status}){said}{_wait_hint(wait)}", retry_after=wait
        )
    if status in (401, 403):
        return AuthRejected(f"{what}: the token was rejected (HTTP {status}){tail}")
    if status == 404:
        return NotFound(f"{what}: not found (HTTP 404){tail}")
    if status == 409:
        return Conflicting(f"{what}: conflict (HTTP 409){tail}")
    if status >= 500:
        return Transient(f"{what}: the service failed (HTTP {status}){tail}")
    return Refused(f"{what}: refused (HTTP {status}){tail}")


def _page_error(response: httpx.Response, what: str, service: str) -> ProviderError:
    """Name a proxy's or CDN's error page by its status; its HTML never reaches a message."""
    status = response.status_code
    page = f"an error page from a proxy or CDN in front of {service} (HTTP {status})"
    if status == 429:
        wait = rate_limit_wait(response)
        return RateLimited(f"{what}: rate limited: {page}{_wait_hint(wait)}", retry_after=wait)
    if status >= 500:
        return Transient(f"{what}: {page} instead of an answer from {service} itself")
    return Refused(
        f"{what}: {page}, not an answer from {service} itself; the request was blocked "
        "on its way (a firewall or a wrong URL)"
    )


def _wait_hint(wait: float | None) -> str:
    return "" if wait is None else f"; retry after {math.ceil(wait):d} s"


async def send(
    client: httpx.AsyncClient, method: str, url: str, *, what: str, **kwargs: Any
) -> httpx.Response:
    """Send one request; transport failures become TimedOut or Transient."""
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TimedOut(f"{what}: no answer in time ({type(exc).__name__})") from exc
    except httpx.ConnectError as exc:
        raise Transient(
            f"{what}: cannot open a connection to the service ({type(exc).__name__})"
        ) from exc
    except httpx.TransportError as exc:
        raise Transient(
            f"{what}: the connection closed before an answer came ({type(exc).__name__})"
        ) from exc


def new_client(
    timeout_seconds: float, *, base_url: str = "", headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """Create a provider's one HTTP client with explicit timeouts."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
        headers={"User-Agent": "rollbot", **(headers or {})},
    )


class LazyClient:
    """A provider's one HTTP client: made on first use (it needs a running loop), closed once."""

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout = timeout_seconds
        self._client: httpx.AsyncClient | None = None

    def get(
        self, *, base_url: str = "", headers: dict[str, str] | None = None
    ) -> httpx.AsyncClient:
        """Return the client; `base_url` and `headers` count only when it is first made."""
        if self._client is None:
            self._client = new_client(self._timeout, base_url=base_url, headers=headers)
        return self._client

    async def aclose(self) -> None:
        """Close the client if one was made; a later call makes a new one."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def token_from(variable: str) -> SecretStr | None:
    """Read a token from the environment at call time; None when unset or empty."""
    value = os.environ.get(variable, "").strip()
    return SecretStr(value) if value else None
