"""The git provider's preflight and identity, against real git and the local GitHub fake."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from providers.base import NotFound
from providers.capabilities import Describe, Preflight, PreflightReport, Verdict
from providers.git import GitProvider
from tests.support.github import PULL_REQUEST, FakeGitHub, Protection, Ruleset, tag_ruleset
from tests.support.gitrepos import (
    GitProviderFactory,
    GitRemote,
    git,
    rolled_back_then_released,
    short,
)

TOKEN = "ghp_preflight_token_42"


def check(report: PreflightReport, name: str) -> tuple[Verdict, str]:
    """Return the verdict and why of the check called `name`."""
    (found,) = [c for c in report.checks if c.name == name]
    assert "\n" not in found.why
    return found.verdict, found.why


def names(report: PreflightReport) -> list[str]:
    return [c.name for c in report.checks]


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    """GitHub for acme/web with a classic token that is not an admin."""
    fake = FakeGitHub(TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def on_github(
    make_git_provider: GitProviderFactory, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> GitProviderFactory:
    """Providers that know their GitHub repository (and dispatch deploy.yml)."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)

    def make(**settings: object) -> GitProvider:
        defaults: dict[str, object] = {
            "github_repository": "acme/web",
            "workflow": "deploy.yml",
            "api_url": github.url,
            "request_timeout_seconds": 1,
        }
        return make_git_provider(**(defaults | settings))

    return make


async def test_identity_now_is_the_branch_head_in_revert_mode(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider()
    assert isinstance(provider, Describe) and isinstance(provider, Preflight)

    identity = await provider.identity_now()

    assert identity.version == "v1.2.4"
    assert identity.exact == f"commit {git_remote.commit_of('main')} (head of main)"
    git_remote.work.commit("Hotfix", {"extra.txt": "x\n"})
    git_remote.work.push()
    moved = await provider.identity_now()
    assert moved.version == "v1.2.4"
    assert moved.exact == f"commit {git_remote.commit_of('main')} (head of main)"
    assert moved.exact != identity.exact


async def test_identity_now_in_tag_mode_is_the_tag_deployed_last(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider(mode="tag")
    identity = await provider.identity_now()
    assert identity.version == "v1.2.4"
    assert identity.exact == f"commit {git_remote.commit_of('v1.2.4')} (tag v1.2.4)"

    git_remote.work.tag("v1.2.2-rollback", ref="v1.2.2")
    git_remote.work.push()
    identity = await provider.identity_now()
    assert identity.version == "v1.2.2"
    assert identity.exact == f"commit {git_remote.commit_of('v1.2.2')} (tag v1.2.2-rollback)"


async def test_revert_preflight_passes_names_the_commits_and_changes_nothing(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider()
    before = git_remote.refs()

    report = await provider.preflight("v1.2.3")

    assert report.current == await provider.identity_now()
    assert report.target.version == "v1.2.3"
    assert report.target.exact == f"commit {git_remote.commit_of('v1.2.3')} (tag v1.2.3)"
    assert names(report) == ["commit-on-remote", "on-branch"]  # no GitHub: no push-allowed
    verdict, why = check(report, "commit-on-remote")
    assert verdict is Verdict.PASS
    assert why == f"tag v1.2.3 names {short(git_remote.commit_of('v1.2.3'))} on {git_remote.bare}"
    assert check(report, "on-branch") == (Verdict.PASS, "v1.2.3 is in the history of main")
    bad, worse = git_remote.commit_of("main~1"), git_remote.commit_of("main")
    assert report.changes == [
        f"2 commits reverted: {short(worse)} “Release 1.2.4”, {short(bad)} “Rework search”",
        "files changed back: app.txt, search.txt",
    ]
    assert git_remote.refs() == before


async def test_only_the_first_five_commits_are_named(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    for number in range(6):
        git_remote.work.commit(f"Change {number}", {f"f{number}.txt": "x\n"})
    git_remote.work.push()

    report = await make_git_provider().preflight("v1.2.3")

    line = report.changes[0]
    assert line.startswith("8 commits reverted: ")
    assert "“Change 5”" in line and "“Change 1”" in line and "“Change 0”" not in line
    assert line.endswith(", and 3 more")


async def test_a_target_outside_the_branch_fails_on_branch(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    work = git_remote.work
    git("checkout", "--quiet", "-b", "experiment", "v1.2.2", cwd=work.path)
    work.commit("Experiment", {"app.txt": "experiment\n"})
    work.tag("v1.3.0-rc1")
    git("push", "--quiet", "origin", "--tags", cwd=work.path)
    provider = make_git_provider()

    report = await provider.preflight("v1.3.0-rc1")

    verdict, why = check(report, "on-branch")
    assert verdict is Verdict.FAIL
    assert why == (
        "v1.3.0-rc1 is not in the history of main: there is nothing to revert back to it "
        "(mode tag deploys it)"
    )
    assert check(report, "commit-on-remote")[0] is Verdict.PASS
    assert report.changes == []


async def test_an_unknown_version_raises(make_git_provider: GitProviderFactory) -> None:
    with pytest.raises(NotFound, match=r"No tag `v9\.9\.9`"):
        await make_git_provider().preflight("v9.9.9")


async def test_commit_on_remote_fails_when_the_remote_does_not_answer(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider()
    target = git_remote.commit_of("v1.2.3")
    await provider.preflight("v1.2.3")  # the clone is cached
    git_remote.bare.rename(git_remote.root / "gone.git")

    report = await provider.preflight("v1.2.3")

    verdict, why = check(report, "commit-on-remote")
    assert verdict is Verdict.FAIL
    assert why.startswith(f"could not ask {git_remote.bare} for tag v1.2.3: ")
    assert report.target.exact == f"commit {target} (tag v1.2.3)"


async def test_tag_mode_preflight_names_the_rollback_tag(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider(mode="tag")
    before = git_remote.refs()

    report = await provider.preflight("v1.2.3")

    assert names(report) == ["commit-on-remote", "rollback-tag-free"]
    assert check(report, "rollback-tag-free") == (
        Verdict.PASS,
        f"no tag v1.2.3-rollback on {git_remote.bare} yet",
    )
    target = short(git_remote.commit_of("v1.2.3"))
    assert report.changes == [
        f"tag v1.2.3-rollback at {target} (deploys v1.2.3 in place of v1.2.4)"
    ]
    assert report.current is not None and report.current.version == "v1.2.4"
    assert git_remote.refs() == before


async def test_tag_mode_fails_when_the_rollback_tag_exists(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    rolled_back_then_released(git_remote)

    report = await make_git_provider(mode="tag").preflight("v1.2.2")

    verdict, why = check(report, "rollback-tag-free")
    assert verdict is Verdict.FAIL
    assert why.startswith(f"tag v1.2.2-rollback exists on {git_remote.bare} already (created ")
    assert why.endswith("): delete it to push it again")


async def test_push_allowed_passes_when_no_rule_blocks_the_push(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    before = git_remote.refs()

    report = await on_github().preflight("v1.2.3")

    assert names(report) == ["commit-on-remote", "on-branch", "push-allowed"]
    assert check(report, "push-allowed") == (
        Verdict.PASS,
        "GitHub's rules on main of acme/web let rollbot push",
    )
    assert github.dispatches == []
    assert {method for method, _ in github.requests} == {"GET"}
    assert git_remote.refs() == before


async def test_push_allowed_fails_when_a_ruleset_blocks_the_push(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    github.rulesets.append(Ruleset(7, "protect main", "main", [PULL_REQUEST]))

    report = await on_github().preflight("v1.2.3")

    verdict, why = check(report, "push-allowed")
    assert verdict is Verdict.FAIL
    assert "ruleset “protect main”" in why and "changes must come through a pull request" in why
    assert TOKEN not in why

    github.rulesets[0].bypass = "always"
    verdict, why = check(await on_github().preflight("v1.2.3"), "push-allowed")
    assert verdict is Verdict.PASS
    assert why == (
        "GitHub's rules on main of acme/web let rollbot push (rollbot may bypass ruleset "
        "“protect main”)"
    )


async def test_push_allowed_warns_when_the_rules_cannot_be_read(
    on_github: GitProviderFactory, github: FakeGitHub
) -> None:
    github.protections["main"] = Protection(reviews=1)  # hidden: reading it needs admin rights

    verdict, why = check(await on_github().preflight("v1.2.3"), "push-allowed")

    assert verdict is Verdict.WARN
    assert why.startswith("main of acme/web is protected and rollbot cannot read which rules")


async def test_push_allowed_warns_when_github_does_not_answer(
    on_github: GitProviderFactory,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    report = await on_github(api_url=f"http://127.0.0.1:{port}").preflight("v1.2.3")

    verdict, why = check(report, "push-allowed")
    assert verdict is Verdict.WARN
    assert why.startswith("could not read what GitHub enforces on pushes to main (")
    assert why.endswith("): GitHub may still refuse the push")
    assert check(report, "commit-on-remote")[0] is Verdict.PASS


async def test_push_allowed_in_tag_mode_fails_on_a_tag_ruleset(
    on_github: GitProviderFactory, github: FakeGitHub
) -> None:
    github.rulesets.append(tag_ruleset(11, "release tags", "refs/tags/v*"))

    report = await on_github(mode="tag").preflight("v1.2.3")

    verdict, why = check(report, "push-allowed")
    assert verdict is Verdict.FAIL
    assert why.startswith("GitHub will refuse rollbot's push of tag v1.2.3-rollback to acme/web")
    assert "ruleset “release tags”" in why

    github.rulesets.clear()
    verdict, why = check(await on_github(mode="tag").preflight("v1.2.3"), "push-allowed")
    assert (verdict, why) == (
        Verdict.PASS,
        "GitHub's rules on tag v1.2.3-rollback of acme/web let rollbot push",
    )
