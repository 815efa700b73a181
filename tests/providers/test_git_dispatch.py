"""A workflow dispatch whose answer never came: GitHub is asked whether a run started."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from providers.base import RollbackFailed
from providers.git import GitProvider
from tests.support.faults import Fault, FaultProxy, assert_names_cause
from tests.support.github import FakeGitHub, Run
from tests.support.gitrepos import GitProviderFactory, GitRemote
from tests.support.progress import Recorder

TOKEN = "ghp_dispatch_token_4321"


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    """GitHub for acme/web, with runs of deploy.yml that are not rollbot's."""
    fake = FakeGitHub(TOKEN)
    fake.branches.add("release")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    fake.runs += [
        Run(1, "deploy.yml", "main", an_hour_ago),  # an older dispatch
        Run(2, "deploy.yml", "release", datetime.now(UTC)),  # another branch
        Run(3, "deploy.yml", "main", datetime.now(UTC), event="push"),  # not a dispatch
    ]
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


@pytest.mark.parametrize("fault", [Fault.TIMEOUT, Fault.RESET])
async def test_a_dispatch_that_started_a_run_but_lost_its_answer_names_the_run(
    provider: GitProvider,
    proxy: FaultProxy,
    github: FakeGitHub,
    git_remote: GitRemote,
    fault: Fault,
) -> None:
    proxy.inject(fault, method="POST", path=r"/dispatches$", applied=True)

    outcome = await provider.rollback("v1.2.3", Recorder())

    # The rollback did all it set out to do: the tag is out and the deploy runs.
    assert outcome.summary.startswith("Pushed tag v1.2.3-rollback at v1.2.3")
    (note,) = outcome.notes
    assert_names_cause(fault, note)
    (run,) = [r for r in github.runs if r.id > 3]
    assert f"a run started: https://github.com/acme/web/actions/runs/{run.id}" in note
    assert "by hand" not in note
    assert len(github.dispatches) == 1  # never sent twice
    assert [m for m, _ in proxy.calls].count("POST") == 1
    assert "refs/tags/v1.2.3-rollback" in git_remote.refs()
    assert TOKEN not in note


@pytest.mark.parametrize("fault", [Fault.TIMEOUT, Fault.RESET])
async def test_a_dispatch_that_never_arrived_says_no_run_started_and_how_to_start_it(
    provider: GitProvider,
    proxy: FaultProxy,
    github: FakeGitHub,
    git_remote: GitRemote,
    fault: Fault,
) -> None:
    proxy.inject(fault, method="POST", path=r"/dispatches$")

    with pytest.raises(RollbackFailed) as caught:
        await provider.rollback("v1.2.3", Recorder())

    message = caught.value.message
    assert message.startswith("Pushed tag v1.2.3-rollback at v1.2.3")
    assert_names_cause(fault, message)
    assert "no run started; start it by hand: " in message
    assert "gh workflow run deploy.yml --repo acme/web --ref main -f version=v1.2.3" in message
    assert "/acme/web/actions/workflows/deploy.yml" in message
    assert "/actions/runs/" not in message  # the older, other-branch and push runs are not it
    assert github.dispatches == []
    assert [m for m, _ in proxy.calls].count("POST") == 1
    assert "refs/tags/v1.2.3-rollback" in git_remote.refs()


async def test_when_the_runs_cannot_be_listed_either_the_message_says_it_is_unknown(
    provider: GitProvider, proxy: FaultProxy, github: FakeGitHub
) -> None:
    proxy.inject(Fault.TIMEOUT, method="POST", path=r"/dispatches$", applied=True)
    proxy.inject(Fault.UNAUTHORIZED, method="GET", path=r"/runs", times=None)

    with pytest.raises(RollbackFailed) as caught:
        await provider.rollback("v1.2.3", Recorder())

    message = caught.value.message
    assert "whether a run started is unknown" in message
    assert "/acme/web/actions/workflows/deploy.yml" in message
    assert "before starting it by hand" in message
    assert len(github.dispatches) == 1
