"""Incident channel names and their config, as Slack and `rollbot check-config` need them."""

from __future__ import annotations

import pytest

from bot.config import parse_config
from bot.errors import ConfigError
from bot.models import Rollback
from handlers.incident_channel import NAME_LIMIT, channel_name
from tests.e2e_helpers import backend_config
from tests.support.slack import CHANNEL_NAME


def rollback(service: str) -> Rollback:
    return Rollback(
        id="rb-1a2b3c4d",
        service=service,
        environment="production",
        requested_by="U_REQ",
        current_version="v1.2.4",
        target_version="v1.2.3",
    )


def test_names_are_valid_slack_channel_names_even_for_long_services() -> None:
    rb = rollback("backend")
    day = f"{rb.created_at:%Y%m%d}"
    assert channel_name("inc", rb) == f"inc-{day}-backend-rb1a2b3c4d"
    assert channel_name("inc", rb, 3) == f"inc-{day}-backend-rb1a2b3c4d-3"
    long = rollback("a" * 60 + "-b")
    for attempt in (1, 5):
        name = channel_name("incident-room", long, attempt)
        assert len(name) <= NAME_LIMIT and CHANNEL_NAME.fullmatch(name)
        assert name.endswith("rb1a2b3c4d" + (f"-{attempt}" if attempt > 1 else ""))


def test_config_checks_the_prefix_and_the_severities() -> None:
    config = backend_config("pmcrm", 8080)
    config["slack"] = {"channel_per_incident": {"severities": ["critical"], "prefix": "war"}}
    parsed = parse_config(config)
    assert parsed.slack.channel_per_incident.prefix == "war"
    assert parse_config(backend_config("pmcrm", 8080)).slack.channel_per_incident.severities == []

    config["slack"] = {"channel_per_incident": {"severities": ["urgent"], "prefix": "War Room"}}
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    problems = "\n".join(caught.value.problems)
    assert "slack.channel_per_incident.severities[0]" in problems
    assert (
        "slack.channel_per_incident.prefix" in problems and "not a channel-name prefix" in problems
    )


def test_environments_can_be_marked_production() -> None:
    config = backend_config("pmcrm", 8080)
    env = config["services"]["backend"]["environments"]["production"]
    config["services"]["backend"]["environments"]["eu"] = {**env, "production": True}
    parsed = parse_config(config)
    assert parsed.environment("backend", "eu").production
    assert not parsed.environment("backend", "production").production  # the name says it
