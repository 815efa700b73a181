"""Git provider: revert bad commits on a branch, or push a rollback tag, to redeploy.

What this module relies on, and the choices it makes:

- git runs as a subprocess with an argument list (never a shell), each call under its own
  timeout, with ``GIT_TERMINAL_PROMPT=0`` so a missing credential fails instead of waiting,
  and ``LC_ALL=C`` so its messages can be read.
- Credentials never travel in a URL: ``user:password@`` is taken out of an https
  ``repository`` and, like the token (``https_token``), sent as an ``http.extraHeader``
  given through ``GIT_CONFIG_*`` variables (not the command line, not ``.git/config``).
  Every message and exception is scrubbed of them and of any ``user:password@``.
- The clone lives in ``cache_dir``; without one, in a temporary folder made on first use
  and removed at shutdown (one clone per process). Every read fetches the branch and all
  tags first (``--prune``: the clone mirrors the remote's tags). No remote is configured:
  each fetch and push names the URL.
- Versions are the tags matching ``tag_pattern`` (``*-rollback`` tags excluded), newest
  first by their commit's date, then by version numbers. The current version is the newest
  tag reachable from the branch head; when the head has exactly the files of another tag
  (what a revert rollback leaves), that tag; in tag mode, a ``<version>-rollback`` tag
  created after it wins (the deploy pipeline deploys the tag pushed last).
- *revert* reverts the first-parent commits after the target, newest first, one
  ``git revert`` each, merges against their first parent (``-m 1``: the branch as it was
  before the merge). A conflict aborts, resets the clone and pushes nothing. The push is a
  normal one: if someone pushed meanwhile it is refused and nothing changes.
- *revert* of one named commit (``plan_revert``, ``revert``; revert mode only): the sha,
  7 to 40 lowercase hex digits (``COMMIT_PATTERN``), must name exactly one commit in the
  history of the fetched branch head, that changes files and that no later commit reverts
  already (``This reverts commit <sha>`` in its message; a revert of that revert puts it
  back). One ``git revert`` on top of the remote head (``-m 1`` for a merge), pushed as
  above; a conflict or a refused push changes nothing, and the error says what the remote
  holds, read back from it. The workflow's ``version`` input is the revert commit's sha.
- *tag* pushes an annotated ``<version>-rollback`` tag at the target's commit; one that
  exists on the remote already is refused (Conflicting).
- An optional workflow_dispatch follows the push, sent once, never retried.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bot.names import VERSION_PATTERN
from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    Outcome,
    Plan,
    Progress,
    ProviderError,
    Refused,
    RollbackFailed,
    TimedOut,
    Transient,
    Version,
    say,
)
from providers.http import error_for, new_client, send, token_from
from providers.retry import retrying

log = structlog.get_logger(__name__)

ROLLBACK_SUFFIX = "-rollback"
SHORT_SHA = 7
# A commit sha as users give it: abbreviated (as git log --oneline shows it) or whole.
COMMIT_PATTERN = re.compile(r"[0-9a-f]{7,40}")
REVERTS = re.compile(r"This reverts commit ([0-9a-f]{40})")
LISTED_COMMITS = 10
MAX_ERROR_TEXT = 400
REDACTED = "[redacted]"
# Branch names as git allows them, minus anything an option or a range could start with.
REF_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$"
USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# git's messages that say what went wrong (LC_ALL=C keeps them in English).
AUTH_HINTS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "permission denied",
    "returned error: 401",
    "returned error: 403",
)
MISSING_HINTS = (
    "does not appear to be a git repository",
    "repository not found",
    "couldn't find remote ref",
    "returned error: 404",
    "not found",
)
NETWORK_HINTS = (
    "could not resolve",
    "failed to connect",
    "couldn't connect",
    "connection refused",
    "connection timed out",
    "connection reset",
    "network is unreachable",
    "the remote end hung up",
    "early eof",
    "ssl",
    "returned error: 5",
)
TAG_FIELDS = (
    "%(refname:strip=2)",
    "%(objecttype)",
    "%(objectname)",
    "%(*objectname)",
    "%(tree)",
    "%(*tree)",
    "%(committerdate:iso-strict)",
    "%(*committerdate:iso-strict)",
    "%(creatordate:iso-strict)",
    "%(subject)",
    "%(*subject)",
)


class GitSettings(BaseModel):
    """Settings of a `git` target."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["git"]
    repository: str = Field(
        pattern=r"^[^-\s]\S*$",
        description="Remote to push to: an https or ssh URL, or a local path.",
    )
    branch: str = Field(
        default="main",
        pattern=REF_NAME,
        description="Branch the deploy pipeline deploys.",
    )
    mode: Literal["revert", "tag"] = Field(
        description="revert: revert the commits after the target and push the branch; "
        "tag: push an annotated <version>-rollback tag at the target's commit."
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Where the cached clone lives (one per target; never shared). Default: a "
        "temporary folder made on first use and removed at shutdown.",
    )
    tag_pattern: str = Field(
        default="v*", min_length=1, description="Glob of the tag names that are versions."
    )
    https_token: bool = Field(
        default=False,
        description="Send the token in token_env as the https credential of the repository "
        "(as GitHub's x-access-token).",
    )
    github_repository: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
        description="owner/name on GitHub whose workflow to dispatch after the push.",
    )
    token_env: str = Field(default="GITHUB_TOKEN", description="Variable holding the GitHub token.")
    workflow: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Workflow file name (or id) to dispatch with input `version`.",
    )
    workflow_ref: str | None = Field(
        default=None,
        pattern=REF_NAME,
        description="Ref to run the workflow on. Default: the branch.",
    )
    api_url: str = Field(default="https://api.github.com", description="GitHub REST API URL.")
    author_name: str = Field(default="rollbot", min_length=1, description="Commit/tag author.")
    author_email: str = Field(
        default="rollbot@localhost", min_length=1, description="Commit/tag author e-mail."
    )
    git_timeout_seconds: float = Field(
        default=120, gt=0, description="Deadline of one git command (a fetch, a push)."
    )
    request_timeout_seconds: float = Field(
        default=10, gt=0, description="Deadline of the workflow_dispatch request."
    )

    @field_validator("branch", "workflow_ref")
    @classmethod
    def _no_range(cls, value: str | None) -> str | None:
        if value is not None and ".." in value:
            raise ValueError("a ref name cannot contain '..'")
        return value

    @model_validator(mode="after")
    def _workflow_needs_repository(self) -> GitSettings:
        if (self.workflow is None) != (self.github_repository is None):
            raise ValueError("workflow and github_repository are set together or not at all")
        return self

    def secret_variables(self) -> dict[str, str]:
        """Name the variable that holds the token, when anything uses it."""
        if self.github_repository or self.https_token:
            return {"token_env": self.token_env}
        return {}


@dataclass(frozen=True)
class Tag:
    """One version tag and the commit it names."""

    name: str
    commit: str
    tree: str
    committed_at: datetime | None
    created_at: datetime | None
    subject: str

    def describe(self) -> str:
        """Say which commit the tag names."""
        return f"{self.name} ({self.commit[:SHORT_SHA]} “{self.subject[:80]}”)"


@dataclass(frozen=True)
class Commit:
    """One commit on the branch."""

    sha: str
    subject: str
    merge: bool = False
    empty: bool = False
    authored_at: datetime | None = None

    def describe(self) -> str:
        """Say which commit this is in a few words."""
        kind = " (merge)" if self.merge else ""
        return f"{self.sha[:SHORT_SHA]} “{self.subject[:80]}”{kind}"


@dataclass(frozen=True)
class Snapshot:
    """What the remote holds, as the last fetch saw it."""

    versions: list[Tag]
    rollback_tags: dict[str, Tag]
    head: Commit
    head_tree: str
    reachable: frozenset[str]
    current: Tag | None
    ahead: int
    rollback_tag: Tag | None

    def find(self, name: str) -> Tag | None:
        """Return the version tag called `name`."""
        return next((t for t in self.versions if t.name == name), None)


@dataclass(frozen=True)
class Ran:
    """The result of one git command."""

    code: int
    out: str
    err: str


class GitProvider:
    """Roll back by reverting commits or pushing a rollback tag, in a cached clone."""

    def __init__(self, settings: GitSettings) -> None:
        self._settings = settings
        self._url, credentials = _split_credentials(settings.repository)
        self._token = token_from(settings.token_env)
        if settings.https_token and self._token is not None:
            credentials = f"x-access-token:{self._token.get_secret_value()}"
        self._secrets = _secrets_of(settings.repository, credentials, self._token)
        self._header = (
            "Authorization: Basic " + base64.b64encode(credentials.encode()).decode()
            if credentials and self._url.startswith(("http://", "https://"))
            else None
        )
        if self._header:
            self._secrets.append(self._header.split()[-1])
        self._shown = self._scrub(settings.repository)
        self._dir = settings.cache_dir
        self._temporary: Path | None = None
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None

    # -- Provider protocol ------------------------------------------------------------------

    async def current_version(self) -> str:
        """Return the version tag the branch holds now."""
        snapshot = await self._snapshot()
        if snapshot.current is None:
            raise NotFound(self._no_version(snapshot))
        return snapshot.current.name

    async def list_versions(self) -> list[Version]:
        """Return the version tags newest first, current and previous stable marked."""
        snapshot = await self._snapshot()
        current = snapshot.current
        previous = _after(snapshot.versions, current)
        return [
            Version(
                name=tag.name,
                created_at=tag.committed_at,
                current=tag is current,
                previous_stable=tag is previous,
                detail=f"{tag.commit[:SHORT_SHA]} “{tag.subject[:80]}”, {_when(tag)}"
                + ("" if tag.name in snapshot.reachable else f", not on {self._branch}"),
            )
            for tag in snapshot.versions
        ]

    async def plan(self, target: str) -> Plan:
        """Say which commits will be reverted or which tag pushed, changing nothing."""
        async with self._lock:
            snapshot = await self._fetched()
            tag = self._target(snapshot, target)
            if self._settings.mode == "tag":
                steps, warnings = self._tag_plan(snapshot, tag), []
            else:
                commits = await self._commits_after(tag)
                steps, warnings = self._revert_plan(tag, commits), _merge_warning(commits)
        return Plan(steps=steps + self._dispatch_steps(target), warnings=warnings)

    async def rollback(self, target: str, progress: Progress) -> Outcome:
        """Revert and push, or push a rollback tag; then dispatch the workflow if set."""
        started = time.monotonic()
        async with self._lock:
            snapshot = await self._fetched()
            tag = self._target(snapshot, target)
            if self._settings.mode == "tag":
                summary = await self._push_rollback_tag(snapshot, tag, progress)
            else:
                summary = await self._revert_and_push(tag, progress)
            notes = await self._dispatch(target, summary, progress)
        log.info(
            "git.rollback",
            mode=self._settings.mode,
            target=target,
            seconds=round(time.monotonic() - started, 2),
        )
        return Outcome(summary=summary, notes=notes)

    async def plan_revert(self, commit: str) -> Plan:
        """Say which commit will be reverted and pushed, changing nothing."""
        self._refuse_named_revert(commit)
        async with self._lock:
            await retrying(self._fetch)
            bad = await self._named_commit(commit)
        mainline = " -m 1" if bad.merge else ""
        steps = [
            f"Revert {bad.describe()}, authored {_stamp(bad.authored_at)}, with one revert "
            f"commit on top of {self._branch} (git revert --no-edit{mainline}).",
            self._push_step(),
        ]
        warnings = (
            [
                f"{bad.describe()} is a merge: it is reverted against its first parent (-m 1), "
                f"which takes out of {self._branch} everything the merge brought in."
            ]
            if bad.merge
            else []
        )
        return Plan(
            steps=steps + self._dispatch_steps("<the revert commit's sha>"), warnings=warnings
        )

    async def revert(self, commit: str, progress: Progress) -> Outcome:
        """Revert one named commit of the branch and push; then dispatch the workflow if set."""
        self._refuse_named_revert(commit)
        started = time.monotonic()
        async with self._lock:
            await retrying(self._fetch)
            bad = await self._named_commit(commit)
            since = (
                await self._git("rev-parse", self._remote_head, what="branch head")
            ).out.strip()
            await self._checkout_head()
            await say(progress, f"Reverting {bad.describe()} on {self._branch}…")
            await self._revert(bad, since=since)
            made = await self._push_branch(
                progress,
                again="ask for the revert again (it is made on top of what the branch holds then)",
                since=since,
            )
            summary = (
                f"Pushed revert commit {made[:SHORT_SHA]} to {self._branch} of {self._shown}: "
                f"it reverts {bad.describe()}."
            )
            notes = await self._dispatch(made, summary, progress)
        log.info(
            "git.revert_commit",
            commit=bad.sha,
            revert=made,
            seconds=round(time.monotonic() - started, 2),
        )
        return Outcome(summary=summary, notes=notes)

    async def describe_state(self) -> str:
        """Say what the branch (and, in tag mode, the last rollback tag) holds, from the remote."""
        return self._state_line(await self._snapshot())

    async def aclose(self) -> None:
        """Close the HTTP client and remove a temporary clone."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
        if self._temporary is not None:
            folder, self._temporary = self._temporary, None
            await asyncio.to_thread(shutil.rmtree, folder, True)

    # -- reading ----------------------------------------------------------------------------

    @property
    def _branch(self) -> str:
        return self._settings.branch

    @property
    def _remote_head(self) -> str:
        return f"refs/remotes/origin/{self._branch}"

    async def _snapshot(self) -> Snapshot:
        async with self._lock:
            return await self._fetched()

    async def _fetched(self) -> Snapshot:
        """Fetch (a read: retried), then read tags and the branch head from the clone."""
        await retrying(self._fetch)
        return await self._read()

    async def _fetch(self) -> None:
        folder = await self._clone_dir()
        if not (folder / ".git").exists():
            await self._git("init", "--quiet", str(folder), what="Preparing the cached clone")
        await self._git(
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--force",
            "--",
            self._url,
            f"+refs/heads/{self._branch}:{self._remote_head}",
            "+refs/tags/*:refs/tags/*",
            what=f"Fetching {self._branch} from {self._shown}",
            network=True,
        )

    async def _read(self) -> Snapshot:
        fields = "%00".join(TAG_FIELDS)
        listing = await self._git("for-each-ref", f"--format={fields}", "refs/tags/", what="tags")
        reachable = await self._git(
            "for-each-ref",
            "--format=%(refname:strip=2)",
            f"--merged={self._remote_head}",
            "refs/tags/",
            what="tags on the branch",
        )
        head = await self._git(
            "log", "-1", "--format=%H%x00%T%x00%s", self._remote_head, "--", what="branch head"
        )
        sha, tree, subject = head.out.rstrip("\n").split("\0", 2)
        tags = [t for t in map(_parse_tag, listing.out.splitlines()) if t is not None]
        pattern = self._settings.tag_pattern
        versions = sorted(
            (t for t in tags if _is_version(t.name, pattern)), key=_newest_first, reverse=True
        )
        by_name = {t.name: t for t in versions}
        rollback_tags = {
            t.name: t
            for t in tags
            if t.name.endswith(ROLLBACK_SUFFIX) and t.name.removesuffix(ROLLBACK_SUFFIX) in by_name
        }
        on_branch = frozenset(reachable.out.split())
        current = _current(versions, on_branch, tree)
        rollback_tag = None
        if self._settings.mode == "tag":
            rollback_tag = _newer_rollback_tag(rollback_tags, current)
            if rollback_tag is not None:
                current = by_name[rollback_tag.name.removesuffix(ROLLBACK_SUFFIX)]
        ahead = 0
        if current is not None and current.name in on_branch:
            count = await self._git(
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

    async def _commits_after(self, tag: Tag) -> list[Commit]:
        """Return the branch's first-parent commits after `tag`, newest first."""
        if not await self._on_branch(tag.commit):
            raise Refused(
                f"{tag.name} is not in the history of {self._branch}: there is nothing to revert "
                "back to it (use mode tag to deploy it)."
            )
        ran = await self._git(
            "log",
            "--first-parent",
            "--format=%H%x00%P%x00%T%x00%s",
            f"{tag.commit}..{self._remote_head}",
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

    async def _on_branch(self, sha: str) -> bool:
        """Return True when the commit is in the history of the fetched branch head."""
        ancestor = await self._git(
            "merge-base",
            "--is-ancestor",
            sha,
            self._remote_head,
            what="ancestry",
            check=False,
        )
        if ancestor.code not in (0, 1):
            raise self._failure(ancestor, "Reading the history", network=False)
        return ancestor.code == 0

    async def _named_commit(self, commit: str) -> Commit:
        """Return the one commit on the branch that `commit` names, if it can be reverted."""
        branch = self._branch
        listed = await self._git(
            "rev-parse", f"--disambiguate={commit}", what=f"Looking up commit {commit}"
        )
        commits = [
            sha
            for sha in listed.out.split()
            if (await self._git("cat-file", "-t", sha, what="object type")).out.strip() == "commit"
        ]
        if not commits:
            raise NotFound(f"No commit {commit} on {branch} of {self._shown}.")
        mine = [sha for sha in commits if await self._on_branch(sha)]
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
        shown = await self._git(
            "log", "-1", "--format=%P%x00%T%x00%aI%x00%s", sha, "--", what="the commit"
        )
        parents, tree, authored, subject = shown.out.rstrip("\n").split("\0", 3)
        first = parents.split()[:1]
        parent_tree = (
            await self._git("rev-parse", f"{first[0]}^{{tree}}", what="tree of the parent")
            if first
            else None
        )
        found = Commit(
            sha,
            subject,
            merge=len(parents.split()) > 1,
            empty=parent_tree is not None and parent_tree.out.strip() == tree,
            authored_at=_parse_time(authored),
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
        ran = await self._git(
            "log",
            "--topo-order",
            "--reverse",
            "--fixed-strings",
            "--grep=This reverts commit ",
            "--format=%H%x00%s%x00%B%x1e",
            f"{commit.sha}..{self._remote_head}",
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

    # -- planning ---------------------------------------------------------------------------

    def _target(self, snapshot: Snapshot, target: str) -> Tag:
        tag = snapshot.find(target)
        if tag is None:
            raise NotFound(
                f"No tag `{target}` matching {self._settings.tag_pattern} in {self._shown}."
            )
        # In revert mode a branch ahead of its newest tag can go back to that tag.
        holds = tag.tree == snapshot.head_tree if self._settings.mode == "revert" else None
        if holds or (holds is None and snapshot.current is not None and tag is snapshot.current):
            raise Refused(f"{self._state_line(snapshot)} `{target}` is what it holds already.")
        return tag

    def _tag_plan(self, snapshot: Snapshot, tag: Tag) -> list[str]:
        name = tag.name + ROLLBACK_SUFFIX
        self._refuse_existing_tag(snapshot, name)
        return [
            f"Create annotated tag {name} at {tag.describe()} with the message "
            f"“{_tag_message(tag)}”.",
            f"Push tag {name} to {self._shown} (this is what starts the deploy pipeline).",
        ]

    def _revert_plan(self, tag: Tag, commits: list[Commit]) -> list[str]:
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
        steps.append(self._push_step())
        return steps

    def _push_step(self) -> str:
        return (
            f"Push {self._branch} to {self._shown} (a normal push: refused, with nothing "
            "changed, if someone pushed meanwhile; a conflicting revert pushes nothing)."
        )

    def _refuse_named_revert(self, commit: str) -> None:
        if COMMIT_PATTERN.fullmatch(commit) is None:
            raise Refused("A commit to revert is named by its sha: 7 to 40 lowercase hex digits.")
        if self._settings.mode != "revert":
            raise Refused(
                f"{self._branch} of {self._shown} is rolled back in mode tag (rollback tags): "
                "reverting a named commit needs mode revert."
            )

    def _dispatch_steps(self, target: str) -> list[str]:
        settings = self._settings
        if settings.workflow is None:
            return []
        return [
            f"Start workflow {settings.workflow} of {settings.github_repository} on "
            f"{self._workflow_ref} with input version={target} (workflow_dispatch, sent once)."
        ]

    def _refuse_existing_tag(self, snapshot: Snapshot, name: str) -> None:
        existing = snapshot.rollback_tags.get(name)
        if existing is not None:
            raise Conflicting(
                f"Tag {name} exists on {self._shown} already ({_when(existing, 'created')}): "
                "a rollback to it was pushed before. Delete the tag first to push it again."
            )

    # -- changing ---------------------------------------------------------------------------

    async def _push_rollback_tag(self, snapshot: Snapshot, tag: Tag, progress: Progress) -> str:
        name = tag.name + ROLLBACK_SUFFIX
        self._refuse_existing_tag(snapshot, name)
        await say(progress, f"Creating tag {name} at {tag.describe()}…")
        await self._git(
            "tag",
            "--annotate",
            f"--message={_tag_message(tag)}",
            "--",
            name,
            tag.commit,
            what=f"Creating tag {name}",
        )
        await say(progress, f"Pushing tag {name} to {self._shown}…")
        ref = f"refs/tags/{name}"
        pushed = await self._push(f"{ref}:{ref}", f"Pushing tag {name}")
        if pushed.code != 0:
            await self._git("tag", "--delete", name, what="Removing the unpushed tag")
            if _rejected(pushed):
                raise Conflicting(
                    f"{self._shown} refused tag {name}: it exists there already. Nothing was "
                    "pushed.",
                    target_state=await self._state_or_unknown(),
                )
            raise RollbackFailed(
                f"Pushing tag {name} failed: {self._git_error(pushed)}. Nothing was pushed.",
                target_state=await self._state_or_unknown(),
            )
        return f"Pushed tag {name} at {tag.describe()} to {self._shown}."

    async def _revert_and_push(self, tag: Tag, progress: Progress) -> str:
        commits = await self._commits_after(tag)
        self._revert_plan(tag, commits)  # refuses an empty revert
        await self._checkout_head()
        reverted = sum(not c.empty for c in commits)
        await say(progress, f"Reverting {reverted} commit(s) on {self._branch} after {tag.name}…")
        for commit in commits:
            if not commit.empty:  # git refuses to revert a commit that changed nothing
                await self._revert(commit)
        head = await self._push_branch(
            progress, again="request the rollback again to revert on top of the new commits"
        )
        return (
            f"Pushed {reverted} revert commit(s) to {self._branch} of {self._shown}: it is "
            f"now at {head[:SHORT_SHA]} with the files of {tag.name}."
        )

    async def _checkout_head(self) -> None:
        """Put the clone's work branch at the fetched branch head, clean."""
        # A rollback cancelled half-way may have left a revert in progress.
        await self._git("revert", "--quit", what="Forgetting an old revert", check=False)
        await self._git(
            "checkout",
            "--quiet",
            "--force",
            "-B",
            "rollbot-work",
            self._remote_head,
            what="Checking out the branch",
        )
        await self._git("clean", "-ffdxq", what="Cleaning the clone")

    async def _push_branch(self, progress: Progress, again: str, since: str | None = None) -> str:
        """Push the clone's HEAD to the branch and return its sha; a refusal changes nothing."""
        await say(progress, f"Pushing {self._branch} to {self._shown}…")
        pushed = await self._push(f"HEAD:refs/heads/{self._branch}", f"Pushing {self._branch}")
        if pushed.code != 0:
            await self._reset()
            why = (
                "someone pushed to it meanwhile (non-fast-forward)"
                if _rejected(pushed)
                else self._git_error(pushed)
            )
            raise RollbackFailed(
                f"{self._shown} refused the push of {self._branch}: {why}. Nothing was pushed; "
                f"{again}.",
                target_state=await self._state_or_unknown(since),
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
        await self._reset()
        detail = f"conflicts in {files}" if files else self._git_error(ran)
        raise RollbackFailed(
            f"Reverting {commit.describe()} failed: {detail}. The revert was aborted and "
            "nothing was pushed; revert by hand or fix forward.",
            target_state=await self._state_or_unknown(since),
        )

    async def _reset(self) -> None:
        await self._git("reset", "--quiet", "--hard", self._remote_head, what="Resetting the clone")

    async def _push(self, refspec: str, what: str) -> Ran:
        """Push once: a push that timed out may have landed, so it is never retried."""
        try:
            return await self._git(
                "push",
                "--porcelain",
                "--",
                self._url,
                refspec,
                what=what,
                network=True,
                check=False,
            )
        except TimedOut as exc:
            raise RollbackFailed(
                f"{exc.message} It was sent once and not retried; whether it landed is unknown.",
                target_state=await self._state_or_unknown(),
            ) from exc

    async def _dispatch(self, target: str, summary: str, progress: Progress) -> list[str]:
        """Start the workflow once; a failure after the push says the push happened."""
        settings = self._settings
        if settings.workflow is None:
            return []
        await say(progress, f"Starting workflow {settings.workflow} with version={target}…")
        what = f"Starting workflow {settings.workflow} of {settings.github_repository}"
        url = (
            f"{settings.api_url.rstrip('/')}/repos/{settings.github_repository}/actions/"
            f"workflows/{settings.workflow}/dispatches"
        )
        body = {"ref": self._workflow_ref, "inputs": {"version": target}}
        try:
            response = await send(
                self._http(), "POST", url, what=what, json=body, headers=self._api_headers()
            )
            if response.status_code not in (httpx.codes.NO_CONTENT, httpx.codes.OK):
                raise error_for(response, what, self._scrub(_api_message(response)))
        except ProviderError as exc:
            raise RollbackFailed(
                f"{summary} But {self._scrub(exc.message)} (sent once, not retried): start the "
                "workflow by hand.",
                target_state=await self._state_or_unknown(),
            ) from exc
        return [f"Started workflow {settings.workflow} on {self._workflow_ref}."]

    # -- plumbing ---------------------------------------------------------------------------

    async def _clone_dir(self) -> Path:
        if self._dir is None:
            self._temporary = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="rollbot-git-"))
            self._dir = self._temporary
        else:
            await asyncio.to_thread(self._dir.mkdir, parents=True, exist_ok=True)
        return self._dir

    def _environment(self) -> dict[str, str]:
        settings = self._settings
        env = dict(os.environ)
        env.update(
            GIT_TERMINAL_PROMPT="0",
            LC_ALL="C",
            GIT_AUTHOR_NAME=settings.author_name,
            GIT_AUTHOR_EMAIL=settings.author_email,
            GIT_COMMITTER_NAME=settings.author_name,
            GIT_COMMITTER_EMAIL=settings.author_email,
        )
        # ssh must fail rather than ask for a passphrase or a host key decision.
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        if self._header:
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=self._header,
            )
        return env

    async def _git(
        self,
        *args: str,
        what: str,
        network: bool = False,
        check: bool = True,
    ) -> Ran:
        """Run one git command under the timeout; an unexpected exit becomes a ProviderError."""
        cwd = self._dir if self._dir is not None and self._dir.exists() else None
        seconds = self._settings.git_timeout_seconds
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            env=self._environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(seconds):
                out, err = await process.communicate()
        except TimeoutError as exc:
            raise TimedOut(f"{what}: git did not finish within {seconds:g} s.") from exc
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        code = process.returncode or 0
        ran = Ran(code, out.decode(errors="replace"), err.decode(errors="replace"))
        if code == 0 or not check:
            return ran
        raise self._failure(ran, what, network)

    def _failure(self, ran: Ran, what: str, network: bool) -> ProviderError:
        text = self._git_error(ran)
        lowered = text.lower()
        message = f"{what}: {text}"
        if any(hint in lowered for hint in AUTH_HINTS):
            return AuthRejected(f"{message} (check the credentials for {self._shown})")
        if any(hint in lowered for hint in MISSING_HINTS):
            return NotFound(message)
        if network and any(hint in lowered for hint in NETWORK_HINTS):
            return Transient(message)
        return Refused(message)

    def _git_error(self, ran: Ran) -> str:
        # push --porcelain names each refused ref (and why) on stdout, with a "!".
        refused = [line for line in ran.out.splitlines() if line.startswith("!")]
        lines = [line.strip() for line in [*refused, *ran.err.splitlines()] if line.strip()]
        text = "; ".join(lines) or f"git exited with {ran.code}"
        return self._scrub(text)[:MAX_ERROR_TEXT]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return USERINFO.sub("", text)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client(self._settings.request_timeout_seconds)
        return self._client

    def _api_headers(self) -> dict[str, str]:
        if self._token is None:
            self._token = token_from(self._settings.token_env)
            if self._token is not None:
                self._secrets.append(self._token.get_secret_value())
        if self._token is None:
            raise Refused(f"{self._settings.token_env} is not set: rollbot has no GitHub token.")
        return {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    @property
    def _workflow_ref(self) -> str:
        return self._settings.workflow_ref or self._branch

    def _state_line(self, snapshot: Snapshot) -> str:
        head = snapshot.head.describe()
        current = snapshot.current
        branch = self._branch
        if current is None:
            return self._no_version(snapshot)
        if snapshot.rollback_tag is not None:
            name = snapshot.rollback_tag.name
            return (
                f"Rollback tag {name} ({_when(snapshot.rollback_tag, 'created')}) deploys "
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

    def _no_version(self, snapshot: Snapshot) -> str:
        return (
            f"{self._branch} of {self._shown} is at {snapshot.head.describe()}; no tag matching "
            f"{self._settings.tag_pattern} is on it."
        )

    async def _state_or_unknown(self, since: str | None = None) -> str:
        """Describe the state for an error message without raising a second error.

        With `since` (the branch head the operation started from), also say whether the
        remote's branch is still there.
        """
        try:
            snapshot = await self._fetched()
        except ProviderError as exc:
            return f"unknown ({exc.message})"
        line = self._state_line(snapshot)
        if since is None:
            return line
        if snapshot.head.sha == since:
            return f"Unchanged on the remote: {line}"
        return f"{self._branch} moved on from {since[:SHORT_SHA]} by another push: {line}"


def _split_credentials(repository: str) -> tuple[str, str | None]:
    """Return the URL without `user:password@` and those credentials, if any."""
    parts = urlsplit(repository)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return repository, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=host)), unquote(userinfo)


def _secrets_of(repository: str, credentials: str | None, token: SecretStr | None) -> list[str]:
    secrets = [token.get_secret_value()] if token else []
    if credentials:
        secrets.append(credentials)
        password = credentials.partition(":")[2]
        secrets += [s for s in (password, credentials.replace(":", "%3A")) if s]
    userinfo = urlsplit(repository).netloc.rpartition("@")[0]
    if userinfo:
        secrets.append(userinfo)
    # Longest first, so a secret that contains another is replaced whole.
    return sorted(set(secrets), key=len, reverse=True)


def _parse_tag(line: str) -> Tag | None:
    """Build a tag from a for-each-ref line; tags of anything but a commit are skipped."""
    fields = line.split("\0")
    if len(fields) != len(TAG_FIELDS):
        return None
    name, kind, obj, peeled, tree, peeled_tree, date, peeled_date, created, subj, peeled_subj = (
        fields
    )
    if kind == "tag":
        if not peeled_tree:  # an annotated tag of a tree or blob
            return None
        obj, tree, date, subj = peeled, peeled_tree, peeled_date, peeled_subj
    elif kind != "commit":
        return None
    return Tag(name, obj, tree, _parse_time(date), _parse_time(created), subj)


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _is_version(name: str, pattern: str) -> bool:
    return (
        fnmatch.fnmatchcase(name, pattern)
        and not name.endswith(ROLLBACK_SUFFIX)
        and VERSION_PATTERN.fullmatch(name) is not None
    )


def _newest_first(tag: Tag) -> tuple[float, list[tuple[int, int | str]]]:
    """Sort key: the commit's date, then version numbers compared as numbers."""
    when = tag.committed_at.timestamp() if tag.committed_at else 0.0
    parts = re.findall(r"\d+|[^\d]+", tag.name)
    return when, [(1, int(p)) if p.isdigit() else (0, p) for p in parts]


def _current(versions: list[Tag], reachable: frozenset[str], tree: str) -> Tag | None:
    """The newest tag on the branch, or the tag whose files the head has exactly."""
    newest = next((t for t in versions if t.name in reachable), None)
    if newest is not None and newest.tree == tree:
        return newest
    same_files = next((t for t in versions if t.tree == tree), None)
    return same_files or newest


def _newer_rollback_tag(rollback_tags: dict[str, Tag], current: Tag | None) -> Tag | None:
    """Return the rollback tag created last, when it is newer than the current version."""
    dated = [t for t in rollback_tags.values() if t.created_at is not None]
    if not dated:
        return None
    newest = max(dated, key=lambda t: t.created_at or datetime.min)
    if current is None or current.created_at is None:
        return newest
    return newest if newest.created_at and newest.created_at > current.created_at else None


def _after(versions: list[Tag], current: Tag | None) -> Tag | None:
    if current is None:
        return None
    index = versions.index(current)
    return versions[index + 1] if index + 1 < len(versions) else None


def _merge_warning(commits: list[Commit]) -> list[str]:
    merges = sum(c.merge for c in commits)
    if not merges:
        return []
    return [
        f"{merges} of them are merge commits: each is reverted against its first parent "
        "(-m 1), which takes out everything the merge brought in."
    ]


def _tag_message(tag: Tag) -> str:
    return f"Rollback to working version {tag.name}"


def _when(tag: Tag, what: str = "committed") -> str:
    moment = tag.created_at if what == "created" else tag.committed_at
    return f"{what} {_stamp(moment)}" if moment else f"{what} at an unknown time"


def _stamp(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M %Z}".rstrip() if moment else "at an unknown time"


def _rejected(pushed: Ran) -> bool:
    """Return True when the remote refused the update (--porcelain says so on stdout)."""
    return any(word in pushed.out + pushed.err for word in ("[rejected]", "already exists"))


def _api_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    return str(payload.get("message", ""))[:200] if isinstance(payload, dict) else ""
