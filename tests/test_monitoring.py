"""Monitoring windows and urgency settings without Slack: cadence, changes, config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.config import MonitoringConfig, UrgencyConfig, parse_config
from bot.errors import ConfigError
from bot.matrix import Action
from bot.monitoring import Window, run_round
from bot.verification import HttpCheck
from tests.support.services import HttpServerFactory

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def window(interval: float = 5, length: float = 30) -> Window:
    settings = MonitoringConfig(interval_minutes=interval, window_minutes=length)
    check = HttpCheck(type="http", name="api", url="http://127.0.0.1:1/health")
    return Window.open("backend", "production", T0, settings, [check])


def minutes(value: float) -> datetime:
    return T0 + timedelta(minutes=value)


def test_rounds_keep_their_cadence_and_the_last_one_ends_the_window() -> None:
    w = window(interval=5, length=12)
    assert w.first_due == minutes(5)
    assert w.ok == {"api": True}
    assert w.next_due(minutes(5), minutes(5.1)) == minutes(10)
    assert w.next_due(minutes(10), minutes(10.2)) == minutes(12)  # the window's end
    assert w.next_due(minutes(12), minutes(12.1)) is None


def test_rounds_missed_while_stopped_are_skipped() -> None:
    w = window(interval=5, length=30)
    assert w.next_due(minutes(5), minutes(17)) == minutes(20)
    assert w.next_due(minutes(5), minutes(45)) == minutes(30)  # ended meanwhile: one last round


async def test_a_round_reports_only_confirmed_changes(http_server: HttpServerFactory) -> None:
    server = await http_server(200, "ok")
    check = HttpCheck(type="http", name="api", url=server.url, timeout_seconds=2)

    results, changed = await run_round([check], {"api": True}, 0.05)
    assert [r.ok for r in results] == [True] and changed == []

    server.fail_first(1)  # one dropped request: the second attempt agrees with before
    results, changed = await run_round([check], {"api": True}, 0.05)
    assert [r.ok for r in results] == [True] and changed == []

    server.set(503, "down")
    results, changed = await run_round([check], {"api": True}, 0.05)
    assert [(c.result.name, c.went_bad) for c in changed] == [("api", True)]
    assert "HTTP 503" in results[0].detail

    server.set(200, "ok")
    results, changed = await run_round([check], {"api": False}, 0.05)
    assert [(c.result.name, c.went_bad) for c in changed] == [("api", False)]
    assert server.requests == 7


def test_monitoring_config_defaults_overrides_and_validation() -> None:
    service = {
        "environments": {
            "production": {
                "provider": {"provider": "docker_compose", "project": "p", "service": "api"}
            },
            "staging": {
                "provider": {"provider": "docker_compose", "project": "p", "service": "api"},
                "monitoring": {"interval_minutes": 0.01, "window_minutes": 0.05},
            },
        }
    }
    approval = {"approvers": {"users": ["U_APPROVER"]}}
    config = parse_config({"approval": approval, "services": {"backend": service}})
    assert config.monitoring_for("backend", "production") == MonitoringConfig(
        enabled=True, interval_minutes=5, window_minutes=30
    )
    assert config.monitoring_for("backend", "staging").window_minutes == 0.05
    assert config.runtime.scheduler_tick_seconds == 5

    with pytest.raises(ConfigError) as bad:
        parse_config(
            {
                "monitoring": {"interval_minutes": 10, "window_minutes": 5},
                "urgency": {"within_15_min": 0},
                "runtime": {"scheduler_tick_seconds": -1},
                "approval": approval,
                "services": {"backend": service},
            }
        )
    problems = "\n".join(bad.value.problems)
    assert "monitoring: Value error, window_minutes (5) must be at least interval_minutes" in (
        problems
    )
    assert "urgency.within_15_min: Input should be greater than 0" in problems
    assert "runtime.scheduler_tick_seconds: Input should be greater than 0" in problems


def test_urgency_deadlines_follow_the_decision_matrix() -> None:
    urgency = UrgencyConfig(within_15_min=0.5, within_1_hour=2)
    assert urgency.deadline(Action.IMMEDIATE) == timedelta(0)
    assert urgency.deadline(Action.RESTORE_DATABASE.value) == timedelta(0)
    assert urgency.deadline(Action.WITHIN_15_MIN) == timedelta(seconds=30)
    assert urgency.deadline(Action.WITHIN_1_HOUR) == timedelta(minutes=2)
    assert urgency.deadline(Action.FIX_FORWARD) is None
    assert urgency.deadline(None) is None
    assert UrgencyConfig(enabled=False).deadline(Action.IMMEDIATE) is None
