"""The git provider's GitHub calls on GitHub's bad days: every fault on every call it makes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.base import ProviderError, RollbackFailed
from tests.support.faults import ALL_FAULTS, TRANSIENT, Fault, FaultProxy, assert_names_cause
from tests.support.github import PULL_REQUEST, FakeGitHub, Ruleset, tag_ruleset
from tests.support.gitrepos import GitProviderFactory, GitRemote
from tests.support.progress import Recorder

TOKEN = "ghp_fault_token_5678"
# The GitHub calls of a revert rollback: the plan's reads, then the one write.
CALLS = {
    "protection": ("GET", r"/branches/main/protection$"),
    "branch": ("GET", r"/branches/main$"),
    "rules": ("GET", r"/rules/branches/main"),
    "ruleset": ("GET", r"/rulesets/\d+$"),
    "dispatch": ("POST", r"/dispatches$"),
}
# Answers that are a normal day for one call: a token without admin rights is refused the
# protection (403), and an unprotected branch has none (404); both are read elsewhere.
EXPECTED = {("protection", Fault.FORBIDDEN), ("protection", Fault.NOT_FOUND)}
RATE_LIMITS = {Fault.RATE_LIMITED, Fault.FORBIDDEN_RATE_LIMIT}


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    """GitHub for acme/web (a ruleset rollbot may bypass) behind a fault proxy."""
    github = FakeGitHub(TOKEN)
    github.rulesets.append(Ruleset(3, "reviews", "main", [PULL_REQUEST], bypass="always"))
    await github.start()
    async with FaultProxy(github.url, hang_seconds=3) as faults:
        yield faults
    await github.close()


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("fault", ALL_FAULTS)
async def test_each_fault_on_each_github_call(
    make_git_provider: GitProviderFactory,
    git_remote: GitRemote,
    proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    fault: Fault,
    call: str,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    provider = make_git_provider(
        github_repository="acme/web",
        workflow="deploy.yml",
        api_url=proxy.url,
        request_timeout_seconds=1,
    )
    method, path = CALLS[call]
    proxy.inject(fault, method=method, path=path, times=1)
    before = git_remote.refs()

    try:
        plan = await provider.plan("v1.2.3")
        await provider.rollback("v1.2.3", Recorder())
    except ProviderError as exc:
        assert (call, fault) not in EXPECTED
        assert fault not in TRANSIENT or method == "POST", f"a one-off {fault} on a read"
        assert_names_cause(fault, exc.message)
        assert TOKEN not in exc.message + str(exc.target_state)
        if method == "GET":  # found in the plan: nothing changed
            assert git_remote.refs() == before
            return
        # The push happened before the dispatch failed, and the error says so.
        assert isinstance(exc, RollbackFailed)
        assert exc.message.startswith("Pushed 2 revert commit(s) to main")
        # An unanswered dispatch is looked up among the runs: here it never arrived.
        unanswered = fault in TRANSIENT and fault not in RATE_LIMITS
        said = "no run started; start it by hand" if unanswered else "start the workflow by hand"
        assert said in exc.message
        assert "exactly its files" in str(exc.target_state)
        assert git_remote.tree("main") == git_remote.tree("v1.2.3")
        assert [m for m, _ in proxy.calls].count("POST") == 1  # a write is sent once
        return
    assert method == "GET" and (fault in TRANSIENT or (call, fault) in EXPECTED)
    assert any("rollbot may bypass" in w for w in plan.warnings)
    assert git_remote.tree("main") == git_remote.tree("v1.2.3")
    assert [m for m, _ in proxy.calls].count("POST") == 1
    assert proxy.faulted == [(fault, method, proxy.faulted[0][2])]


# The GitHub calls of a tag rollback's rule reads (the dispatch is covered above).
TAG_CALLS = {
    "rulesets": ("GET", r"/rulesets\?"),
    "tag ruleset": ("GET", r"/rulesets/\d+\?"),
}


@pytest.mark.parametrize("call", list(TAG_CALLS))
@pytest.mark.parametrize("fault", ALL_FAULTS)
async def test_each_fault_on_each_tag_rule_read(
    make_git_provider: GitProviderFactory,
    git_remote: GitRemote,
    monkeypatch: pytest.MonkeyPatch,
    fault: Fault,
    call: str,
) -> None:
    github = FakeGitHub(TOKEN)
    github.rulesets.append(tag_ruleset(5, "release tags", "refs/tags/v*", bypass="always"))
    await github.start()
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    try:
        async with FaultProxy(github.url, hang_seconds=3) as proxy:
            provider = make_git_provider(
                mode="tag",
                github_repository="acme/web",
                workflow="deploy.yml",
                api_url=proxy.url,
                request_timeout_seconds=1,
            )
            method, path = TAG_CALLS[call]
            proxy.inject(fault, method=method, path=path, times=1)
            before = git_remote.refs()
            try:
                plan = await provider.plan("v1.2.3")
            except ProviderError as exc:
                assert fault not in TRANSIENT, f"a one-off {fault} on a read"
                assert_names_cause(fault, exc.message)
                assert TOKEN not in exc.message
                assert git_remote.refs() == before
                return
            assert fault in TRANSIENT
            assert any("rollbot may bypass" in w for w in plan.warnings)
            await provider.rollback("v1.2.3", Recorder())
            assert "refs/tags/v1.2.3-rollback" in git_remote.refs()
            assert len(github.dispatches) == 1
    finally:
        await github.close()
