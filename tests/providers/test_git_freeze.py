"""Freezing a git target: a failing `rollbot/freeze` commit status on the bad version's commit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.base import ProviderError, Refused
from providers.capabilities import Freeze
from providers.git import GitProvider
from tests.support.faults import Fault, FaultProxy
from tests.support.github import FakeGitHub
from tests.support.gitrepos import GitProviderFactory, GitRemote

TOKEN = "ghp_freeze_token_8765"
CONTEXT = "rollbot/freeze"


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def proxy(github: FakeGitHub) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(github.url, hang_seconds=3) as faults:
        yield faults


@pytest.fixture
def provider(
    make_git_provider: GitProviderFactory, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> GitProvider:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    return make_git_provider(
        mode="tag",
        github_repository="acme/web",
        workflow="deploy.yml",
        api_url=proxy.url,
        request_timeout_seconds=1,
    )


def freeze_status(github: FakeGitHub, git_remote: GitRemote) -> dict[str, object] | None:
    return github.statuses.latest(git_remote.commit_of("v1.2.4"), CONTEXT)


async def test_freeze_sets_a_failing_status_on_the_bad_commit(
    provider: GitProvider, github: FakeGitHub, git_remote: GitRemote
) -> None:
    assert isinstance(provider, Freeze)

    record = await provider.freeze("v1.2.4", "v1.2.3")

    status = freeze_status(github, git_remote)
    assert status is not None
    assert (status["state"], status["description"]) == ("failure", "frozen: v1.2.4 was rolled back")
    sha = git_remote.commit_of("v1.2.4")
    assert f"{CONTEXT}" in record.action and sha[:7] in record.action
    assert record.saved["commit"] == sha
    assert all(isinstance(value, str) for value in record.saved.values())
    assert TOKEN not in record.action + repr(record.saved)


async def test_a_second_freeze_changes_nothing(
    provider: GitProvider, github: FakeGitHub, git_remote: GitRemote
) -> None:
    first = await provider.freeze("v1.2.4", "v1.2.3")
    second = await provider.freeze("v1.2.4", "v1.2.3")

    assert len(github.statuses.posts) == 1
    assert second.saved == first.saved


async def test_unfreeze_without_an_earlier_status_says_success_unfrozen(
    provider: GitProvider, github: FakeGitHub, git_remote: GitRemote
) -> None:
    record = await provider.freeze("v1.2.4", "v1.2.3")

    said = await provider.unfreeze(record)

    status = freeze_status(github, git_remote)
    assert status is not None
    assert (status["state"], status["description"]) == ("success", "unfrozen")
    assert "cannot be deleted" in said


async def test_unfreeze_puts_back_exactly_the_status_before_the_freeze(
    provider: GitProvider, github: FakeGitHub, git_remote: GitRemote
) -> None:
    sha = git_remote.commit_of("v1.2.4")
    github.statuses.add(sha, "pending", "held for review", CONTEXT, "https://ci.example/42")
    record = await provider.freeze("v1.2.4", "v1.2.3")
    again = await provider.freeze("v1.2.4", "v1.2.3")
    assert again.saved == record.saved

    said = await provider.unfreeze(record)

    status = github.statuses.latest(sha, CONTEXT)
    assert status is not None
    assert (status["state"], status["description"], status["target_url"]) == (
        "pending",
        "held for review",
        "https://ci.example/42",
    )
    assert "held for review" in said


async def test_unfreeze_restores_nothing_over_a_change_made_since(
    provider: GitProvider, github: FakeGitHub, git_remote: GitRemote
) -> None:
    record = await provider.freeze("v1.2.4", "v1.2.3")
    sha = git_remote.commit_of("v1.2.4")
    github.statuses.add(sha, "success", "cleared by hand", CONTEXT)
    posts = len(github.statuses.posts)

    with pytest.raises(Refused) as refused:
        await provider.unfreeze(record)

    assert "changed since the freeze" in refused.value.message
    assert "cleared by hand" in refused.value.message
    assert "nothing restored" in refused.value.message
    assert len(github.statuses.posts) == posts
    assert github.statuses.latest(sha, CONTEXT)["description"] == "cleared by hand"  # type: ignore[index]


@pytest.mark.parametrize("permission", ["read", "none"])
async def test_a_token_that_may_not_set_statuses_is_refused_by_name(
    provider: GitProvider, github: FakeGitHub, git_remote: GitRemote, permission: str
) -> None:
    github.statuses.permission = permission

    with pytest.raises(Refused) as refused:
        await provider.freeze("v1.2.4", "v1.2.3")

    assert "Commit statuses" in refused.value.message
    assert TOKEN not in refused.value.message
    assert freeze_status(github, git_remote) is None


async def test_without_a_github_repository_the_freeze_is_watch_only(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider(mode="tag")

    record = await provider.freeze("v1.2.4", "v1.2.3")

    assert record.action.startswith("watch only: ")
    assert record.saved == {}
    assert "nothing" in (await provider.unfreeze(record)).lower()


async def test_a_rate_limited_read_is_retried(
    provider: GitProvider, github: FakeGitHub, git_remote: GitRemote
) -> None:
    github.secondary_limits = 1

    await provider.freeze("v1.2.4", "v1.2.3")

    assert freeze_status(github, git_remote) is not None


@pytest.mark.parametrize("applied", [True, False])
async def test_an_unanswered_status_is_sent_once_and_read_back(
    provider: GitProvider,
    proxy: FaultProxy,
    github: FakeGitHub,
    git_remote: GitRemote,
    applied: bool,
) -> None:
    proxy.inject(Fault.TIMEOUT, method="POST", path=r"/statuses/", applied=applied)

    if applied:
        record = await provider.freeze("v1.2.4", "v1.2.3")
        assert record.saved["commit"] == git_remote.commit_of("v1.2.4")
    else:
        with pytest.raises(ProviderError) as failed:
            await provider.freeze("v1.2.4", "v1.2.3")
        assert "sent once" in failed.value.message
        assert "did not take" in failed.value.message
    assert [m for m, _ in proxy.calls].count("POST") == 1
    assert (freeze_status(github, git_remote) is not None) == applied
