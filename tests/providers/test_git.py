"""The git provider against real git, with local bare repositories as remotes (no mocks)."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    ProviderError,
    Refused,
    RollbackFailed,
    Transient,
)
from tests.support.gitrepos import (
    FakeGitHub,
    GitProviderFactory,
    GitRemote,
    git,
    rolled_back_then_released,
    short,
)
from tests.support.progress import Recorder


async def test_versions_are_tags_newest_first_with_current_and_previous_stable(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    git_remote.work.tag("nightly", annotated=False)  # not a version: outside tag_pattern
    git_remote.work.push()
    provider = make_git_provider()

    versions = await provider.list_versions()

    assert [v.name for v in versions] == ["v1.2.4", "v1.2.3", "v1.2.2"]
    assert [v.name for v in versions if v.current] == ["v1.2.4"]
    assert [v.name for v in versions if v.previous_stable] == ["v1.2.3"]
    assert "“Release 1.2.4”" in versions[0].detail
    assert await provider.current_version() == "v1.2.4"
    head = short(git_remote.commit_of("v1.2.4"))
    assert await provider.describe_state() == f"main is at v1.2.4 ({head} “Release 1.2.4”)."

    git_remote.work.commit("Polish", {"extra.txt": "x\n"})
    git_remote.work.commit("Polish more", {"extra.txt": "y\n"})
    git_remote.work.push()
    assert await provider.current_version() == "v1.2.4"
    assert (await provider.describe_state()).startswith("main is 2 commit(s) ahead of v1.2.4 ")


async def test_versions_of_the_same_day_sort_by_their_numbers(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    for name in ("v1.9.0", "v1.10.0"):
        git_remote.work.tag(name, annotated=False)
    git_remote.work.commit("Next", {"app.txt": "next\n"})
    git_remote.work.push()

    versions = await make_git_provider().list_versions()

    assert [v.name for v in versions][:3] == ["v1.10.0", "v1.9.0", "v1.2.4"]
    assert [v.name for v in versions if v.current] == ["v1.10.0"]


async def test_revert_plan_names_each_commit_and_changes_nothing(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    before = git_remote.refs()
    plan = await make_git_provider().plan("v1.2.3")

    bad, worse = git_remote.commit_of("main~1"), git_remote.commit_of("main")
    assert plan.steps[0].startswith("Revert the 2 commit(s) on main after v1.2.3")
    assert plan.steps[1:3] == [
        f"revert {short(worse)} “Release 1.2.4”",
        f"revert {short(bad)} “Rework search”",
    ]
    assert plan.steps[3].startswith(f"Push main to {git_remote.bare}")
    assert plan.warnings == []
    assert git_remote.refs() == before


async def test_revert_pushes_one_revert_per_commit_and_the_branch_holds_the_target(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider()
    progress = Recorder()

    outcome = await provider.rollback("v1.2.3", progress)

    assert git_remote.subjects()[:3] == [
        'Revert "Rework search"',
        'Revert "Release 1.2.4"',
        "Release 1.2.4",
    ]
    assert git_remote.tree("main") == git_remote.tree("v1.2.3")
    assert git_remote.file("search.txt") == "fast search\n"
    author = git("log", "-1", "--format=%an <%ae>", "main", cwd=git_remote.bare).strip()
    assert author == "rollbot <rollbot@localhost>"
    assert "Pushed 2 revert commit(s) to main" in outcome.summary
    assert "with the files of v1.2.3" in outcome.summary
    assert progress.messages[0] == "Reverting 2 commit(s) on main after v1.2.3…"
    # What runs now is read back from the remote: main has v1.2.3's files.
    assert await provider.current_version() == "v1.2.3"
    assert "main is 4 commit(s) ahead of v1.2.3 and has exactly its files" in (
        await provider.describe_state()
    )
    versions = await provider.list_versions()
    assert [v.name for v in versions if v.previous_stable] == ["v1.2.2"]


async def test_merges_are_reverted_against_their_first_parent_and_empty_commits_skipped(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    work = git_remote.work
    git("checkout", "--quiet", "-b", "feature", cwd=work.path)
    work.commit("Feature part 1", {"feature.txt": "1\n"})
    work.commit("Feature part 2", {"feature.txt": "2\n"})
    git("checkout", "--quiet", "main", cwd=work.path)
    work.commit("Hotfix", {"app.txt": "1.2.4-hotfix\n"})
    work.merge("feature", "Merge feature")
    work.commit("Trigger deploy")  # an empty commit, as CI triggers often are
    work.push()
    provider = make_git_provider()

    plan = await provider.plan("v1.2.3")
    assert plan.steps[0].startswith("Revert the 5 commit(s) on main after v1.2.3")
    assert (
        plan.steps[1].startswith("skip ")
        and "“Trigger deploy”: it changes no file" in (plan.steps[1])
    )
    assert plan.steps[2].endswith("“Merge feature” (merge)")
    assert [step.split(" ", 2)[2] for step in plan.steps[3:6]] == [
        "“Hotfix”",
        "“Release 1.2.4”",
        "“Rework search”",
    ]
    assert "-m 1" in plan.warnings[0]

    await provider.rollback("v1.2.3", Recorder())

    assert git_remote.tree("main") == git_remote.tree("v1.2.3")
    assert git_remote.subjects()[3:5] == ['Revert "Merge feature"', "Trigger deploy"]


async def test_a_push_rejected_because_someone_pushed_meanwhile_changes_nothing(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    other = git_remote.clone()
    provider = make_git_provider()

    async def someone_pushes(text: str) -> None:
        # Between our fetch and our push, another engineer pushes a fix.
        if text.startswith("Pushing main"):
            other.commit("Fix search forward", {"search.txt": "fixed search\n"})
            other.push()

    with pytest.raises(RollbackFailed) as caught:
        await provider.rollback("v1.2.3", someone_pushes)

    assert "someone pushed to it meanwhile" in caught.value.message
    assert "Nothing was pushed" in caught.value.message
    assert git_remote.subjects()[:2] == ["Fix search forward", "Release 1.2.4"]
    assert git_remote.commit_of("main") == other.head()
    assert caught.value.target_state is not None
    assert caught.value.target_state.startswith("main is 1 commit(s) ahead of v1.2.4 ")

    # The clone was reset: asked again, the rollback reverts on top of the new commit.
    await provider.rollback("v1.2.3", Recorder())
    assert git_remote.tree("main") == git_remote.tree("v1.2.3")
    assert git_remote.subjects()[:3] == [
        'Revert "Rework search"',
        'Revert "Release 1.2.4"',
        'Revert "Fix search forward"',
    ]


async def test_a_revert_that_fails_half_way_aborts_and_pushes_nothing(
    make_git_provider: GitProviderFactory, git_remote: GitRemote, tmp_path: Path
) -> None:
    provider = make_git_provider()
    await provider.current_version()  # makes the cached clone
    before = git_remote.refs()
    # A hook that lets the first revert through and refuses the second one.
    hook = tmp_path / "cache" / ".git" / "hooks" / "prepare-commit-msg"
    counter = tmp_path / "reverts"
    hook.write_text(
        f'#!/bin/sh\necho x >> "{counter}"\n'
        f'[ "$(wc -l < "{counter}")" -lt 2 ] || {{ echo "policy says no" >&2; exit 1; }}\n'
    )
    hook.chmod(0o755)

    with pytest.raises(RollbackFailed) as caught:
        await provider.rollback("v1.2.3", Recorder())

    message = caught.value.message
    assert message.startswith(f"Reverting {short(git_remote.commit_of('main~1'))} “Rework search”")
    assert "policy says no" in message and "nothing was pushed" in message
    assert git_remote.refs() == before
    assert caught.value.target_state == (
        f"main is at v1.2.4 ({short(git_remote.commit_of('main'))} “Release 1.2.4”)."
    )
    clone = tmp_path / "cache"
    assert git("status", "--porcelain", cwd=clone) == ""
    assert git("rev-parse", "HEAD", cwd=clone).strip() == git_remote.commit_of("main")

    hook.unlink()
    await provider.rollback("v1.2.3", Recorder())
    assert git_remote.tree("main") == git_remote.tree("v1.2.3")


async def test_revert_refuses_a_version_outside_the_branch_history(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    work = git_remote.work
    git("checkout", "--quiet", "-b", "experiment", "v1.2.2", cwd=work.path)
    work.commit("Experiment", {"app.txt": "experiment\n"})
    work.tag("v1.3.0-rc1")
    git("push", "--quiet", "origin", "--tags", cwd=work.path)
    provider = make_git_provider()

    with pytest.raises(Refused, match=r"v1\.3\.0-rc1 is not in the history of main"):
        await provider.plan("v1.3.0-rc1")
    with pytest.raises(NotFound, match=r"No tag `v9\.9\.9`"):
        await provider.plan("v9.9.9")


async def test_tag_mode_pushes_an_annotated_rollback_tag_at_the_target(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider(mode="tag")
    main_before = git_remote.commit_of("main")
    target = git_remote.commit_of("v1.2.3")

    plan = await provider.plan("v1.2.3")
    assert plan.steps[0] == (
        f"Create annotated tag v1.2.3-rollback at v1.2.3 ({short(target)} “Add search”) "
        "with the message “Rollback to working version v1.2.3”."
    )
    assert "refs/tags/v1.2.3-rollback" not in git_remote.refs()

    outcome = await provider.rollback("v1.2.3", Recorder())

    refs = git_remote.refs()
    assert refs["refs/tags/v1.2.3-rollback^{}"] == target
    assert refs["refs/tags/v1.2.3-rollback"] != target  # annotated: a tag object
    assert git_remote.tag_message("v1.2.3-rollback") == "Rollback to working version v1.2.3"
    assert git_remote.commit_of("main") == main_before
    assert outcome.summary.startswith("Pushed tag v1.2.3-rollback at v1.2.3")
    # The pipeline deploys the tag pushed last: that is what runs now.
    assert await provider.current_version() == "v1.2.3"
    state = await provider.describe_state()
    assert state.startswith("Rollback tag v1.2.3-rollback (created ")
    assert f"deploys v1.2.3 ({short(target)} “Add search”); main is at " in state


async def test_tag_mode_refuses_a_rollback_tag_that_exists_on_the_remote(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    rolled_back_then_released(git_remote)
    provider = make_git_provider(mode="tag")
    before = git_remote.refs()

    assert await provider.current_version() == "v1.2.5"
    with pytest.raises(Conflicting, match=r"Tag v1\.2\.2-rollback exists on .* already"):
        await provider.plan("v1.2.2")
    with pytest.raises(Conflicting):
        await provider.rollback("v1.2.2", Recorder())
    assert git_remote.refs() == before


async def test_a_rollback_tag_pushed_by_someone_else_meanwhile_is_a_conflict(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    other = git_remote.clone()
    provider = make_git_provider(mode="tag")

    async def someone_tags(text: str) -> None:
        if text.startswith("Pushing tag"):
            other.tag("v1.2.3-rollback", ref="v1.2.2")
            git("push", "--quiet", "origin", "v1.2.3-rollback", cwd=other.path)

    with pytest.raises(Conflicting, match=r"it exists there already\. Nothing was pushed"):
        await provider.rollback("v1.2.3", someone_tags)

    assert git_remote.commit_of("v1.2.3-rollback") == git_remote.commit_of("v1.2.2")


async def test_workflow_dispatch_follows_the_push_once(
    make_git_provider: GitProviderFactory,
    git_remote: GitRemote,
    fake_github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", fake_github.token)
    provider = make_git_provider(
        mode="tag",
        github_repository="acme/web",
        workflow="deploy.yml",
        api_url=fake_github.url,
    )
    assert provider._settings.secret_variables() == {"token_env": "GITHUB_TOKEN"}

    plan = await provider.plan("v1.2.3")
    assert plan.steps[-1] == (
        "Start workflow deploy.yml of acme/web on main with input version=v1.2.3 "
        "(workflow_dispatch, sent once)."
    )
    outcome = await provider.rollback("v1.2.3", Recorder())

    (dispatch,) = fake_github.dispatches
    assert dispatch.path == "/repos/acme/web/actions/workflows/deploy.yml/dispatches"
    assert dispatch.body == {"ref": "main", "inputs": {"version": "v1.2.3"}}
    assert outcome.notes == ["Started workflow deploy.yml on main."]
    assert "refs/tags/v1.2.3-rollback" in git_remote.refs()


async def test_a_rejected_dispatch_says_the_push_happened_and_hides_the_token(
    make_git_provider: GitProviderFactory,
    git_remote: GitRemote,
    fake_github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", fake_github.token)
    fake_github.actions_write = False  # may read the repository, may not start workflows
    provider = make_git_provider(
        mode="tag", github_repository="acme/web", workflow="deploy.yml", api_url=fake_github.url
    )

    with pytest.raises(RollbackFailed) as caught:
        await provider.rollback("v1.2.3", Recorder())

    message = caught.value.message
    assert message.startswith("Pushed tag v1.2.3-rollback at v1.2.3")
    assert (
        "the token was rejected (HTTP 403)" in message and "start the workflow by hand" in message
    )
    assert fake_github.token not in message + str(caught.value.target_state)
    assert [m for m, _ in fake_github.requests].count("POST") == 1  # sent once, never retried
    assert "refs/tags/v1.2.3-rollback" in git_remote.refs()


@pytest.fixture
async def http_remote(git_remote: GitRemote) -> AsyncIterator[str]:
    """Serve the bare remote over git's dumb HTTP protocol behind Basic auth; return its URL."""
    git("update-server-info", cwd=git_remote.bare)
    expected = "Basic " + base64.b64encode(b"x-access-token:ghp_http_token").decode()

    async def serve(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})
        path = (git_remote.bare / request.match_info["path"]).resolve()
        if not path.is_relative_to(git_remote.bare) or not path.is_file():
            return web.Response(status=404)
        return web.Response(body=path.read_bytes())

    app = web.Application()
    app.router.add_get("/acme/web.git/{path:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/acme/web.git"
    await runner.cleanup()


async def test_the_token_is_sent_as_the_https_credential_outside_the_url(
    make_git_provider: GitProviderFactory, http_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_http_token")
    assert await make_git_provider(repository=http_remote, https_token=True).current_version() == (
        "v1.2.4"
    )

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong_token")
    with pytest.raises(AuthRejected) as caught:
        await make_git_provider(repository=http_remote, https_token=True).current_version()
    assert "ghp_wrong_token" not in caught.value.message
    assert caught.value.message.startswith(f"Fetching main from {http_remote}: ")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_credentials_never_appear_in_messages_or_the_clone(
    make_git_provider: GitProviderFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret_token_123")
    url = f"https://deploy:pa%40ss-in-url@127.0.0.1:{closed_port()}/acme/web.git"
    for https_token in (False, True):
        provider = make_git_provider(repository=url, https_token=https_token)

        with pytest.raises(ProviderError) as caught:
            await provider.list_versions()

        error = caught.value
        assert isinstance(error, Transient)  # retried, then reported
        said = " ".join([error.message, str(error), repr(error), str(error.target_state)])
        for secret in ("ghp_secret_token_123", "pa%40ss-in-url", "pa@ss-in-url", "deploy:"):
            assert secret not in said, said
        assert "127.0.0.1" in said  # the host is still named
    config = (tmp_path / "cache" / ".git" / "config").read_text()
    assert "ss-in-url" not in config and "ghp_" not in config
