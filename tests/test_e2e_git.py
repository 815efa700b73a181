"""End to end: a real `rollbot serve --http` pushing a rollback tag to a bare git remote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.models import State
from handlers.ids import ActionId
from tests.e2e_helpers import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    cards,
    ephemeral_text,
    ready_to_approve,
    service_config,
    thread_text,
)
from tests.support.bot import BOT_TOKEN, SIGNING_SECRET, StartBot
from tests.support.gitrepos import (
    FakeGitHub,
    GitRemote,
    rolled_back_then_released,
)
from tests.support.services import HttpServerFactory
from tests.support.slack import text_of

# Until tests/conftest.py lists tests.support.gitrepos in pytest_plugins.


def git_config(remote: GitRemote, cache: Path, check_url: str) -> dict[str, Any]:
    """A config with one service deployed by pushing tags to the bare remote."""
    provider = {
        "provider": "git",
        "repository": str(remote.bare),
        "branch": "main",
        "mode": "tag",
        "cache_dir": str(cache),
        "git_timeout_seconds": 20,
    }
    return service_config("web", provider, check_url)


async def test_tag_rollback_conversation(
    start_rollbot: StartBot,
    git_remote: GitRemote,
    http_server: HttpServerFactory,
    tmp_path: Path,
) -> None:
    health = await http_server(200, "ok")
    bot = await start_rollbot(git_config(git_remote, tmp_path / "cache", health.url))
    main_before = git_remote.commit_of("main")
    target = git_remote.commit_of("v1.2.3")

    card = await ready_to_approve(bot, "web v1.2.3", "critical_bug")
    shown = text_of(card)
    assert "v1.2.4" in shown and "v1.2.3" in shown
    assert "Create annotated tag v1.2.3-rollback" in shown
    assert "refs/tags/v1.2.3-rollback" not in git_remote.refs()

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    refs = git_remote.refs()
    assert refs["refs/tags/v1.2.3-rollback^{}"] == target
    assert git_remote.tag_message("v1.2.3-rollback") == "Rollback to working version v1.2.3"
    assert git_remote.commit_of("main") == main_before
    thread = thread_text(bot.fake, card)
    assert "Pushing tag v1.2.3-rollback" in thread
    assert "Pushed tag v1.2.3-rollback at v1.2.3" in thread
    assert "Verification passed" in thread and "web health" in thread
    (rb,) = await bot.store.find()
    assert (rb.state, rb.current_version, rb.target_version) == (
        State.SUCCEEDED,
        "v1.2.4",
        "v1.2.3",
    )
    assert await bot.store.locks() == []


async def test_an_existing_rollback_tag_is_refused_before_anything_is_asked(
    start_rollbot: StartBot,
    git_remote: GitRemote,
    http_server: HttpServerFactory,
    tmp_path: Path,
) -> None:
    rolled_back_then_released(git_remote)
    health = await http_server(200, "ok")
    bot = await start_rollbot(git_config(git_remote, tmp_path / "cache", health.url))
    before = git_remote.refs()

    status, _ = await bot.slack.command("web v1.2.2", user=REQUESTER, channel=CHANNEL)
    assert status == 200
    message = await bot.fake.wait_for(
        lambda: text if "exists on" in (text := ephemeral_text(bot.fake)) else None
    )

    assert "Tag v1.2.2-rollback exists on" in message
    assert cards(bot.fake) == []
    assert await bot.store.find() == []
    assert git_remote.refs() == before


async def test_a_rejected_workflow_dispatch_fails_the_rollback_and_says_the_tag_is_out(
    start_rollbot: StartBot,
    git_remote: GitRemote,
    fake_github: FakeGitHub,
    http_server: HttpServerFactory,
    tmp_path: Path,
) -> None:
    health = await http_server(200, "ok")
    config = git_config(git_remote, tmp_path / "cache", health.url)
    config["services"]["web"]["environments"]["production"]["provider"] |= {
        "github_repository": "acme/web",
        "workflow": "deploy.yml",
        "api_url": fake_github.url,
    }
    fake_github.actions_write = False  # the token may read the rules, not start workflows
    bot = await start_rollbot(config, extra_env={"GITHUB_TOKEN": fake_github.token})

    card = await ready_to_approve(bot, "web v1.2.3", "critical_bug")
    assert "Start workflow deploy.yml of acme/web on main" in text_of(card)
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "What to do next" in thread_text(bot.fake, card))

    thread = thread_text(bot.fake, card)
    assert "Pushed tag v1.2.3-rollback at v1.2.3" in thread
    assert "the token was rejected (HTTP 403)" in thread
    assert "Rollback tag v1.2.3-rollback" in thread and "deploys v1.2.3" in thread
    (rb,) = await bot.store.find()
    assert rb.state is State.FAILED
    assert (rb.target_state or "").startswith("Rollback tag v1.2.3-rollback (created ")
    assert await bot.store.locks() == []
    assert [m for m, _ in fake_github.requests].count("POST") == 1
    assert git_remote.refs()["refs/tags/v1.2.3-rollback^{}"] == git_remote.commit_of("v1.2.3")
    assert fake_github.token not in bot.log() + thread


async def test_revert_a_named_bad_commit_conversation(
    start_rollbot: StartBot,
    git_remote: GitRemote,
    http_server: HttpServerFactory,
    tmp_path: Path,
) -> None:
    health = await http_server(200, "ok")
    config = git_config(git_remote, tmp_path / "cache", health.url)
    config["services"]["web"]["environments"]["production"]["provider"]["mode"] = "revert"
    bot = await start_rollbot(config)
    bad = git_remote.commit_of("main~1")  # "Rework search", released in v1.2.4

    card = await ready_to_approve(bot, f"web commit={bad[:9]}", "critical_bug")
    shown = text_of(card)
    assert f"revert {bad[:9]}" in shown and "Rework search" in shown

    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))
    assert git_remote.file("search.txt") == "fast search\n"
    assert git_remote.file("app.txt") == "1.2.4\n"
    assert git_remote.subjects()[:2] == ['Revert "Rework search"', "Release 1.2.4"]
    (rb,) = await bot.store.find()
    assert (rb.state, rb.bad_commit) == (State.SUCCEEDED, bad[:9])


async def test_programs_the_bot_runs_never_see_its_slack_credentials(
    start_rollbot: StartBot,
    git_remote: GitRemote,
    http_server: HttpServerFactory,
    tmp_path: Path,
) -> None:
    # git push runs the remote's hooks in its environment: this one writes it down.
    seen = tmp_path / "hook-environment"
    hook = git_remote.bare / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\nenv > '{seen}'\nexit 0\n")
    hook.chmod(0o755)
    health = await http_server(200, "ok")
    bot = await start_rollbot(git_config(git_remote, tmp_path / "cache", health.url))

    card = await ready_to_approve(bot, "web v1.2.3", "critical_bug")
    await bot.slack.click(card["channel"], card["ts"], ActionId.APPROVE, user=APPROVER)
    await bot.fake.wait_for(lambda: "[RESOLVED]" in thread_text(bot.fake, card))

    environment = seen.read_text()
    assert "GIT_DIR" in environment  # the hook ran
    assert BOT_TOKEN not in environment and SIGNING_SECRET not in environment
    assert "SLACK_BOT_TOKEN" not in environment
    # Nothing at start-up is worth a warning: Bolt gets the client and no token twice.
    assert '"level": "warning"' not in bot.log() and "will be unused" not in bot.log()
