"""Tag mode on GitHub: tag rulesets predicted by the plan, and refused tag pushes explained."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.base import Refused, RollbackFailed
from providers.git import GitProvider
from tests.support.github import PULL_REQUEST, FakeGitHub, Ruleset, tag_ruleset
from tests.support.github_pushes import guard_pushes
from tests.support.gitrepos import GitProviderFactory, GitRemote
from tests.support.progress import Recorder

TOKEN = "ghp_tag_rules_token_77"


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
    """Tag-mode providers that know their GitHub repository (and dispatch deploy.yml)."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)

    def make(**settings: object) -> GitProvider:
        defaults: dict[str, object] = {
            "mode": "tag",
            "github_repository": "acme/web",
            "workflow": "deploy.yml",
            "api_url": github.url,
            "request_timeout_seconds": 2,
        }
        return make_git_provider(**(defaults | settings))

    return make


async def test_a_tag_ruleset_on_release_tags_is_predicted_by_the_plan(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    github.rulesets.append(tag_ruleset(11, "release tags", "refs/tags/v*"))
    guard_pushes(git_remote.bare, github)
    provider = on_github()
    before = git_remote.refs()

    with pytest.raises(Refused) as caught:
        await provider.plan("v1.2.3")

    message = caught.value.message
    assert "GitHub will refuse rollbot's push of tag v1.2.3-rollback to acme/web" in message
    assert "ruleset “release tags”" in message and "refs/tags/v*" in message
    assert "creating" in message and "Nothing was changed" in message
    assert "ask a GitHub admin to allow rollbot to bypass ruleset “release tags”" in message
    assert git_remote.refs() == before


async def test_tag_rulesets_that_do_not_cover_the_rollback_tag_let_the_plan_through(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    github.rulesets += [
        tag_ruleset(12, "releases", "refs/tags/v*", exclude=["refs/tags/*-rollback"]),
        tag_ruleset(13, "nested", "refs/tags/release/*"),
        tag_ruleset(14, "trial", "~ALL", enforcement="evaluate"),
        Ruleset(15, "protect main", "main", [PULL_REQUEST]),  # a branch ruleset
        tag_ruleset(
            16, "org releases", "refs/tags/v*", bypass="always", source_type="Organization"
        ),
    ]
    guard_pushes(git_remote.bare, github)
    provider = on_github()

    plan = await provider.plan("v1.2.3")

    (warning,) = plan.warnings
    assert "ruleset “org releases”" in warning and "rollbot may bypass it" in warning
    await provider.rollback("v1.2.3", Recorder())
    assert "refs/tags/v1.2.3-rollback" in git_remote.refs()
    listed = [
        path for method, path in github.requests if path.startswith("/repos/acme/web/rulesets?")
    ]
    assert listed and all("includes_parents=true" in path for path in listed)


async def test_an_organization_tag_ruleset_is_predicted(
    on_github: GitProviderFactory, github: FakeGitHub
) -> None:
    github.rulesets.append(tag_ruleset(21, "org tags", "~ALL", source_type="Organization"))

    with pytest.raises(Refused, match=r"ruleset “org tags”"):
        await on_github().plan("v1.2.3")


async def test_a_tag_push_refused_by_a_ruleset_says_why_and_that_nothing_was_pushed(
    make_git_provider: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    # Without github_repository rollbot cannot read the rules: only the push finds out.
    github.rulesets.append(tag_ruleset(31, "release tags", "refs/tags/v*"))
    guard_pushes(git_remote.bare, github)
    provider = make_git_provider(mode="tag")
    before = git_remote.refs()

    with pytest.raises(RollbackFailed) as caught:
        await provider.rollback("v1.2.3", Recorder())

    error = caught.value
    assert "refused tag v1.2.3-rollback" in error.message
    assert "GH013" in error.message and "repository rules" in error.message
    assert "Cannot create ref due to creations being restricted" in error.message
    assert "Nothing was pushed" in error.message
    assert "bypass the ruleset" in error.message and "push the tag by hand" in error.message
    assert "remote rejected" not in error.message  # git's raw porcelain stays out
    assert str(error.target_state).startswith("main is at v1.2.4 ")
    assert git_remote.refs() == before

    github.rulesets.clear()  # the rule is lifted: the same rollback goes through
    guard_pushes(git_remote.bare, github)
    await provider.rollback("v1.2.3", Recorder())
    assert "refs/tags/v1.2.3-rollback" in git_remote.refs()


async def test_a_tag_protection_rule_refuses_a_non_admin_and_the_message_says_so(
    make_git_provider: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    github.protected_tags = ["v*"]
    guard_pushes(git_remote.bare, github)
    provider = make_git_provider(mode="tag")
    before = git_remote.refs()

    with pytest.raises(RollbackFailed) as caught:
        await provider.rollback("v1.2.3", Recorder())

    message = caught.value.message
    assert "tag protection rule" in message and "GH006" in message
    assert "not authorized to create a tag" in message
    assert "Nothing was pushed" in message and "admin" in message
    assert git_remote.refs() == before


async def test_a_tag_ruleset_added_after_the_plan_stops_the_rollback_before_the_push(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    provider = on_github()
    plan = await provider.plan("v1.2.3")
    assert plan.warnings == []
    before = git_remote.refs()

    # Approved later, after an admin protected the release tags (the remote alone would
    # take the push: only GitHub's API says it is now blocked).
    github.rulesets.append(tag_ruleset(41, "release tags", "refs/tags/v*"))
    with pytest.raises(Refused) as caught:
        await provider.rollback("v1.2.3", Recorder())

    error = caught.value
    assert error.message.startswith("Stopped before pushing")
    assert "ruleset “release tags”" in error.message
    assert str(error.target_state).startswith("main is at v1.2.4 ")
    assert git_remote.refs() == before
    assert github.dispatches == []
