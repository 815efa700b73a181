"""Slack user-group membership for the approval policy, cached briefly."""

from __future__ import annotations

import time

from slack_sdk.web.async_client import AsyncWebClient

CACHE_SECONDS = 60.0


class SlackDirectory:
    """Answers who is in a Slack user group via `usergroups.users.list`."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._cache: dict[str, tuple[float, set[str]]] = {}

    async def members(self, group_id: str) -> set[str]:
        """Return the user ids in a group (cached for a minute)."""
        cached = self._cache.get(group_id)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        response = await self._client.usergroups_users_list(usergroup=group_id)
        users = set(response.get("users") or [])
        self._cache[group_id] = (time.monotonic(), users)
        return users
