"""HTTP boundary shared by API providers: explicit timeouts and one error translation."""

from __future__ import annotations

import os
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


def error_for(response: httpx.Response, what: str, detail: str = "") -> ProviderError:
    """Translate an unsuccessful response into the provider error tree."""
    status = response.status_code
    tail = f": {detail}" if detail else ""
    if status in (401, 403):
        return AuthRejected(f"{what}: the token was rejected (HTTP {status}){tail}")
    if status == 404:
        return NotFound(f"{what}: not found (HTTP 404){tail}")
    if status == 409:
        return Conflicting(f"{what}: conflict (HTTP 409){tail}")
    if status == 429:
        wait = retry_after(response)
        hint = f"; retry after {wait:g} s" if wait is not None else ""
        return RateLimited(f"{what}: rate limited (HTTP 429){hint}", retry_after=wait)
    if status >= 500:
        return Transient(f"{what}: the service failed (HTTP {status}){tail}")
    return Refused(f"{what}: refused (HTTP {status}){tail}")


async def send(
    client: httpx.AsyncClient, method: str, url: str, *, what: str, **kwargs: Any
) -> httpx.Response:
    """Send one request; transport failures become TimedOut or Transient."""
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TimedOut(f"{what}: no answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise Transient(f"{what}: cannot reach the service ({type(exc).__name__})") from exc


def new_client(timeout_seconds: float) -> httpx.AsyncClient:
    """Create a provider's one HTTP client with explicit timeouts."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
        headers={"User-Agent": "rollbot"},
    )


def token_from(variable: str) -> SecretStr | None:
    """Read a token from the environment at call time; None when unset or empty."""
    value = os.environ.get(variable, "").strip()
    return SecretStr(value) if value else None
