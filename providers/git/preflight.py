"""Preflight of a git rollback: exact commits, whether the target can be pushed, what changes.

Checks (reads only; nothing is pushed):

- ``commit-on-remote``: ``git ls-remote`` on the remote names the target tag at the commit
  the clone holds (fail when it does not, or when the remote does not answer).
- ``on-branch`` (mode revert): the target is in the history of the branch.
- ``rollback-tag-free`` (mode tag): no ``<version>-rollback`` tag is on the remote yet.
- ``push-allowed`` (with ``github_repository``): GitHub's rules, as the plan predicts them:
  fail when they block the push, warn when they cannot be read.

When the remote does not answer the fetch, the clone fetched before still names the
versions; ``commit-on-remote`` then fails, saying so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from providers.base import ProviderError
from providers.capabilities import Identity, PreflightCheck, PreflightReport, Verdict
from providers.git.clone import Clone
from providers.git.model import ROLLBACK_SUFFIX, SHORT_SHA, Commit, Snapshot, Tag, when
from providers.git.predict import Prediction
from providers.git.revert import Reverting
from providers.git.settings import GitSettings
from providers.retry import retrying

LISTED = 5
# Predicts GitHub's answer to the rollback's push of the target tag (and the files it changes).
Predict = Callable[[Tag, list[str]], Awaitable[Prediction]]


class Preflighting:
    """Reads what a rollback to a tag would push, and whether it could."""

    def __init__(self, settings: GitSettings, clone: Clone, reverting: Reverting) -> None:
        self._settings = settings
        self._clone = clone
        self._reverting = reverting

    async def snapshot(self) -> tuple[Snapshot, ProviderError | None]:
        """Fetch and read; when the fetch fails, read the clone fetched before (and say why)."""
        try:
            await retrying(self._clone.fetch)
        except ProviderError as exc:
            try:
                return await self._clone.read(), exc
            except ProviderError:
                raise exc from None
        return await self._clone.read(), None

    def identity(self, snapshot: Snapshot) -> Identity:
        """What deploys now: the branch head, or in mode tag the version tag pushed last."""
        current = snapshot.current
        version = current.name if current else snapshot.head.sha[:SHORT_SHA]
        if self._settings.mode == "tag" and current is not None:
            shown = snapshot.rollback_tag or current
            return Identity(version, f"commit {shown.commit} (tag {shown.name})")
        return Identity(version, f"commit {snapshot.head.sha} (head of {self._clone.branch})")

    async def report(
        self, snapshot: Snapshot, tag: Tag, fetch_error: ProviderError | None, predict: Predict
    ) -> PreflightReport:
        """Check the target tag and say what the rollback changes."""
        checks = [await self._on_remote(tag, fetch_error)]
        changes: list[str] = []
        if self._settings.mode == "tag":
            checks.append(self._tag_free(snapshot, tag))
            current = f" in place of {snapshot.current.name}" if snapshot.current else ""
            changes.append(
                f"tag {tag.name}{ROLLBACK_SUFFIX} at {tag.commit[:SHORT_SHA]} "
                f"(deploys {tag.name}{current})"
            )
        else:
            on_branch = await self._on_branch(tag)
            checks.append(on_branch)
            if on_branch.verdict is Verdict.PASS:
                changes += await self._reverted(tag)
        if self._settings.github_repository is not None:
            checks.append(await self._push_allowed(tag, predict))
        return PreflightReport(
            current=self.identity(snapshot),
            target=Identity(tag.name, f"commit {tag.commit} (tag {tag.name})"),
            checks=checks,
            changes=changes,
        )

    async def _on_remote(self, tag: Tag, fetch_error: ProviderError | None) -> PreflightCheck:
        name, shown, git = "commit-on-remote", self._clone.shown, self._clone.git
        ref = f"refs/tags/{tag.name}"

        async def listed() -> str:
            # An annotated tag's commit is listed as <ref>^{} only when named so.
            ran = await git(
                "ls-remote",
                "--tags",
                "--",
                git.url,
                ref,
                f"{ref}^{{}}",
                what=f"Listing tag {tag.name} on the remote",
                network=True,
            )
            return ran.out

        try:
            out = await retrying(listed)
        except ProviderError as exc:
            why = git.scrub(exc.message if fetch_error is None else fetch_error.message)
            return PreflightCheck(
                name, Verdict.FAIL, f"could not ask {shown} for tag {tag.name}: {why}"
            )
        refs = {}
        for line in out.splitlines():
            sha, _, listed_ref = line.partition("\t")
            refs[listed_ref] = sha
        commit = refs.get(f"{ref}^{{}}") or refs.get(ref)
        short = tag.commit[:SHORT_SHA]
        if commit is None:
            return PreflightCheck(name, Verdict.FAIL, f"{shown} has no tag {tag.name} now")
        if commit != tag.commit:
            return PreflightCheck(
                name,
                Verdict.FAIL,
                f"tag {tag.name} names {commit[:SHORT_SHA]} on {shown} now, not {short}",
            )
        return PreflightCheck(name, Verdict.PASS, f"tag {tag.name} names {short} on {shown}")

    async def _on_branch(self, tag: Tag) -> PreflightCheck:
        branch = self._clone.branch
        if await self._clone.on_branch(tag.commit):
            return PreflightCheck(
                "on-branch", Verdict.PASS, f"{tag.name} is in the history of {branch}"
            )
        return PreflightCheck(
            "on-branch",
            Verdict.FAIL,
            f"{tag.name} is not in the history of {branch}: there is nothing to revert back to "
            "it (mode tag deploys it)",
        )

    def _tag_free(self, snapshot: Snapshot, tag: Tag) -> PreflightCheck:
        name, shown = tag.name + ROLLBACK_SUFFIX, self._clone.shown
        existing = snapshot.rollback_tags.get(name)
        if existing is None:
            return PreflightCheck(
                "rollback-tag-free", Verdict.PASS, f"no tag {name} on {shown} yet"
            )
        return PreflightCheck(
            "rollback-tag-free",
            Verdict.FAIL,
            f"tag {name} exists on {shown} already ({when(existing, 'created')}): delete it to "
            "push it again",
        )

    async def _reverted(self, tag: Tag) -> list[str]:
        commits = [c for c in await self._reverting.commits_after(tag) if not c.empty]
        files = await self._clone.changed_files(tag.commit, self._clone.remote_head)
        if not commits:
            return [f"no commit after {tag.name} changes a file: nothing is reverted"]
        noun = "commit" if len(commits) == 1 else "commits"
        return [
            f"{len(commits)} {noun} reverted: {listed(commits)}",
            f"files changed back: {listed(files)}",
        ]

    async def _push_allowed(self, tag: Tag, predict: Predict) -> PreflightCheck:
        name, repository = "push-allowed", self._settings.github_repository
        try:
            files = await self._clone.changed_files(tag.commit, self._clone.remote_head)
            prediction = await predict(tag, files)
        except ProviderError as exc:
            why = self._clone.git.scrub(exc.message)
            return PreflightCheck(
                name, Verdict.WARN, f"{why.rstrip('.')}: GitHub may still refuse the push"
            )
        if prediction.refusal is not None:
            return PreflightCheck(name, Verdict.FAIL, prediction.refusal)
        if prediction.unknown is not None:
            return PreflightCheck(
                name, Verdict.WARN, f"{prediction.unknown}: GitHub may still refuse the push"
            )
        bypass = " and ".join(prediction.bypassed)
        return PreflightCheck(
            name,
            Verdict.PASS,
            f"GitHub's rules on {prediction.where} of {repository} let rollbot push"
            + (f" (rollbot may bypass {bypass})" if bypass else ""),
        )


def listed(items: list[Commit] | list[str]) -> str:
    """Name the first few commits (sha and subject) or files, and how many more there are."""
    shown = [
        f"{i.sha[:SHORT_SHA]} “{i.subject[:60]}”" if isinstance(i, Commit) else i
        for i in items[:LISTED]
    ]
    more = f", and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(shown) + more
