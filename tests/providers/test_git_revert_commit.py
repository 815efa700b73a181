"""Reverting one named bad commit with the git provider, against local bare remotes."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from providers.base import NotFound, ProviderError, Refused, RollbackFailed
from providers.git import COMMIT_PATTERN
from tests.support.gitrepos import FakeGitHub, GitProviderFactory, GitRemote, git, short
from tests.support.progress import Recorder


def on_branch(remote: GitRemote, sha: str) -> bool:
    """Return True when the remote's main still has `sha` in its history."""
    done = git("branch", "--contains", sha, cwd=remote.bare)
    return "main" in done.split()


def refuse_pushes(remote: GitRemote, reason: str) -> None:
    """Install a pre-receive hook in the bare remote that refuses every push."""
    hook = remote.bare / "hooks" / "pre-receive"
    hook.write_text(f'#!/bin/sh\necho "{reason}" >&2\nexit 1\n')
    hook.chmod(0o755)


async def test_a_named_commit_is_reverted_on_top_of_the_branch_and_pushed(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider()
    bad = git_remote.commit_of("main~1")
    head = git_remote.commit_of("main")
    before = git_remote.refs()

    plan = await provider.plan_revert(bad)

    assert plan.steps == [
        f"Revert {short(bad)} “Rework search”, authored 2026-01-05 12:00 UTC, with one revert "
        "commit on top of main (git revert --no-edit).",
        f"Push main to {git_remote.bare} (a normal push: refused, with nothing changed, if "
        "someone pushed meanwhile; a conflicting revert pushes nothing).",
    ]
    assert plan.warnings == []
    assert git_remote.refs() == before

    progress = Recorder()
    outcome = await provider.revert(bad, progress)

    made = git_remote.commit_of("main")
    assert git_remote.subjects()[:3] == ['Revert "Rework search"', "Release 1.2.4", "Rework search"]
    assert git_remote.commit_of("main~1") == head
    assert git_remote.file("search.txt") == "fast search\n"
    assert git_remote.file("app.txt") == "1.2.4\n"  # the later release stays
    assert on_branch(git_remote, bad)
    body = git("log", "-1", "--format=%B", "main", cwd=git_remote.bare)
    assert f"This reverts commit {bad}." in body
    author = git("log", "-1", "--format=%an <%ae>", "main", cwd=git_remote.bare).strip()
    assert author == "rollbot <rollbot@localhost>"
    assert outcome.summary == (
        f"Pushed revert commit {short(made)} to main of {git_remote.bare}: it reverts "
        f"{short(bad)} “Rework search”."
    )
    assert outcome.notes == []
    assert progress.messages == [
        f"Reverting {short(bad)} “Rework search” on main…",
        f"Pushing main to {git_remote.bare}…",
    ]


async def test_an_abbreviated_sha_is_reverted_and_the_workflow_started_with_the_revert(
    make_git_provider: GitProviderFactory,
    git_remote: GitRemote,
    fake_github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", fake_github.token)
    provider = make_git_provider(
        github_repository="acme/web", workflow="deploy.yml", api_url=fake_github.url
    )
    bad = git_remote.commit_of("main~1")
    assert COMMIT_PATTERN.fullmatch(short(bad))

    plan = await provider.plan_revert(short(bad))

    assert plan.steps[0].startswith(f"Revert {short(bad)} “Rework search”, authored ")
    assert plan.steps[-1] == (
        "Start workflow deploy.yml of acme/web on main with input version=<the revert commit's "
        "sha> (workflow_dispatch, sent once)."
    )
    assert fake_github.dispatches == []

    outcome = await provider.revert(short(bad), Recorder())

    made = git_remote.commit_of("main")
    assert git_remote.subjects()[0] == 'Revert "Rework search"'
    assert f"This reverts commit {bad}." in git("log", "-1", "--format=%B", cwd=git_remote.bare)
    (dispatch,) = fake_github.dispatches
    assert dispatch.body == {"ref": "main", "inputs": {"version": made}}
    assert outcome.notes == ["Started workflow deploy.yml on main."]


async def test_commits_that_are_not_on_the_branch_or_not_shas_are_refused(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    work = git_remote.work
    git("checkout", "--quiet", "-b", "experiment", "v1.2.2", cwd=work.path)
    tagged = work.commit("Experiment", {"app.txt": "experiment\n"})
    work.tag("v1.3.0-rc1")  # fetched with the tags, but not on main
    untagged = work.commit("Experiment 2", {"app.txt": "experiment 2\n"})
    git("push", "--quiet", "origin", "experiment", "--tags", cwd=work.path)
    git("checkout", "--quiet", "main", cwd=work.path)
    work.commit("Trigger deploy")  # changes no file
    work.push()
    provider = make_git_provider()
    before = git_remote.refs()

    with pytest.raises(Refused, match=r"is not in the history of main"):
        await provider.plan_revert(tagged)
    with pytest.raises(Refused, match=r"is not in the history of main"):
        await provider.revert(short(tagged), Recorder())
    with pytest.raises(NotFound) as caught:
        await provider.plan_revert(short(untagged))
    assert caught.value.message == f"No commit {short(untagged)} on main of {git_remote.bare}."
    with pytest.raises(NotFound, match=r"No commit 0000000 on main"):
        await provider.plan_revert("0000000")
    with pytest.raises(Refused, match=r"“Trigger deploy” changes no file on main"):
        await provider.plan_revert(git_remote.commit_of("main"))
    for given in ("HEAD~1", "-n", short(tagged).upper(), "abc12", f"{tagged}0"):
        with pytest.raises(Refused, match=r"named by its sha: 7 to 40 lowercase hex"):
            await provider.plan_revert(given)
        with pytest.raises(Refused, match=r"named by its sha"):
            await provider.revert(given, Recorder())
    assert git_remote.refs() == before


async def test_a_commit_reverted_already_is_refused_naming_the_revert(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    other = git_remote.clone()
    bad = git_remote.commit_of("main~1")
    git("revert", "--no-edit", bad, cwd=other.path, date=git_remote.clock.next())
    other.commit("Unrelated", {"notes.txt": "x\n"})
    other.push()
    reverting = git_remote.commit_of("main~1")
    provider = make_git_provider()
    before = git_remote.refs()

    with pytest.raises(Refused) as caught:
        await provider.plan_revert(short(bad))
    assert caught.value.message == (
        f"{short(bad)} “Rework search” is reverted on main already, by {short(reverting)} "
        '“Revert "Rework search"”: nothing to revert.'
    )
    with pytest.raises(Refused, match=rf"by {short(reverting)} "):
        await provider.revert(bad, Recorder())
    assert git_remote.refs() == before

    # Reverting the revert puts the commit back: it can be reverted again.
    git("revert", "--no-edit", reverting, cwd=other.path, date=git_remote.clock.next())
    other.push()
    await provider.revert(short(bad), Recorder())
    assert git_remote.subjects()[0] == 'Revert "Rework search"'
    assert git_remote.file("search.txt") == "fast search\n"


async def test_a_conflicting_revert_is_aborted_and_the_remote_is_unchanged(
    make_git_provider: GitProviderFactory, git_remote: GitRemote, tmp_path: Path
) -> None:
    bad = git_remote.commit_of("main~1")
    git_remote.work.commit("Tune search", {"search.txt": "tuned broken search\n"})
    git_remote.work.push()
    provider = make_git_provider()
    plan = await provider.plan_revert(bad)  # the plan cannot know; the revert finds out
    assert plan.steps[0].startswith(f"Revert {short(bad)} “Rework search”")
    before = git_remote.refs()

    with pytest.raises(RollbackFailed) as caught:
        await provider.revert(bad, Recorder())

    assert caught.value.message == (
        f"Reverting {short(bad)} “Rework search” failed: conflicts in search.txt. The revert "
        "was aborted and nothing was pushed; revert by hand or fix forward."
    )
    head = git_remote.commit_of("main")
    assert caught.value.target_state == (
        f"Unchanged on the remote: main is 1 commit(s) ahead of v1.2.4 (head {short(head)} "
        "“Tune search”)."
    )
    assert git_remote.refs() == before
    clone = tmp_path / "cache"
    assert git("status", "--porcelain", cwd=clone) == ""
    assert git("rev-parse", "HEAD", cwd=clone).strip() == head

    # The clone is usable again: another commit reverts cleanly.
    release = git_remote.commit_of("main~1")
    await provider.revert(release, Recorder())
    assert git_remote.subjects()[:2] == ['Revert "Release 1.2.4"', "Tune search"]


async def test_a_push_refused_by_a_hook_changes_nothing_and_says_so(
    make_git_provider: GitProviderFactory, git_remote: GitRemote, tmp_path: Path
) -> None:
    refuse_pushes(git_remote, "main is frozen for the release")
    provider = make_git_provider()
    bad = git_remote.commit_of("main~1")
    before = git_remote.refs()

    with pytest.raises(RollbackFailed) as caught:
        await provider.revert(bad, Recorder())

    message = caught.value.message
    assert message.startswith(f"{git_remote.bare} refused the push of main: ")
    assert "main is frozen for the release" in message
    assert "pre-receive hook declined" in message
    assert message.endswith(
        "Nothing was pushed; ask for the revert again (it is made on top of what the branch "
        "holds then)."
    )
    assert caught.value.target_state is not None
    assert caught.value.target_state.startswith("Unchanged on the remote: main is at v1.2.4 ")
    assert git_remote.refs() == before
    assert git("rev-parse", "HEAD", cwd=tmp_path / "cache").strip() == before["refs/heads/main"]


async def test_a_push_refused_because_someone_pushed_meanwhile_changes_nothing(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    other = git_remote.clone()
    provider = make_git_provider()
    bad = git_remote.commit_of("main~1")
    started = git_remote.commit_of("main")

    async def someone_pushes(text: str) -> None:
        # Between our fetch and our push, another engineer pushes a fix.
        if text.startswith("Pushing main"):
            other.commit("Fix docs", {"docs.txt": "docs\n"})
            other.push()

    with pytest.raises(RollbackFailed) as caught:
        await provider.revert(bad, someone_pushes)

    assert "someone pushed to it meanwhile (non-fast-forward). Nothing was pushed" in (
        caught.value.message
    )
    assert caught.value.target_state is not None
    assert caught.value.target_state.startswith(
        f"main moved on from {short(started)} by another push: main is 1 commit(s) ahead of "
    )
    assert git_remote.commit_of("main") == other.head()
    assert git_remote.subjects()[:2] == ["Fix docs", "Release 1.2.4"]

    # Asked again, the revert goes on top of the new commit.
    await provider.revert(bad, Recorder())
    assert git_remote.subjects()[:2] == ['Revert "Rework search"', "Fix docs"]


async def test_tag_mode_refuses_to_revert_a_named_commit(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    provider = make_git_provider(mode="tag")
    bad = git_remote.commit_of("main~1")
    before = git_remote.refs()

    with pytest.raises(Refused, match=r"reverting a named commit needs mode revert"):
        await provider.plan_revert(bad)
    with pytest.raises(Refused, match=r"reverting a named commit needs mode revert"):
        await provider.revert(bad, Recorder())
    assert git_remote.refs() == before


async def test_a_merge_commit_is_reverted_against_its_first_parent(
    make_git_provider: GitProviderFactory, git_remote: GitRemote
) -> None:
    work = git_remote.work
    git("checkout", "--quiet", "-b", "feature", cwd=work.path)
    work.commit("Feature part 1", {"feature.txt": "1\n"})
    work.commit("Feature part 2", {"feature.txt": "2\n"})
    git("checkout", "--quiet", "main", cwd=work.path)
    work.commit("Hotfix", {"app.txt": "1.2.4-hotfix\n"})
    before_merge = work.head()
    merge = work.merge("feature", "Merge feature")
    work.commit("After the merge", {"later.txt": "later\n"})
    work.push()
    provider = make_git_provider()

    plan = await provider.plan_revert(short(merge))

    assert plan.steps[0].startswith(f"Revert {short(merge)} “Merge feature” (merge), authored ")
    assert plan.steps[0].endswith("on top of main (git revert --no-edit -m 1).")
    assert plan.warnings == [
        f"{short(merge)} “Merge feature” (merge) is a merge: it is reverted against its first "
        "parent (-m 1), which takes out of main everything the merge brought in."
    ]

    await provider.revert(short(merge), Recorder())

    assert git_remote.subjects()[:2] == ['Revert "Merge feature"', "After the merge"]
    body = git("log", "-1", "--format=%B", "main", cwd=git_remote.bare)
    assert f"This reverts commit {merge}, reversing\nchanges made to {before_merge}." in body
    assert git_remote.file("feature.txt") is None
    assert git_remote.file("app.txt") == "1.2.4-hotfix\n"
    assert git_remote.file("later.txt") == "later\n"


@pytest.fixture
async def smart_http(git_remote: GitRemote) -> AsyncIterator[str]:
    """Serve the bare remote with git http-backend behind Basic auth; return its address."""
    expected = "Basic " + base64.b64encode(b"x-access-token:ghp_url_token_123").decode()

    async def serve(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})
        env = {
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "GIT_PROJECT_ROOT": str(git_remote.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "REMOTE_USER": "x-access-token",  # lets http-backend accept pushes
            "PATH_INFO": f"/{git_remote.bare.name}/{request.match_info['path']}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        }
        backend = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await backend.communicate(await request.read())
        head, _, body = out.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if line)
        status = int(headers.pop("Status", "200").split()[0])
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/acme/web.git/{path:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"127.0.0.1:{runner.addresses[0][1]}/acme/web.git"
    await runner.cleanup()


async def test_a_token_in_the_repository_url_never_appears_in_a_message(
    make_git_provider: GitProviderFactory, git_remote: GitRemote, smart_http: str
) -> None:
    token = "ghp_url_token_123"
    provider = make_git_provider(repository=f"http://x-access-token:{token}@{smart_http}")
    shown = f"http://{smart_http}"
    bad = git_remote.commit_of("main~1")
    said: list[str] = []

    def keep(error: ProviderError) -> None:
        said.extend([error.message, str(error), repr(error), str(error.target_state)])

    plan = await provider.plan_revert(short(bad))
    said += plan.steps + plan.warnings
    assert plan.steps[1].startswith(f"Push main to {shown} ")
    with pytest.raises(NotFound) as missing:
        await provider.plan_revert("0000000")
    keep(missing.value)
    assert missing.value.message == f"No commit 0000000 on main of {shown}."

    refuse_pushes(git_remote, "refused by policy")
    progress = Recorder()
    with pytest.raises(RollbackFailed) as refused:
        await provider.revert(bad, progress)
    keep(refused.value)
    assert refused.value.message.startswith(f"{shown} refused the push of main: ")
    assert "refused by policy" in refused.value.message
    assert str(refused.value.target_state).startswith("Unchanged on the remote: ")
    (git_remote.bare / "hooks" / "pre-receive").unlink()

    outcome = await provider.revert(bad, progress)
    said += [outcome.summary, *outcome.notes, *progress.messages]
    assert git_remote.subjects()[0] == 'Revert "Rework search"'
    assert outcome.summary.endswith(f"to main of {shown}: it reverts {short(bad)} “Rework search”.")

    text = "\n".join(said)
    assert token not in text and "x-access-token:" not in text, text
