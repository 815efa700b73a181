"""Real git repositories for the git provider: a bare remote and clones that push to it.

Every commit and tag gets the next day of January 2026 as its date, so the order of
versions never depends on how fast a test runs. git runs without the developer's global
or system config.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from providers.git import GitProvider, GitSettings
from tests.support.github import FakeGitHub

BRANCH = "main"
IDENTITY = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "LC_ALL": "C",
}


def git(*args: str | Path, cwd: Path | None = None, date: str | None = None) -> str:
    """Run git with a fixed identity (and date), returning its output; fail loudly."""
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", **IDENTITY}
    if date:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    done = subprocess.run(
        ["git", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, f"git {args}: {done.stderr}"
    return done.stdout


@dataclass
class Clock:
    """Hands out one fixed date per call, a day apart."""

    day: int = 0

    def next(self) -> str:
        self.day += 1
        return f"2026-01-{self.day:02d}T12:00:00+00:00"


class Clone:
    """A working clone of the bare remote."""

    def __init__(self, remote: GitRemote, path: Path) -> None:
        self.remote = remote
        self.path = path
        git("clone", "--quiet", remote.bare, path)

    def commit(self, message: str, files: dict[str, str | None] | None = None) -> str:
        """Write (or delete, for None) files and commit them; return the sha."""
        for name, text in (files or {}).items():
            if text is None:
                git("rm", "--quiet", name, cwd=self.path)
            else:
                (self.path / name).write_text(text)
                git("add", name, cwd=self.path)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.path, date=self.date())
        return self.head()

    def merge(self, branch: str, message: str) -> str:
        """Merge a local branch into the current one with a merge commit."""
        git("merge", "--quiet", "--no-ff", "-m", message, branch, cwd=self.path, date=self.date())
        return self.head()

    def tag(self, name: str, *, annotated: bool = True, ref: str = "HEAD") -> None:
        """Tag a commit, annotated (with a message) or lightweight."""
        extra = ["-a", "-m", f"Release {name}"] if annotated else []
        git("tag", *extra, name, f"{ref}^{{commit}}", cwd=self.path, date=self.date())

    def push(self) -> None:
        """Push the branch and all tags to the remote."""
        git("push", "--quiet", "origin", f"HEAD:{BRANCH}", "--tags", cwd=self.path)

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.path).strip()

    def date(self) -> str:
        return self.remote.clock.next()


class GitRemote:
    """A bare repository standing in for GitHub, with a clone to build its history."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = root / "remote.git"
        self.clock = Clock()
        git("init", "--quiet", "--bare", "-b", BRANCH, self.bare)
        self.work = Clone(self, root / "work")
        self._clones = 0

    def clone(self) -> Clone:
        """Another developer's clone, e.g. to push while a rollback runs."""
        self._clones += 1
        return Clone(self, self.root / f"other-{self._clones}")

    def refs(self) -> dict[str, str]:
        """Return the remote's refs as `git ls-remote` lists them (tags peeled as ^{})."""
        lines = git("ls-remote", self.bare).splitlines()
        return {ref: sha for sha, ref in (line.split("\t") for line in lines)}

    def commit_of(self, ref: str) -> str:
        """Return the commit a ref of the remote names."""
        return git("rev-parse", f"{ref}^{{commit}}", cwd=self.bare).strip()

    def subjects(self, ref: str = BRANCH) -> list[str]:
        """Return the subjects of the remote branch's commits, newest first."""
        return git("log", "--format=%s", ref, cwd=self.bare).splitlines()

    def file(self, path: str, ref: str = BRANCH) -> str | None:
        """Return a file of the remote at a ref, or None when it is not there."""
        listed = git("ls-tree", "--name-only", ref, "--", path, cwd=self.bare)
        return git("show", f"{ref}:{path}", cwd=self.bare) if listed.strip() else None

    def tree(self, ref: str) -> str:
        """Return the tree of a remote ref, to compare the files of two commits."""
        return git("rev-parse", f"{ref}^{{tree}}", cwd=self.bare).strip()

    def tag_message(self, name: str) -> str:
        """Return an annotated tag's message, as the remote holds it."""
        return git("tag", "-l", "--format=%(contents)", name, cwd=self.bare).strip()


def released(root: Path) -> GitRemote:
    """A remote with v1.2.2 and v1.2.3, then a bad change released as v1.2.4, all pushed."""
    remote = GitRemote(root)
    work = remote.work
    work.commit("Initial release", {"app.txt": "1.2.2\n"})
    work.tag("v1.2.2")
    work.commit("Add search", {"app.txt": "1.2.3\n", "search.txt": "fast search\n"})
    work.tag("v1.2.3")
    work.commit("Rework search", {"search.txt": "broken search\n"})
    work.commit("Release 1.2.4", {"app.txt": "1.2.4\n"})
    work.tag("v1.2.4", annotated=False)
    work.push()
    return remote


def rolled_back_then_released(remote: GitRemote) -> None:
    """Push an earlier rollback tag v1.2.2-rollback, then a new release v1.2.5."""
    work = remote.work
    work.tag("v1.2.2-rollback", ref="v1.2.2")
    work.commit("Release 1.2.5", {"app.txt": "1.2.5\n"})
    work.tag("v1.2.5")
    work.push()


@pytest.fixture
def git_remote(tmp_path: Path) -> GitRemote:
    """A bare remote holding v1.2.2, v1.2.3 and the bad v1.2.4 at the head of main."""
    return released(tmp_path / "git")


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    """A local fake of GitHub's REST API for acme/web, token `ghp_test_token`."""
    github = FakeGitHub("ghp_test_token")
    await github.start()
    yield github
    await github.close()


GitProviderFactory = Callable[..., GitProvider]


@pytest.fixture
async def make_git_provider(
    git_remote: GitRemote, tmp_path: Path
) -> AsyncIterator[GitProviderFactory]:
    """Build revert-mode providers for the bare remote (cached clone in tmp_path); close them."""
    made: list[GitProvider] = []

    def make(**settings: Any) -> GitProvider:
        values: dict[str, Any] = {
            "provider": "git",
            "repository": str(git_remote.bare),
            "mode": "revert",
            "cache_dir": str(tmp_path / "cache"),
            "git_timeout_seconds": 20,
            **settings,
        }
        provider = GitProvider(GitSettings.model_validate(values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def short(sha: str) -> str:
    """Return the 7-character abbreviation git shows."""
    return sha[:7]
