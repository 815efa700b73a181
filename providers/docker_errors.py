"""Docker Engine API failures, translated into the provider error tree with their cause named.

The engine answers errors as JSON `{"message": ...}` with the HTTP status
(Docker Engine API: 400 bad parameter, 404 no such container/image, 409 conflict,
500 server error); a proxy in front of it may answer 401/403/429 or an HTML error page
(502/503/504); a registry's refusal of a pull comes back as HTTP 500 whose message
says "no basic auth credentials" or "unauthorized: authentication required".
"""

from __future__ import annotations

import aiohttp
from aiodocker.exceptions import DockerError

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

ENGINE = "the Docker Engine (or a proxy in front of it)"
# aiodocker's status when it cannot connect; 0 is an error inside a pull's progress stream.
CANNOT_CONNECT = 900
IN_STREAM = 0
TEXT_LIMIT = 200


def translate(exc: DockerError, what: str) -> ProviderError:
    """Map a Docker Engine error answer onto the provider error tree."""
    status, text = exc.status, engine_text(exc)
    lower = text.lower()
    answer = f"HTTP {status}: {text}"
    if status == 429 or "rate limit" in lower:
        return RateLimited(f"{_cap(ENGINE)} hit a rate limit {what} ({answer}).", retry_after=1.0)
    if status == 401:
        return AuthRejected(f"{_cap(ENGINE)} rejected the bot's credentials {what} ({answer}).")
    if status == 403:
        return AuthRejected(
            f"{_cap(ENGINE)} refused {what}: permission denied ({answer}); check the bot's "
            "access to the engine."
        )
    if status == 404 or "not found" in lower or "manifest unknown" in lower:
        return NotFound(f"Not found {what} ({answer}).")
    if status == 409:
        return Conflicting(
            f"Conflict {what}: the container is busy or in another state ({answer})."
        )
    if status == 504:
        return TimedOut(f"{_cap(ENGINE)} gave no answer in time {what} (HTTP 504).")
    if text == HTML_PAGE:
        return Transient(
            f"A proxy in front of the Docker Engine answered {what} with an error page "
            f"(HTTP {status}) instead of the engine's answer."
        )
    if status == CANNOT_CONNECT:
        return Transient(f"No connection to the Docker Engine {what} ({text}).")
    if status == IN_STREAM or status >= 500:
        return Transient(f"The Docker Engine failed {what} (server error, {answer}).")
    return Refused(f"The Docker Engine refused {what} ({answer}).")


def lost_connection(exc: aiohttp.ClientError | OSError, what: str) -> Transient:
    """Say that the connection to the engine broke, without the request's details."""
    return Transient(f"Lost the connection to the Docker Engine {what} ({type(exc).__name__}).")


def registry_error(exc: ProviderError, registry: str, source: str | None) -> ProviderError:
    """Name a registry's refusal of a pull (the engine reports it as HTTP 500 or 404)."""
    text = exc.message.lower()
    login = f"`docker login {registry}` as the bot's user, or set docker_config"
    if "no basic auth credentials" in text or (source is None and "unauthorized" in text):
        return AuthRejected(
            f"The registry {registry} refused: credentials needed ({login}). Nothing was changed."
        )
    if "unauthorized" in text or "authentication required" in text or "denied" in text:
        if source is None:
            return AuthRejected(
                f"The registry {registry} refused the pull: the repository does not exist "
                f"there or needs credentials ({login}). Nothing was changed."
            )
        return AuthRejected(
            f"The registry {registry} rejected the credentials from {source} ({login} "
            "again). Nothing was changed."
        )
    return exc


HTML_PAGE = "an HTML error page"


def engine_text(exc: DockerError) -> str:
    """Return the engine's message, never a pasted HTML page, cut to a readable length."""
    text = str(exc.message).strip()
    if "<html" in text.lower() or "<!doctype" in text.lower():
        return HTML_PAGE
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
