"""The YAML config, validated with pydantic: services x environments, checks, policy."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.commands import SUBCOMMANDS
from bot.errors import ConfigError
from bot.matrix import ISSUES, Action, MatrixRow, Severity
from bot.names import NAME_PATTERN, VERSION_PATTERN
from bot.policy import PROTECTED_NAMES, ApprovalPolicy
from bot.prom_check import PrometheusCheck
from bot.verification import Check, PostgresCheck, RedisCheck
from providers import BY_NAME, ProviderSettings, StepSettings

# Names pydantic puts in an error's location for the union member it tried; the user
# never wrote them as keys, so they are left out of the key path.
_UNION_TAGS = frozenset(BY_NAME) | {"http", "postgres", "redis", "tcp", "prometheus"}
RESERVED_SERVICE_NAMES = SUBCOMMANDS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


PREVIOUS = "previous"


class StepConfig(_Strict):
    """A further step of the rollback plan, run after the provider and the steps before it."""

    name: str | None = Field(
        default=None, description="Shown on the card and used by restore; default: the kind."
    )
    provider: StepSettings
    target: str = Field(
        default=PREVIOUS,
        description="Version to roll this step back to: `previous` (its previous stable) or "
        "a version name. Not used by redis_state.",
    )
    targets: dict[str, str] = Field(
        default_factory=dict,
        description="Version of this step for each version the service rolls back to; "
        "overrides `target`.",
    )

    @property
    def label(self) -> str:
        """Return the step's name, or its kind when it has none."""
        return self.name or self.provider.provider

    @property
    def versioned(self) -> bool:
        """Return True for a target with versions (everything but state clears)."""
        return BY_NAME[self.provider.provider].versioned

    @model_validator(mode="after")
    def _valid(self) -> StepConfig:
        if self.name is not None and not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"step name {self.name!r} must match {NAME_PATTERN.pattern}")
        if not self.versioned and (self.targets or self.target != PREVIOUS):
            raise ValueError(f"{self.provider.provider} has no versions: drop target/targets")
        for version in [self.target, *self.targets, *self.targets.values()]:
            if not VERSION_PATTERN.fullmatch(version):
                raise ValueError(f"{version!r} is not a valid version name")
        return self


class MonitoringConfig(_Strict):
    """The guide's "monitor for 30 minutes": health checks re-run after a rollback succeeds."""

    enabled: bool = Field(default=True, description="Watch services after a rollback.")
    interval_minutes: float = Field(
        default=5, gt=0, description="Minutes between two rounds of the environment's checks."
    )
    window_minutes: float = Field(
        default=30, gt=0, description="Minutes the window lasts after the rollback succeeded."
    )

    @model_validator(mode="after")
    def _window_holds_a_round(self) -> MonitoringConfig:
        if self.window_minutes < self.interval_minutes:
            raise ValueError(
                f"window_minutes ({self.window_minutes:g}) must be at least interval_minutes "
                f"({self.interval_minutes:g})"
            )
        return self


class UrgencyConfig(_Strict):
    """How long a request may wait for approval when the decision matrix sets a deadline."""

    enabled: bool = Field(
        default=True, description="Mention the on-call group and escalate late approvals."
    )
    within_15_min: float = Field(
        default=15,
        gt=0,
        description="Minutes after the request before a 'rollback within 15 min' escalates.",
    )
    within_1_hour: float = Field(
        default=60,
        gt=0,
        description="Minutes after the request before a 'rollback within 1 hour' escalates.",
    )

    def deadline(self, action: str | None) -> timedelta | None:
        """Return how long a request with this matrix action may wait for approval.

        Zero: call the on-call group at once. None: no deadline (fix forward, or off).
        """
        if not self.enabled:
            return None
        match action:
            case Action.IMMEDIATE | Action.RESTORE_DATABASE:
                return timedelta(0)
            case Action.WITHIN_15_MIN:
                return timedelta(minutes=self.within_15_min)
            case Action.WITHIN_1_HOUR:
                return timedelta(minutes=self.within_1_hour)
        return None


class EnvironmentConfig(_Strict):
    """One environment of a service: where it runs and how to check it."""

    provider: ProviderSettings
    steps: list[StepConfig] = Field(
        default_factory=list,
        description="Further steps, run in order after the provider (multi-step plans).",
    )
    checks: list[Check] = Field(default_factory=list, description="Verification after rollback.")
    approval: ApprovalPolicy | None = Field(
        default=None, description="Overrides the keys it sets of the top-level approval policy."
    )
    monitoring: MonitoringConfig | None = Field(
        default=None, description="Overrides the top-level monitoring settings."
    )
    protected: bool | None = Field(
        default=None,
        description="Protected: approvers must be listed and at least one approval is "
        "needed, drills refuse it, a restore needs a second person. Default: true for the "
        "names in `protected_environments`.",
    )
    production: bool = Field(
        default=False, description="Older spelling of `protected: true`; kept for old configs."
    )

    @model_validator(mode="after")
    def _unique_step_names(self) -> EnvironmentConfig:
        names = [self.provider.provider, *(step.label for step in self.steps)]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"steps need distinct names; give `name:` to the steps called {repeated}"
            )
        return self

    def targets(self) -> list[tuple[str, StepSettings]]:
        """Return every step's name and settings in plan order, the provider first."""
        return [(self.provider.provider, self.provider)] + [
            (step.label, step.provider) for step in self.steps
        ]


class ServiceConfig(_Strict):
    """A service and its environments."""

    description: str = ""
    environments: dict[str, EnvironmentConfig]
    default_environment: str | None = Field(
        default=None, description="Used when the command names none; default: production."
    )

    @field_validator("environments")
    @classmethod
    def _names(cls, value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
        for name in value:
            if not NAME_PATTERN.fullmatch(name):
                raise ValueError(f"environment name {name!r} must match {NAME_PATTERN.pattern}")
        if not value:
            raise ValueError("at least one environment is required")
        return value

    @model_validator(mode="after")
    def _default_exists(self) -> ServiceConfig:
        if self.default_environment and self.default_environment not in self.environments:
            raise ValueError(f"default_environment {self.default_environment!r} is not listed")
        return self

    def pick_environment(self, name: str | None) -> str | None:
        """Return the environment a command means, or None if it is ambiguous."""
        if name:
            return name
        if self.default_environment:
            return self.default_environment
        if "production" in self.environments:
            return "production"
        if len(self.environments) == 1:
            return next(iter(self.environments))
        return None


CHANNEL_PREFIX_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,19}")


class ChannelPerIncident(_Strict):
    """A dedicated Slack channel opened for a rollback once its severity is confirmed."""

    severities: list[Severity] = Field(
        default_factory=list,
        description="Confirmed severities that get a channel of their own; empty: never.",
    )
    prefix: str = Field(
        default="inc",
        description="Start of the channel's name: PREFIX-YYYYMMDD-SERVICE-ROLLBACKID.",
    )
    private: bool = Field(
        default=False,
        description="Open a private channel (scope groups:write) instead of a public one "
        "(scope channels:manage).",
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not CHANNEL_PREFIX_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a channel-name prefix: lowercase letters, digits, '-' and "
                "'_', at most 20"
            )
        return value


class SlackConfig(_Strict):
    """Where rollbot talks."""

    incident_channel: str | None = Field(
        default=None, description="Channel for rollback cards; default: where the command ran."
    )
    notification_channel: str | None = Field(
        default=None, description="Also receives the internal notification."
    )
    oncall_group: str | None = Field(
        default=None,
        description="Slack user group (S...) of the on-call rotation: mentioned when the "
        "matrix says roll back immediately, and on escalations.",
    )
    channel_per_incident: ChannelPerIncident = Field(
        default_factory=ChannelPerIncident,
        description="Open a channel of its own for rollbacks of these severities.",
    )


# A header name (RFC 9110 token) and an environment variable name.
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CHANNEL = re.compile(r"[CGD][A-Z0-9_]{1,30}")


class StatusPageConfig(_Strict):
    """A status-page webhook told "investigating" and "resolved" for each rollback."""

    url: str = Field(description="http(s) URL that receives the JSON POST.")
    secret_header: str | None = Field(
        default=None, description="Header that carries the secret, e.g. Authorization."
    )
    secret_env: str | None = Field(
        default=None, description="Environment variable holding the secret header's value."
    )
    timeout_seconds: float = Field(default=5, gt=0, le=60, description="Timeout of one attempt.")
    attempts: int = Field(
        default=3, ge=1, le=10, description="Tries in all when it answers 5xx or 429."
    )

    @model_validator(mode="after")
    def _valid(self) -> StatusPageConfig:
        if not self.url.startswith(("https://", "http://")):
            raise ValueError("url must start with https:// or http://")
        if (self.secret_header is None) != (self.secret_env is None):
            raise ValueError("give both secret_header and secret_env, or neither")
        if self.secret_header is not None and not _HEADER_NAME.fullmatch(self.secret_header):
            raise ValueError(f"secret_header {self.secret_header!r} is not a header name")
        if self.secret_env is not None and not _VARIABLE.fullmatch(self.secret_env):
            raise ValueError(f"secret_env {self.secret_env!r} is not a variable name")
        return self


class NotificationsConfig(_Strict):
    """The guide's user notification and the status page."""

    user_channel: str | None = Field(
        default=None,
        description="Channel id where users read service updates; the draft's Post button "
        "posts there. Without it the draft only says where it would go.",
    )
    status_page: StatusPageConfig | None = Field(
        default=None, description="Webhook told investigating/resolved; none by default."
    )

    @field_validator("user_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL.fullmatch(value):
            raise ValueError(f"{value!r} is not a channel id (C…)")
        return value


class RuntimeConfig(_Strict):
    """Deadlines and leases."""

    lock_ttl_seconds: float = Field(
        default=30,
        ge=3,
        description="A service lock is a lease, renewed every third of this while its rollback "
        "runs; one not renewed for this long (its process died) is taken over.",
    )
    rollback_timeout_seconds: float = Field(default=600, gt=0, description="Provider deadline.")
    verify_deadline_seconds: float = Field(default=60, gt=0, description="Checks retry until.")
    verify_interval_seconds: float = Field(default=2, gt=0, description="Pause between tries.")
    sweep_interval_seconds: float = Field(
        default=30, gt=0, description="How often expired and orphaned rollbacks are closed."
    )
    scheduler_tick_seconds: float = Field(
        default=5, gt=0, description="How often due monitoring checks and escalations are run."
    )
    freeze_watch_seconds: float = Field(
        default=60,
        gt=0,
        description="While a service is frozen, how often what runs is compared with the "
        "version it was rolled back to.",
    )


class RollbotConfig(_Strict):
    """The whole config file."""

    slack: SlackConfig = Field(default_factory=SlackConfig)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    decision_matrix: dict[str, MatrixRow] = Field(
        default_factory=lambda: dict(ISSUES), description="Overrides the guide's matrix."
    )
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    urgency: UrgencyConfig = Field(default_factory=UrgencyConfig)
    protected_environments: list[str] = Field(
        default_factory=lambda: list(PROTECTED_NAMES),
        description="Environment names that are protected unless they say `protected: false`.",
    )
    services: dict[str, ServiceConfig]

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: dict[str, ServiceConfig]) -> dict[str, ServiceConfig]:
        for name in value:
            if not NAME_PATTERN.fullmatch(name):
                raise ValueError(f"service name {name!r} must match {NAME_PATTERN.pattern}")
            if name in RESERVED_SERVICE_NAMES:
                raise ValueError(f"service name {name!r} is a /rollback subcommand")
        return value

    def policy_for(self, service: str, environment: str) -> ApprovalPolicy:
        """Return the approval policy of one service environment, inherited key by key."""
        env = self.services[service].environments[environment]
        return self.approval.merged(env.approval)

    def is_protected(self, service: str, environment: str) -> bool:
        """Return True for a protected environment (by its name, or as it says)."""
        env = self.services[service].environments[environment]
        if env.protected is not None:
            return env.protected or env.production
        return env.production or environment in self.protected_environments

    def environment(self, service: str, environment: str) -> EnvironmentConfig:
        """Return one environment's config."""
        return self.services[service].environments[environment]

    def provider_kind(self, service: str, environment: str) -> str:
        """Name the kind of an environment's provider ("unknown" once it left the config)."""
        found = self.services.get(service)
        if found is None or environment not in found.environments:
            return "unknown"
        return str(found.environments[environment].provider.provider)

    def monitoring_for(self, service: str, environment: str) -> MonitoringConfig:
        """Return the monitoring settings of one service environment."""
        return self.environment(service, environment).monitoring or self.monitoring

    def provider_settings(self) -> list[tuple[str, BaseModel]]:
        """List the settings of every provider and step, with the key path of each."""
        found: list[tuple[str, BaseModel]] = []
        for service_name, service in self.services.items():
            for env_name, env in service.environments.items():
                path = f"services.{service_name}.environments.{env_name}"
                found.append((f"{path}.provider", env.provider))
                found += [
                    (f"{path}.steps[{i}].provider", step.provider)
                    for i, step in enumerate(env.steps)
                ]
        return found

    def secret_variables(self) -> list[tuple[str, str]]:
        """List every environment variable that holds a secret, with the key that names it."""
        found = []
        for place, settings in self.provider_settings():
            named: dict[str, str] = getattr(settings, "secret_variables", dict)()
            found += [(f"{place}.{key}", variable) for key, variable in named.items()]
        for service_name, service in self.services.items():
            for env_name, env in service.environments.items():
                path = f"services.{service_name}.environments.{env_name}"
                for i, check in enumerate(env.checks):
                    if isinstance(check, PostgresCheck):
                        found.append((f"{path}.checks[{i}]", check.dsn_env))
                    elif isinstance(check, RedisCheck):
                        found.append((f"{path}.checks[{i}]", check.url_env))
                    elif isinstance(check, PrometheusCheck) and check.token_env:
                        found.append((f"{path}.checks[{i}]", check.token_env))
        page = self.notifications.status_page
        if page and page.secret_env:
            found.append(("notifications.status_page.secret_env", page.secret_env))
        return found


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    previous: int | str | None = None
    for item in loc:
        # pydantic names the union member it tried right after the key ("provider",
        # or a list index of checks); the user never wrote that name as a key.
        is_tag = item in _UNION_TAGS and (previous == "provider" or isinstance(previous, int))
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not is_tag and not item.startswith("function-"):
            parts.append(("." if parts else "") + str(item))
        previous = item
    return "".join(parts) or "(top level)"


def missing_secrets(config: RollbotConfig, environ: Mapping[str, str]) -> list[str]:
    """List every secret variable the config names that is not set, with its key path."""
    return [
        f"{place}: environment variable {variable} is not set"
        for place, variable in config.secret_variables()
        if not environ.get(variable)
    ]


def missing_programs(config: RollbotConfig) -> list[str]:
    """List every program a provider runs that is not found, with its key path."""
    problems = []
    for place, settings in config.provider_settings():
        named: dict[str, str] = getattr(settings, "required_programs", dict)()
        for key, program in named.items():
            if shutil.which(program) is None:
                where = "is not an executable file" if "/" in program else "is not on PATH"
                problems.append(
                    f"{place}.{key}: the program `{program}` {where}; install it or set "
                    f"`{key}` to its path"
                )
    return problems


def unprotected_problems(config: RollbotConfig) -> list[str]:
    """List protected environments whose policy would let anyone approve, or nobody need to."""
    problems = []
    for service, svc in config.services.items():
        for name in svc.environments:
            if not config.is_protected(service, name):
                continue
            policy = config.policy_for(service, name)
            where = f"services.{service}.environments.{name}"
            if policy.approvers.anyone:
                problems.append(
                    f"{where}: a protected environment must list its approvers "
                    "(approval.approvers.users or .groups), or say `protected: false`"
                )
            if policy.required_approvals < 1:
                problems.append(
                    f"{where}: a protected environment needs at least one approval "
                    "(approval.required_approvals), or say `protected: false`"
                )
    return problems


def parse_config(data: Any) -> RollbotConfig:
    """Validate loaded YAML data, raising ConfigError with every problem."""
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping with a 'services' key"])
    try:
        config = RollbotConfig.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_key_path(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(problems) from None
    if problems := unprotected_problems(config):
        raise ConfigError(problems)
    return config


def load_config(path: str | Path, *, check_secrets: bool = False) -> RollbotConfig:
    """Read and validate a config file; with check_secrets, also require secrets and programs."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        hint = (
            "; copy rollbot.example.yaml there or set ROLLBOT_CONFIG"
            if isinstance(exc, FileNotFoundError)
            else ""
        )
        raise ConfigError([f"{path}: cannot read ({exc.strerror}){hint}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{path}: invalid YAML{where}"]) from None
    config = parse_config(data)
    if check_secrets:
        problems = missing_secrets(config, os.environ) + missing_programs(config)
        if problems:
            raise ConfigError(problems)
    return config
