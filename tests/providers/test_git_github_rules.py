"""What GitHub enforces on a push, predicted by the plan and explained when a push is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.base import AuthRejected, Refused, RollbackFailed
from tests.support.github import PULL_REQUEST, FakeGitHub, Protection, Ruleset
from tests.support.github_pushes import guard_pushes
from tests.support.gitrepos import GitProviderFactory, GitRemote, short
from tests.support.progress import Recorder

TOKEN = "ghp_rules_token_1234"


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
    """Revert-mode providers that know their GitHub repository (and push with the token)."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)

    def make(**settings: object) -> object:
        defaults: dict[str, object] = {
            "github_repository": "acme/web",
            "workflow": "deploy.yml",
            "api_url": github.url,
            "https_token": True,
            "request_timeout_seconds": 2,
        }
        return make_git_provider(**(defaults | settings))

    return make  # type: ignore[return-value]


async def test_a_required_status_check_is_predicted_and_a_refused_push_says_why(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    github.protections["main"] = Protection(checks=["ci"])
    guard_pushes(git_remote.bare, github)
    provider = on_github()
    before = git_remote.refs()

    with pytest.raises(Refused) as caught:
        await provider.plan("v1.2.3")

    message = caught.value.message
    assert 'required status check "ci"' in message
    assert "the branch protection of main" in message
    assert "ask a GitHub admin to allow rollbot to bypass" in message
    assert "open a pull request" in message
    assert github.dispatches == []

    # Asked anyway: the rules are read again and the rollback stops before pushing.
    with pytest.raises(Refused) as stopped:
        await provider.rollback("v1.2.3", Recorder())
    assert stopped.value.message.startswith("Stopped before pushing")
    assert 'required status check "ci"' in stopped.value.message
    assert git_remote.refs() == before

    # Rules rollbot cannot see (here: gone from the API, still enforced on the push): the
    # push is refused, and GitHub's reason said.
    github.protections.clear()
    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback("v1.2.3", Recorder())
    message = failed.value.message
    assert "protected branch" in message and "GH006" in message
    assert 'Required status check "ci" is expected' in message
    assert "Nothing was pushed" in message and "open a pull request" in message
    assert str(failed.value.target_state).startswith("main is at v1.2.4 ")
    assert git_remote.refs() == before
    assert github.dispatches == []
    assert TOKEN not in message + str(failed.value.target_state)


async def test_a_ruleset_is_predicted_unless_rollbot_may_bypass_it(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    github.rulesets.append(Ruleset(7, "protect main", "main", [PULL_REQUEST]))
    guard_pushes(git_remote.bare, github)
    provider = on_github()
    bad = git_remote.commit_of("main~1")

    with pytest.raises(Refused) as caught:
        await provider.plan_revert(short(bad))
    assert "ruleset “protect main”" in caught.value.message
    assert "changes must come through a pull request" in caught.value.message

    with pytest.raises(Refused, match=r"^Stopped before pushing .*protect main"):
        await provider.revert(bad, Recorder())

    github.rulesets[0].enforcement = "evaluate"  # the API says not enforced; the push says no
    with pytest.raises(RollbackFailed) as failed:
        await provider.revert(bad, Recorder())
    assert "GH013" in failed.value.message and "repository rules" in failed.value.message
    assert "Changes must be made through a pull request" in failed.value.message

    github.rulesets[0].enforcement = "active"
    github.rulesets[0].bypass = "always"
    guard_pushes(git_remote.bare, github)
    plan = await provider.plan_revert(short(bad))
    assert any("rollbot may bypass" in w and "protect main" in w for w in plan.warnings)
    await provider.revert(bad, Recorder())
    assert git_remote.subjects()[0] == 'Revert "Rework search"'


async def test_an_admin_passes_protection_that_leaves_out_administrators(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    github.admin = True
    github.protections["main"] = Protection(checks=["ci"], reviews=1, enforce_admins=False)
    guard_pushes(git_remote.bare, github)
    provider = on_github()

    plan = await provider.plan("v1.2.3")
    assert any("rollbot may bypass" in w for w in plan.warnings)
    await provider.rollback("v1.2.3", Recorder())
    assert git_remote.tree("main") == git_remote.tree("v1.2.3")

    github.protections["main"].enforce_admins = True
    with pytest.raises(Refused, match=r"changes must come through a pull request"):
        await provider.plan("v1.2.2")


async def test_protection_rollbot_cannot_read_is_a_warning(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    github.protections["main"] = Protection(reviews=1)  # not readable without admin rights
    plan = await on_github().plan("v1.2.3")
    assert any("cannot read" in w and "admin" in w for w in plan.warnings)


async def test_a_workflow_change_without_the_workflow_scope_is_predicted_and_explained(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    git_remote.work.commit("Deploy faster", {".github-workflow.yml": "x\n"})
    (git_remote.work.path / ".github" / "workflows").mkdir(parents=True)
    git_remote.work.commit("CI tweak", {".github/workflows/deploy.yml": "on: push\n"})
    git_remote.work.push()
    github.scopes = ["repo"]
    guard_pushes(git_remote.bare, github)
    provider = on_github()
    before = git_remote.refs()

    with pytest.raises(Refused) as caught:
        await provider.plan("v1.2.3")
    message = caught.value.message
    assert ".github/workflows/deploy.yml" in message
    assert "`workflow` scope" in message and "has: repo" in message

    with pytest.raises(Refused, match=r"^Stopped before pushing .*`workflow` scope"):
        await provider.rollback("v1.2.3", Recorder())
    assert git_remote.refs() == before

    github.fine_grained()  # no X-OAuth-Scopes: rollbot cannot tell, the push says no
    with pytest.raises(RollbackFailed) as failed:
        await provider.rollback("v1.2.3", Recorder())
    message = failed.value.message
    assert "without `workflow` scope" in message and "Nothing was pushed" in message
    assert "give the token the `workflow` scope" in message
    assert git_remote.refs() == before

    plan = await provider.plan("v1.2.3")
    assert any(".github/workflows/deploy.yml" in w and "Workflows" in w for w in plan.warnings)


async def test_a_secondary_rate_limit_on_the_rules_is_waited_out(
    on_github: GitProviderFactory, github: FakeGitHub
) -> None:
    github.protections["main"] = Protection(checks=["ci"])
    github.secondary_limits = 1

    with pytest.raises(Refused, match=r'required status check "ci"'):
        await on_github().plan("v1.2.3")


async def test_an_exhausted_rate_limit_is_named_not_taken_for_a_bad_token(
    on_github: GitProviderFactory, github: FakeGitHub
) -> None:
    github.rate_limit = 0

    plan = await on_github().plan("v1.2.3")

    (warning,) = [w for w in plan.warnings if "GitHub" in w]
    assert "rate limit" in warning and "token was rejected" not in warning


async def test_a_rejected_token_is_found_in_the_plan(
    on_github: GitProviderFactory, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_revoked_token_99")
    with pytest.raises(AuthRejected) as caught:
        await on_github().plan("v1.2.3")
    assert "token" in caught.value.message and "ghp_revoked_token_99" not in caught.value.message


async def test_a_workflow_without_a_dispatch_trigger_is_a_validation_error(
    on_github: GitProviderFactory, github: FakeGitHub, git_remote: GitRemote
) -> None:
    provider = on_github(mode="tag", workflow="ci.yml", https_token=False)

    with pytest.raises(RollbackFailed) as caught:
        await provider.rollback("v1.2.3", Recorder())

    message = caught.value.message
    assert "HTTP 422" in message and "does not have 'workflow_dispatch' trigger" in message
    assert message.startswith("Pushed tag v1.2.3-rollback")
    assert "refs/tags/v1.2.3-rollback" in git_remote.refs()
