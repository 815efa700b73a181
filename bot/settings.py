"""Process settings from the environment (pydantic-settings); secrets stay SecretStr."""

from __future__ import annotations

from collections.abc import MutableMapping

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

# The process's own secrets, as opposed to those its config names for providers.
OWN_SECRETS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "ROLLBOT_METRICS_TOKEN",
)


def withdraw_own_secrets(environ: MutableMapping[str, str]) -> None:
    """Take the process's own secrets out of its environment once they have been read.

    The programs rollbot runs (git and its hooks, pg_dump, helm, credential helpers)
    inherit the environment and need none of them; and Bolt, given a client, would read
    SLACK_BOT_TOKEN again and warn that it goes unused.
    """
    for name in OWN_SECRETS:
        environ.pop(name, None)


class Settings(BaseSettings):
    """Environment of the rollbot process."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    SLACK_BOT_TOKEN: SecretStr | None = Field(default=None, description="xoxb- bot token.")
    SLACK_SIGNING_SECRET: SecretStr | None = Field(
        default=None, description="Verifies requests in HTTP mode."
    )
    SLACK_APP_TOKEN: SecretStr | None = Field(default=None, description="xapp- Socket Mode token.")
    SLACK_API_URL: str | None = Field(
        default=None, description="Base URL of the Slack Web API (tests and playground)."
    )
    ROLLBOT_CONFIG: str = Field(default="rollbot.yaml", description="Path of the YAML config.")
    ROLLBOT_STORE: str = Field(
        default="sqlite:///rollbot-data/rollbot.db", description="Store URL."
    )
    ROLLBOT_METRICS_TOKEN: SecretStr | None = Field(
        default=None, description="When set, GET /metrics requires it as a bearer token."
    )
    ROLLBOT_LOG_FORMAT: str | None = Field(
        default=None, description="json or console; default: json unless stderr is a TTY."
    )
    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = Field(
        default=None,
        description="When set, traces go to this OTLP/HTTP endpoint (needs rollbot[otel]).",
    )

    def missing(self, *names: str) -> list[str]:
        """Describe each of the named variables that is not set."""
        return [
            f"environment variable {name} is not set" for name in names if not getattr(self, name)
        ]

    def require(self, *names: str) -> None:
        """Fail with one clear message naming every missing variable."""
        if problems := self.missing(*names):
            raise ConfigError(problems)

    def for_serving(self, *, http: bool) -> list[str]:
        """Name the variables `rollbot serve` needs and lacks, or has set unusably."""
        problems = self.missing(
            "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET" if http else "SLACK_APP_TOKEN"
        )
        token = self.ROLLBOT_METRICS_TOKEN
        if http and token is not None and not token.get_secret_value().strip():
            # Set but blank reads as "protect /metrics" and would leave it open.
            problems.append(
                "environment variable ROLLBOT_METRICS_TOKEN is empty: "
                "unset it to leave /metrics open, or set a token"
            )
        return problems
