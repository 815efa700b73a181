"""The cached clone: fetched from the remote before every read, and what it says about it.

Every read fetches the branch and all tags first (``--prune``: the clone mirrors the
remote's tags). No remote is configured: each fetch and push names the URL.
"""

from __future__ import annotations

from providers.base import NotFound, ProviderError, Refused, RollbackFailed, TimedOut
from providers.git.model import (
    REVERTS,
    ROLLBACK_SUFFIX,
    SHORT_SHA,
    TAG_FIELDS,
    Commit,
    Snapshot,
    current_of,
    is_version,
    newer_rollback_tag,
    newest_first,
    parse_tag,
    parse_time,
    when,
)
from providers.git.settings import GitSettings
from providers.git.transport import GitCli, Ran
from providers.retry import retrying


class Clone:
    """Reads and changes the target's branch through its cached clone."""

    def __init__(self, settings: GitSettings, git: GitCli) -> None:
        self._settings = settings
        self.git = git
        self.branch = settings.branch
        self.remote_head = f"refs/remotes/origin/{settings.branch}"

    @property
    def shown(self) -> str:
        """The repository as messages name it (no credentials)."""
        return self.git.shown

    async def fetched(self) -> Snapshot:
        """Fetch (a read: retried), then read tags and the branch head from the clone."""
        await retrying(self.fetch)
        return await self.read()

    async def fetch(self) -> None:
        """Fetch the branch and every tag into the clone, made on first use."""
        folder = await self.git.clone_dir()
        if not (folder / ".git").exists():
            await self.git("init", "--quiet", str(folder), what="Preparing the cached clone")
        await self.git(
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--force",
            "--",
            self.git.url,
            f"+refs/heads/{self.branch}:{self.remote_head}",
            "+refs/tags/*:refs/tags/*",
            what=f"Fetching {self.branch} from {self.shown}",
            network=True,
        )

    async def read(self) -> Snapshot:
        """Read the versions, the branch head and the current version from the clone."""
        fields = "%00".join(TAG_FIELDS)
        listing = await self.git("for-each-ref", f"--format={fields}", "refs/tags/", what="tags")
        reachable = await self.git(
            "for-each-ref",
            "--format=%(refname:strip=2)",
            f"--merged={self.remote_head}",
            "refs/tags/",
            what="tags on the branch",
        )
        head = await self.git(
            "log", "-1", "--format=%H%x00%T%x00%s", self.remote_head, "--", what="branch head"
        )
        sha, tree, subject = head.out.rstrip("\n").split("\0", 2)
        tags = [t for t in map(parse_tag, listing.out.splitlines()) if t is not None]
        pattern = self._settings.tag_pattern
        versions = sorted(
            (t for t in tags if is_version(t.name, pattern)), key=newest_first, reverse=True
        )
        by_name = {t.name: t for t in versions}
        rollback_tags = {
            t.name: t
            for t in tags
            if t.name.endswith(ROLLBACK_SUFFIX) and t.name.removesuffix(ROLLBACK_SUFFIX) in by_name
        }
        on_branch = frozenset(reachable.out.split())
        current = current_of(versions, on_branch, tree)
        rollback_tag = None
        if self._settings.mode == "tag":
            rollback_tag = newer_rollback_tag(rollback_tags, current)
            if rollback_tag is not None:
                current = by_name[rollback_tag.name.removesuffix(ROLLBACK_SUFFIX)]
        ahead = 0
        if current is not None and current.name in on_branch:
            count = await self.git(
                "rev-list", "--count", f"{current.commit}..{sha}", "--", what="commits ahead"
            )
            ahead = int(count.out.strip() or 0)
        return Snapshot(
            versions=versions,
            rollback_tags=rollback_tags,
            head=Commit(sha, subject),
            head_tree=tree,
            reachable=on_branch,
            current=current,
            ahead=ahead,
            rollback_tag=rollback_tag,
        )

    async def on_branch(self, sha: str) -> bool:
        """Return True when the commit is in the history of the fetched branch head."""
        ancestor = await self.git(
            "merge-base", "--is-ancestor", sha, self.remote_head, what="ancestry", check=False
        )
        if ancestor.code not in (0, 1):
            raise self.git.failure(ancestor, "Reading the history", network=False)
        return ancestor.code == 0

    async def named_commit(self, commit: str) -> Commit:
        """Return the one commit on the branch that `commit` names, if it can be reverted."""
        branch = self.branch
        listed = await self.git(
            "rev-parse", f"--disambiguate={commit}", what=f"Looking up commit {commit}"
        )
        commits = [
            sha
            for sha in listed.out.split()
            if (await self.git("cat-file", "-t", sha, what="object type")).out.strip() == "commit"
        ]
        if not commits:
            raise NotFound(f"No commit {commit} on {branch} of {self.shown}.")
        mine = [sha for sha in commits if await self.on_branch(sha)]
        if not mine:
            raise Refused(
                f"Commit {commit} is not in the history of {branch}: only a commit of {branch} "
                "can be reverted there."
            )
        if len(mine) > 1:
            raise Refused(
                f"{commit} is ambiguous on {branch}: it starts "
                f"{', '.join(sha[:12] for sha in mine)}. Give more of the sha."
            )
        sha = mine[0]
        shown = await self.git(
            "log", "-1", "--format=%P%x00%T%x00%aI%x00%s", sha, "--", what="the commit"
        )
        parents, tree, authored, subject = shown.out.rstrip("\n").split("\0", 3)
        first = parents.split()[:1]
        parent_tree = (
            await self.git("rev-parse", f"{first[0]}^{{tree}}", what="tree of the parent")
            if first
            else None
        )
        found = Commit(
            sha,
            subject,
            merge=len(parents.split()) > 1,
            empty=parent_tree is not None and parent_tree.out.strip() == tree,
            authored_at=parse_time(authored),
        )
        if found.empty:
            raise Refused(f"{found.describe()} changes no file on {branch}: nothing to revert.")
        reverter = await self._reverted_by(found)
        if reverter is not None:
            raise Refused(
                f"{found.describe()} is reverted on {branch} already, by "
                f"{reverter.describe()}: nothing to revert."
            )
        return found

    async def _reverted_by(self, commit: Commit) -> Commit | None:
        """Return the later commit of the branch that undoes `commit`, if one still does."""
        ran = await self.git(
            "log",
            "--topo-order",
            "--reverse",
            "--fixed-strings",
            "--grep=This reverts commit ",
            "--format=%H%x00%s%x00%B%x1e",
            f"{commit.sha}..{self.remote_head}",
            "--",
            what="later reverts",
        )
        # Oldest first: each revert of the last link flips the commit out of or back into
        # the branch (a revert of its revert re-applies it).
        last, reverter = commit.sha, None
        for record in filter(None, (r.strip("\n") for r in ran.out.split("\x1e"))):
            sha, subject, body = record.split("\0", 2)
            if last in REVERTS.findall(body):
                reverter = None if reverter else Commit(sha, subject)
                last = sha
        return reverter

    async def changed_files(self, old: str, new: str) -> list[str]:
        """Return the files that differ between two commits."""
        ran = await self.git("diff", "--name-only", old, new, "--", what="changed files")
        return ran.out.split("\n")[:-1] if ran.out else []

    async def checkout_head(self) -> None:
        """Put the clone's work branch at the fetched branch head, clean."""
        # A rollback cancelled half-way may have left a revert in progress.
        await self.git("revert", "--quit", what="Forgetting an old revert", check=False)
        await self.git(
            "checkout",
            "--quiet",
            "--force",
            "-B",
            "rollbot-work",
            self.remote_head,
            what="Checking out the branch",
        )
        await self.git("clean", "-ffdxq", what="Cleaning the clone")

    async def reset(self) -> None:
        """Drop local commits: the clone holds the fetched branch head again."""
        await self.git("reset", "--quiet", "--hard", self.remote_head, what="Resetting the clone")

    async def push(self, refspec: str, what: str) -> Ran:
        """Push once: a push that timed out may have landed, so it is never retried."""
        try:
            return await self.git(
                "push",
                "--porcelain",
                "--",
                self.git.url,
                refspec,
                what=what,
                network=True,
                check=False,
            )
        except TimedOut as exc:
            raise RollbackFailed(
                f"{exc.message} It was sent once and not retried; whether it landed is unknown.",
                target_state=await self.state_or_unknown(),
            ) from exc

    def state_line(self, snapshot: Snapshot) -> str:
        """Say in one line what the branch (and a newer rollback tag) holds."""
        head = snapshot.head.describe()
        current = snapshot.current
        branch = self.branch
        if current is None:
            return self.no_version(snapshot)
        if snapshot.rollback_tag is not None:
            name = snapshot.rollback_tag.name
            return (
                f"Rollback tag {name} ({when(snapshot.rollback_tag, 'created')}) deploys "
                f"{current.describe()}; {branch} is at {head}."
            )
        if current.name not in snapshot.reachable:
            return f"{branch} (head {head}) has exactly the files of {current.name}."
        if snapshot.ahead == 0:
            return f"{branch} is at {current.describe()}."
        exact = " and has exactly its files" if current.tree == snapshot.head_tree else ""
        return (
            f"{branch} is {snapshot.ahead} commit(s) ahead of {current.name}{exact} (head {head})."
        )

    def no_version(self, snapshot: Snapshot) -> str:
        """Say that no version tag is on the branch."""
        return (
            f"{self.branch} of {self.shown} is at {snapshot.head.describe()}; no tag matching "
            f"{self._settings.tag_pattern} is on it."
        )

    async def state_or_unknown(self, since: str | None = None) -> str:
        """Describe the state for an error message without raising a second error.

        With `since` (the branch head the operation started from), also say whether the
        remote's branch is still there.
        """
        try:
            snapshot = await self.fetched()
        except ProviderError as exc:
            return f"unknown ({exc.message})"
        line = self.state_line(snapshot)
        if since is None:
            return line
        if snapshot.head.sha == since:
            return f"Unchanged on the remote: {line}"
        return f"{self.branch} moved on from {since[:SHORT_SHA]} by another push: {line}"


def rejected(pushed: Ran) -> bool:
    """Return True when the remote refused the update (--porcelain says so on stdout)."""
    return any(word in pushed.out + pushed.err for word in ("[rejected]", "already exists"))
