"""Tag mode: push an annotated ``<version>-rollback`` tag at the target's commit.

A rollback tag that exists on the remote already is refused (Conflicting); the deploy
pipeline deploys the tag pushed last. A push GitHub refuses (a tag ruleset, GH013; a tag
protection rule, GH006) says why, that nothing was pushed and what to do.
"""

from __future__ import annotations

from providers.base import Conflicting, Progress, RollbackFailed, say
from providers.git.clone import Clone, rejected
from providers.git.model import ROLLBACK_SUFFIX, Snapshot, Tag, when
from providers.git.tag_rules import tag_push_refusal


class Tagging:
    """Plans and pushes rollback tags."""

    def __init__(self, clone: Clone) -> None:
        self._clone = clone
        self._git = clone.git

    def plan(self, snapshot: Snapshot, tag: Tag) -> list[str]:
        """Say which tag will be pushed; refuse one that exists already."""
        name = tag.name + ROLLBACK_SUFFIX
        self._refuse_existing(snapshot, name)
        return [
            f"Create annotated tag {name} at {tag.describe()} with the message "
            f"“{tag_message(tag)}”.",
            f"Push tag {name} to {self._clone.shown} (this is what starts the deploy pipeline).",
        ]

    async def push(self, snapshot: Snapshot, tag: Tag, progress: Progress) -> str:
        """Create and push the rollback tag; return the summary."""
        shown = self._clone.shown
        name = tag.name + ROLLBACK_SUFFIX
        self._refuse_existing(snapshot, name)
        await say(progress, f"Creating tag {name} at {tag.describe()}…")
        await self._git(
            "tag",
            "--annotate",
            f"--message={tag_message(tag)}",
            "--",
            name,
            tag.commit,
            what=f"Creating tag {name}",
        )
        await say(progress, f"Pushing tag {name} to {shown}…")
        ref = f"refs/tags/{name}"
        pushed = await self._clone.push(f"{ref}:{ref}", f"Pushing tag {name}")
        if pushed.code != 0:
            await self._git("tag", "--delete", name, what="Removing the unpushed tag")
            refusal = tag_push_refusal(self._git.scrub(pushed.out + pushed.err), name)
            if refusal is not None:
                why, what_now = refusal
                raise RollbackFailed(
                    f"{shown} refused tag {name}: {why}. Nothing was pushed; {what_now}.",
                    target_state=await self._clone.state_or_unknown(),
                )
            if rejected(pushed):
                raise Conflicting(
                    f"{shown} refused tag {name}: it exists there already. Nothing was pushed.",
                    target_state=await self._clone.state_or_unknown(),
                )
            raise RollbackFailed(
                f"Pushing tag {name} failed: {self._git.error_text(pushed)}. Nothing was pushed.",
                target_state=await self._clone.state_or_unknown(),
            )
        return f"Pushed tag {name} at {tag.describe()} to {shown}."

    def _refuse_existing(self, snapshot: Snapshot, name: str) -> None:
        existing = snapshot.rollback_tags.get(name)
        if existing is not None:
            raise Conflicting(
                f"Tag {name} exists on {self._clone.shown} already ({when(existing, 'created')}): "
                "a rollback to it was pushed before. Delete the tag first to push it again."
            )


def tag_message(tag: Tag) -> str:
    """The rollback tag's message."""
    return f"Rollback to working version {tag.name}"
