"""The terminal break-glass path: the same engine as Slack, with no Slack at all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from bot.models import State
from bot.store.sqlite import SQLiteStore
from tests.e2e_helpers import backend_config, leaky_backend, running_image
from tests.support.bot import ROLLBOT
from tests.support.docker import (
    CACHE_PASSWORD,
    LEAKY_DSN,
    LEAKY_PASSWORD,
    ComposeContainerFactory,
    unique_project,
    wait_http,
)


def run_cli(
    tmp_path: Path, config: dict[str, object], *args: str, secrets: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `rollbot` with a config, a store in tmp_path and no Slack variables."""
    config_path = tmp_path / "rollbot.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env |= {
        "ROLLBOT_CONFIG": str(config_path),
        "ROLLBOT_STORE": f"sqlite:///{tmp_path / 'rollbot.db'}",
        **(secrets or {}),
    }
    return subprocess.run(
        [str(ROLLBOT), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


async def test_terminal_rollback_runs_verifies_and_records(
    tmp_path: Path, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    project = unique_project()
    before = await compose_container(project, "backend", "v1.2.4")
    config = backend_config(project, before.port)

    dry = run_cli(tmp_path, config, "rollback", "backend", "v1.2.3", "--issue", "critical_bug")
    assert dry.returncode == 0, dry.stderr
    assert "Dry run: nothing was changed" in dry.stdout
    image, _ = await running_image(docker_host, project)
    assert image.endswith(":v1.2.4")

    result = run_cli(
        tmp_path,
        config,
        "rollback",
        "backend",
        "v1.2.3",
        "--env",
        "production",
        "--issue",
        "critical_bug",
        "--reason",
        "Slack is down",
        "--yes",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "v1.2.4 -> v1.2.3" in result.stdout
    assert "backend health" in result.stdout and "ok" in result.stdout
    assert "[RESOLVED]" in result.stdout
    image, _ = await running_image(docker_host, project)
    assert image.endswith(":v1.2.3")
    assert '"version":"v1.2.3"' in await wait_http(f"{before.url}/health")

    store = SQLiteStore(str(tmp_path / "rollbot.db"))
    await store.open()
    try:
        done = await store.find(states=[State.SUCCEEDED])
        assert len(done) == 1 and done[0].requested_by.startswith("cli:")
        assert done[0].break_glass_reason == "Slack is down"
        actions = [a.action for a in await store.audit_log(done[0].id)]
        assert "break_glass" in actions and "succeeded" in actions
    finally:
        await store.close()


async def test_terminal_rollback_refuses_fix_forward_without_override(
    tmp_path: Path, compose_container: ComposeContainerFactory, docker_host: str
) -> None:
    project = unique_project()
    before = await compose_container(project, "backend", "v1.2.4")
    result = run_cli(
        tmp_path,
        backend_config(project, before.port),
        "rollback",
        "backend",
        "v1.2.3",
        "--issue",
        "minor_ui_bug",
        "--yes",
    )
    assert result.returncode == 1
    assert "fix forward" in result.stderr and "reason" in result.stderr
    image, _ = await running_image(docker_host, project)
    assert image.endswith(":v1.2.4")


def test_terminal_input_is_validated_like_slack_input(tmp_path: Path) -> None:
    config = backend_config("nothing-runs-here", 1)
    result = run_cli(
        tmp_path, config, "rollback", "backend", "v1;touch /tmp/x", "--issue", "critical_bug"
    )
    assert result.returncode == 1
    assert "'v1;touch /tmp/x' is not a valid version" in result.stderr


async def test_a_failing_container_log_is_printed_redacted(
    tmp_path: Path, compose_container: ComposeContainerFactory
) -> None:
    config = await leaky_backend(compose_container)

    result = run_cli(
        tmp_path,
        config,
        *("rollback", "backend", "v1.2.3", "--issue", "critical_bug", "--yes"),
        secrets={"DATABASE_URL": LEAKY_DSN},
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "password [redacted] rejected" in result.stdout
    for secret in (LEAKY_PASSWORD, CACHE_PASSWORD):
        assert secret not in result.stdout + result.stderr
