"""Slack user-group membership for the approval policy, cached briefly."""

from __future__ import annotations

import time

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = structlog.get_logger(__name__)

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
        try:
            response = await self._client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as exc:
            # A deleted or mistyped group must not block approvers listed by user id.
            log.warning("user group unreadable", group=group_id, error=exc.response.get("error"))
            return set()
        users = set(response.get("users") or [])
        self._cache[group_id] = (time.monotonic(), users)
        return users
