"""What Slack's `users.info` says of people, cached: the name they go by and their timezone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.text import SLACK_USER

log = structlog.get_logger(__name__)

CACHE_SECONDS = 600.0


@dataclass(frozen=True)
class Profile:
    """What rollbot reads of a Slack user: a readable name and an IANA timezone, if given."""

    name: str | None
    tz: str | None


class Profiles:
    """Names and timezones of Slack users from `users.info`, cached; one lookup serves both.

    Without the `users:read` scope every lookup fails the same way: after the first
    `missing_scope` none is asked for a while; people appear as `<@U...>` ids and times
    are said in UTC.
    """

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._cache: dict[str, tuple[float, Profile]] = {}
        self._no_scope_until = 0.0

    @property
    def without_scope(self) -> bool:
        """Whether Slack refused profiles for want of `users:read` lately."""
        return time.monotonic() < self._no_scope_until

    async def names(self, users: Iterable[str]) -> dict[str, str]:
        """Return a name for each user id, or the id as a Slack mention."""
        wanted = sorted(set(users))
        found = await self._profiles(wanted)
        return {u: name if (name := found[u].name) else f"<@{u}>" for u in wanted}

    async def timezone(self, user: str) -> str | None:
        """Return the user's timezone as Slack has it ("Europe/Berlin"), or None."""
        if not SLACK_USER.fullmatch(user):
            return None  # a terminal operator (cli:NAME) has no Slack profile
        return (await self._profiles([user]))[user].tz

    async def _profiles(self, wanted: list[str]) -> dict[str, Profile]:
        now = time.monotonic()
        stale = [
            u for u in wanted if u not in self._cache or now - self._cache[u][0] > CACHE_SECONDS
        ]
        if self.without_scope:
            stale = []
        for user, profile in zip(stale, await asyncio.gather(*map(self._ask, stale)), strict=True):
            if profile is not None:
                self._cache[user] = (now, profile)
        unknown = Profile(name=None, tz=None)
        return {u: self._cache[u][1] if u in self._cache else unknown for u in wanted}

    async def _ask(self, user: str) -> Profile | None:
        if self.without_scope:
            return None
        try:
            response = await self._client.users_info(user=user)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Slack unreachable: an id and UTC now beat a message held back.
            log.warning("user profile unreadable", user=user, error=type(exc).__name__)
            return None
        except SlackApiError as exc:
            # A report with an id in it, a notification in UTC, beat none.
            error = exc.response.get("error")
            log.warning("user profile unreadable", user=user, error=error)
            if error == "missing_scope":
                self._no_scope_until = time.monotonic() + CACHE_SECONDS
            return None
        info = response.get("user") or {}
        profile = info.get("profile") or {}
        names = (profile.get("real_name"), info.get("real_name"), info.get("name"))
        tz = info.get("tz")
        return Profile(
            name=next((str(n) for n in names if n), None),
            tz=tz if isinstance(tz, str) and tz else None,
        )
