"""Who is in a user group: the approval policy's view of the workspace."""

from __future__ import annotations

from typing import Protocol


class Directory(Protocol):
    """Answers who is in a user group (Slack's usergroups, or nothing on the CLI)."""

    async def members(self, group_id: str) -> set[str]:
        """Return the user ids in a group."""
        ...


class NoDirectory:
    """A directory with no groups, for the CLI."""

    async def members(self, group_id: str) -> set[str]:
        """Return nobody."""
        return set()
