"""Revert mode: revert the commits after a version, or one named commit, and push the branch.

Commits after the target are reverted newest first along the first parent, one
``git revert`` each, merges against their first parent (``-m 1``: the branch as it was
before the merge). A named commit (7 to 40 lowercase hex digits) must be in the history of
the fetched branch, change files, and not be reverted already (``This reverts commit
<sha>``; a revert of that revert puts it back). A conflict aborts, resets the clone and
pushes nothing. The push is a normal one: if someone pushed meanwhile it is refused and
nothing changes, and the error says what the remote holds, read back from it.
"""

from __future__ import annotations

from providers.base import Progress, Refused, RollbackFailed, say
from providers.git.clone import Clone, rejected
from providers.git.model import COMMIT_PATTERN, SHORT_SHA, Commit, Tag, stamp
from providers.git.rules import push_refusal

LISTED_COMMITS = 10


class Reverting:
    """Plans and makes revert commits in the clone and pushes them to the branch."""

    def __init__(self, clone: Clone) -> None:
        self._clone = clone
        self._git = clone.git
        self._branch = clone.branch

    async def commits_after(self, tag: Tag) -> list[Commit]:
        """Return the branch's first-parent commits after `tag`, newest first."""
        if not await self._clone.on_branch(tag.commit):
            raise Refused(
                f"{tag.name} is not in the history of {self._branch}: there is nothing to revert "
                "back to it (use mode tag to deploy it)."
            )
        ran = await self._git(
            "log",
            "--first-parent",
            "--format=%H%x00%P%x00%T%x00%s",
            f"{tag.commit}..{self._clone.remote_head}",
            "--",
            what="commits after the target",
        )
        rows = [line.split("\0", 3) for line in ran.out.splitlines()]
        if not rows:
            return []
        firsts = [parents.split()[0] for _, parents, _, _ in rows]
        trees = await self._git(
            "rev-parse", *(f"{p}^{{tree}}" for p in firsts), what="trees of the parents"
        )
        return [
            Commit(sha, subject, merge=len(parents.split()) > 1, empty=tree == parent_tree)
            for (sha, parents, tree, subject), parent_tree in zip(
                rows, trees.out.split(), strict=True
            )
        ]

    def plan(self, tag: Tag, commits: list[Commit]) -> list[str]:
        """Name each commit to revert; refuse when none changes a file."""
        if all(c.empty for c in commits):
            raise Refused(
                f"{self._branch} has no commits that change files after {tag.name}: nothing to "
                "revert."
            )
        steps = [
            f"Revert the {len(commits)} commit(s) on {self._branch} after {tag.describe()}, "
            "newest first, one revert commit each:"
        ]
        steps += [
            f"skip {c.describe()}: it changes no file" if c.empty else f"revert {c.describe()}"
            for c in commits[:LISTED_COMMITS]
        ]
        if len(commits) > LISTED_COMMITS:
            steps.append(f"… and {len(commits) - LISTED_COMMITS} more")
        steps.append(self.push_step())
        return steps

    def push_step(self) -> str:
        """Say how the branch is pushed."""
        return (
            f"Push {self._branch} to {self._clone.shown} (a normal push: refused, with nothing "
            "changed, if someone pushed meanwhile; a conflicting revert pushes nothing)."
        )

    async def back_to(self, tag: Tag, progress: Progress) -> str:
        """Revert every commit after `tag` and push; return the summary."""
        commits = await self.commits_after(tag)
        self.plan(tag, commits)  # refuses an empty revert
        await self._clone.checkout_head()
        reverted = sum(not c.empty for c in commits)
        await say(progress, f"Reverting {reverted} commit(s) on {self._branch} after {tag.name}…")
        for commit in commits:
            if not commit.empty:  # git refuses to revert a commit that changed nothing
                await self._revert(commit)
        head = await self._push_branch(
            progress, again="request the rollback again to revert on top of the new commits"
        )
        return (
            f"Pushed {reverted} revert commit(s) to {self._branch} of {self._clone.shown}: it is "
            f"now at {head[:SHORT_SHA]} with the files of {tag.name}."
        )

    def named_plan(self, bad: Commit) -> tuple[list[str], list[str]]:
        """Return the steps and warnings of reverting one named commit."""
        mainline = " -m 1" if bad.merge else ""
        steps = [
            f"Revert {bad.describe()}, authored {stamp(bad.authored_at)}, with one revert "
            f"commit on top of {self._branch} (git revert --no-edit{mainline}).",
            self.push_step(),
        ]
        warnings = (
            [
                f"{bad.describe()} is a merge: it is reverted against its first parent (-m 1), "
                f"which takes out of {self._branch} everything the merge brought in."
            ]
            if bad.merge
            else []
        )
        return steps, warnings

    async def named(self, bad: Commit, progress: Progress) -> tuple[str, str]:
        """Revert one named commit on top of the branch and push; return (summary, sha)."""
        since = (
            await self._git("rev-parse", self._clone.remote_head, what="branch head")
        ).out.strip()
        await self._clone.checkout_head()
        await say(progress, f"Reverting {bad.describe()} on {self._branch}…")
        await self._revert(bad, since=since)
        made = await self._push_branch(
            progress,
            again="ask for the revert again (it is made on top of what the branch holds then)",
            since=since,
        )
        summary = (
            f"Pushed revert commit {made[:SHORT_SHA]} to {self._branch} of {self._clone.shown}: "
            f"it reverts {bad.describe()}."
        )
        return summary, made

    async def _push_branch(self, progress: Progress, again: str, since: str | None = None) -> str:
        """Push the clone's HEAD to the branch and return its sha; a refusal changes nothing."""
        await say(progress, f"Pushing {self._branch} to {self._clone.shown}…")
        pushed = await self._clone.push(
            f"HEAD:refs/heads/{self._branch}", f"Pushing {self._branch}"
        )
        if pushed.code != 0:
            await self._clone.reset()
            why = (
                "someone pushed to it meanwhile (non-fast-forward)"
                if rejected(pushed)
                else self._git.error_text(pushed)
            )
            refusal = push_refusal(self._git.scrub(pushed.out + pushed.err), self._branch)
            if refusal is not None:
                why, again = refusal
            raise RollbackFailed(
                f"{self._clone.shown} refused the push of {self._branch}: {why}. Nothing was "
                f"pushed; {again}.",
                target_state=await self._clone.state_or_unknown(since),
            )
        head = await self._git("rev-parse", "HEAD", what="new head")
        return head.out.strip()

    async def _revert(self, commit: Commit, since: str | None = None) -> None:
        """Revert one commit; on a conflict abort, reset and raise naming the files."""
        mainline = ["-m", "1"] if commit.merge else []
        ran = await self._git(
            "revert",
            "--no-edit",
            *mainline,
            commit.sha,
            what=f"Reverting {commit.describe()}",
            check=False,
        )
        if ran.code == 0:
            return
        conflicted = await self._git(
            "diff", "--name-only", "--diff-filter=U", what="conflicting files"
        )
        files = ", ".join(conflicted.out.split())
        await self._git("revert", "--abort", what="Aborting the revert", check=False)
        await self._clone.reset()
        detail = f"conflicts in {files}" if files else self._git.error_text(ran)
        raise RollbackFailed(
            f"Reverting {commit.describe()} failed: {detail}. The revert was aborted and "
            "nothing was pushed; revert by hand or fix forward.",
            target_state=await self._clone.state_or_unknown(since),
        )


def refuse_named(commit: str, mode: str, clone: Clone) -> None:
    """Refuse a commit that is not named by its sha, or a target in tag mode."""
    if COMMIT_PATTERN.fullmatch(commit) is None:
        raise Refused("A commit to revert is named by its sha: 7 to 40 lowercase hex digits.")
    if mode != "revert":
        raise Refused(
            f"{clone.branch} of {clone.shown} is rolled back in mode tag (rollback tags): "
            "reverting a named commit needs mode revert."
        )


def merge_warning(commits: list[Commit]) -> list[str]:
    """Warn that merges are reverted against their first parent."""
    merges = sum(c.merge for c in commits)
    if not merges:
        return []
    return [
        f"{merges} of them are merge commits: each is reverted against its first parent "
        "(-m 1), which takes out everything the merge brought in."
    ]
