"""`rollbot check-config` and start-up refusal, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from tests.support.bot import ROLLBOT

EXAMPLE = Path(__file__).resolve().parent.parent / "rollbot.example.yaml"
SECRETS = {
    "DATABASE_URL": "postgresql://app:pw@db/pmcrm",
    "REDIS_URL": "redis://cache:6379/0",
    "VERCEL_TOKEN": "vercel-token",
    "RAILWAY_TOKEN": "railway-token",
    "GITHUB_TOKEN": "github-token",
}


def rollbot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed `rollbot` command and capture what it prints."""
    base = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [str(ROLLBOT), *args],
        capture_output=True,
        text=True,
        env=base | (env or {}),
        timeout=60,
        check=False,
    )


def broken(tmp_path: Path, edit: dict[str, object]) -> Path:
    """Write the example config with one part replaced and return its path."""
    data = yaml.safe_load(EXAMPLE.read_text())
    backend = data["services"]["backend"]["environments"]["production"]
    backend.update(edit)
    path = tmp_path / "rollbot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_config_passes() -> None:
    result = rollbot("check-config", str(EXAMPLE), env=SECRETS)
    assert result.returncode == 0, result.stderr
    assert (
        "OK: 6 service(s): backend, backend-traffic, database, frontend, release, worker"
        in result.stdout
    )


def test_missing_secret_variable_is_named_with_its_key() -> None:
    result = rollbot("check-config", str(EXAMPLE), env={"REDIS_URL": "redis://x"})
    assert result.returncode == 1
    assert (
        "services.backend.environments.production.checks[2]: environment variable "
        "DATABASE_URL is not set" in result.stderr
    )
    assert (
        "services.frontend.environments.production.provider.token_env: environment variable "
        "VERCEL_TOKEN is not set" in result.stderr
    )
    assert "RAILWAY_TOKEN is not set" in result.stderr
    assert "REDIS_URL" not in result.stderr


def test_every_problem_is_listed_with_its_key_path(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        {
            "provider": {"provider": "docker_compose", "service": "backend", "projekt": "x"},
            "checks": [{"name": "h", "type": "http", "expect_status": ["ok"]}],
        },
    )
    result = rollbot("check-config", str(path), env=SECRETS)
    assert result.returncode == 1
    err = result.stderr
    assert "services.backend.environments.production.provider.project: Field required" in err
    assert "services.backend.environments.production.provider.projekt: Extra inputs" in err
    assert "services.backend.environments.production.checks[0].url: Field required" in err
    assert "services.backend.environments.production.checks[0].expect_status[0]:" in err


def test_unknown_provider_and_bad_yaml(tmp_path: Path) -> None:
    path = broken(tmp_path, {"provider": {"provider": "nomad"}})
    result = rollbot("check-config", str(path), env=SECRETS)
    assert result.returncode == 1
    assert "services.backend.environments.production.provider:" in result.stderr
    assert "'docker_compose'" in result.stderr

    path.write_text("services:\n  backend: [unclosed\n")
    result = rollbot("check-config", str(path))
    assert result.returncode == 1
    assert "invalid YAML at line 3" in result.stderr


def test_server_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    path = broken(tmp_path, {"provider": {"provider": "docker_compose"}})
    result = rollbot(
        "serve",
        "--http",
        "--port",
        "0",
        env=SECRETS
        | {"ROLLBOT_CONFIG": str(path), "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"},
    )
    assert result.returncode == 1
    assert "Invalid configuration:" in result.stderr
    assert "services.backend.environments.production.provider.project: Field required" in (
        result.stderr
    )


def test_server_names_missing_slack_variables() -> None:
    result = rollbot("serve", "--http", env=SECRETS | {"ROLLBOT_CONFIG": str(EXAMPLE)})
    assert result.returncode == 1
    assert "environment variable SLACK_BOT_TOKEN is not set" in result.stderr
    assert "environment variable SLACK_SIGNING_SECRET is not set" in result.stderr


def test_missing_region_of_an_aws_provider_is_named(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    del data["services"]["backend"]["environments"]["production"]["provider"]["region"]
    path = tmp_path / "rollbot.yaml"
    path.write_text(yaml.safe_dump(data))
    result = rollbot("check-config", str(path), env=SECRETS)
    assert result.returncode == 1
    assert "services.backend.environments.production.provider.region: Field required" in (
        result.stderr
    )


def test_a_service_named_like_a_provider_keeps_its_key_path(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["services"]["git"] = data["services"].pop("worker")
    del data["services"]["git"]["environments"]["production"]["provider"]["service_id"]
    path = tmp_path / "rollbot.yaml"
    path.write_text(yaml.safe_dump(data))
    result = rollbot("check-config", str(path), env=SECRETS)
    assert "services.git.environments.production.provider.service_id: Field required" in (
        result.stderr
    )


def test_plan_step_problems_are_named_with_their_key_path(tmp_path: Path) -> None:
    redis_step = {
        "provider": "redis_state",
        "pattern": "session:*",
        "backup_dir": str(tmp_path),
    }
    path = broken(
        tmp_path,
        {
            "steps": [
                {"provider": redis_step, "target": "v1.2.3"},
                {"name": "Bad Name", "provider": redis_step},
            ]
        },
    )
    result = rollbot("check-config", str(path), env=SECRETS)
    assert result.returncode == 1
    err = result.stderr
    assert (
        "services.backend.environments.production.steps[0]: Value error, redis_state has no "
        in (err)
    )
    assert "steps[1]: Value error, step name 'Bad Name' must match" in err


def test_steps_need_distinct_names_and_state_steps_are_not_providers(tmp_path: Path) -> None:
    redis_step = {"provider": "redis_state", "pattern": "session:*", "backup_dir": str(tmp_path)}
    path = broken(tmp_path, {"steps": [{"provider": redis_step}, {"provider": redis_step}]})
    result = rollbot("check-config", str(path), env=SECRETS)
    assert result.returncode == 1
    assert "give `name:` to the steps called ['redis_state']" in result.stderr

    path = broken(tmp_path, {"provider": redis_step, "steps": []})
    result = rollbot("check-config", str(path), env=SECRETS)
    assert result.returncode == 1
    assert "services.backend.environments.production.provider: Input tag 'redis_state'" in (
        result.stderr
    )


def test_a_program_a_provider_runs_is_named_when_it_is_missing(
    tmp_path: Path, helm_binary: str
) -> None:
    helm = {"provider": "helm", "release": "backend", "namespace": "shop"}
    path = broken(tmp_path, {"provider": helm})
    empty = tmp_path / "bin"
    empty.mkdir()
    result = rollbot("check-config", str(path), env=SECRETS | {"PATH": str(empty)})
    assert result.returncode == 1
    assert (
        "services.backend.environments.production.provider.helm_binary: the program `helm` is "
        "not on PATH; install it or set `helm_binary` to its path" in result.stderr
    )

    path = broken(tmp_path, {"provider": helm | {"helm_binary": helm_binary}})
    result = rollbot("check-config", str(path), env=SECRETS | {"PATH": str(empty)})
    assert result.returncode == 0, result.stderr
