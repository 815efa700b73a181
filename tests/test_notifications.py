"""The user notification text, the status-page webhook and their config, without Slack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import StatusPageConfig, missing_secrets, parse_config
from bot.engine import Engine
from bot.errors import ConfigError
from bot.models import Rollback, State
from bot.notifications import (
    STATUS_EVENT,
    STATUS_FAILED_EVENT,
    Announced,
    PageStatus,
    announce,
    post_status,
    status_payload,
    user_notification,
)
from bot.pool import ProviderPool
from bot.store.sqlite import SQLiteStore
from providers.base import Refused, Transient
from tests.e2e_helpers import REQUESTER, backend_config
from tests.support.services import HttpServerFactory

SECRET = "sp-secret-7f3a9c"


def rollback(**fields: Any) -> Rollback:
    base: dict[str, Any] = {
        "id": "rb-0000abcd",
        "service": "backend",
        "environment": "production",
        "requested_by": REQUESTER,
        "current_version": "v1.2.4",
        "target_version": "v1.2.3",
        "state": State.SUCCEEDED,
        "created_at": datetime(2024, 5, 2, 14, 2, tzinfo=UTC),
        "finished_at": datetime(2024, 5, 2, 14, 31, tzinfo=UTC),
    }
    return Rollback(**(base | fields))


def test_user_notification_is_the_guides_template_with_the_times() -> None:
    text = user_notification(rollback())
    assert text.splitlines() == [
        "*Subject: Service Update*",
        "",
        "We briefly experienced technical difficulties between 14:02 and 14:31 UTC.",
        "",
        "The issue has been resolved and all services are now operating normally.",
        "",
        "We apologize for any inconvenience.",
    ]
    detected = rollback(detected_at=datetime(2024, 5, 2, 13, 50, tzinfo=UTC))
    assert "between 13:50 and 14:31 UTC." in user_notification(detected)
    overnight = rollback(detected_at=datetime(2024, 5, 1, 23, 50, tzinfo=UTC))
    assert "between 23:50 on 1 May and 14:31 on 2 May UTC." in user_notification(overnight)


def test_a_short_incident_is_one_time_not_a_range() -> None:
    quick = rollback(finished_at=datetime(2024, 5, 2, 14, 2, 3, tzinfo=UTC))
    assert "difficulties at 14:02 UTC." in user_notification(quick)


def test_user_notification_times_are_in_the_requesters_timezone() -> None:
    assert "between 16:02 and 16:31 CEST." in user_notification(rollback(), "Europe/Berlin")
    late = rollback(
        created_at=datetime(2024, 5, 2, 21, 50, tzinfo=UTC),
        finished_at=datetime(2024, 5, 2, 22, 20, tzinfo=UTC),
    )
    assert "between 21:50 and 22:20 UTC." in user_notification(late)
    assert "between 23:50 on 2 May and 00:20 on 3 May CEST." in user_notification(
        late, "Europe/Berlin"
    )
    assert "between 21:50 and 22:20 UTC." in user_notification(late, "Nowhere/Special")


def test_status_payload() -> None:
    at = datetime(2024, 5, 2, 14, 31, tzinfo=UTC)
    payload = status_payload(rollback(), PageStatus.RESOLVED, at)
    assert payload == {
        "status": "resolved",
        "service": "backend",
        "environment": "production",
        "rollback_id": "rb-0000abcd",
        "message": "The issue with backend (production) has been resolved and all services "
        "are operating normally.",
        "at": "2024-05-02T14:31:00+00:00",
    }
    investigating = status_payload(rollback(), PageStatus.INVESTIGATING, at)
    assert "investigating an issue with backend" in investigating["message"]


def page(url: str, **fields: Any) -> StatusPageConfig:
    return StatusPageConfig(
        url=url, secret_header="X-Status-Token", secret_env="STATUS_PAGE_TOKEN", **fields
    )


async def test_post_status_sends_the_secret_header(
    http_server: HttpServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATUS_PAGE_TOKEN", SECRET)
    server = await http_server(200, "{}")
    await post_status(page(server.url), {"status": "investigating"})
    (received,) = server.received
    assert received.method == "POST"
    assert received.headers["X-Status-Token"] == SECRET
    assert received.json() == {"status": "investigating"}


async def test_post_status_retries_5xx_and_429_then_reports_without_the_secret(
    http_server: HttpServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATUS_PAGE_TOKEN", SECRET)
    server = await http_server(200, "{}")
    server.fail_first(1, status=429, body="slow down")
    await post_status(page(server.url), {"status": "resolved"})
    assert server.requests == 2

    failing = await http_server(500, f"boom {SECRET}")
    with pytest.raises(Transient) as caught:
        await post_status(page(failing.url, attempts=3), {"status": "resolved"})
    assert failing.requests == 3
    assert caught.value.message == "Status page: the service failed (HTTP 500)"
    assert SECRET not in str(caught.value)


async def test_post_status_refuses_without_its_secret(http_server: HttpServerFactory) -> None:
    server = await http_server(200, "{}")
    with pytest.raises(Refused, match="STATUS_PAGE_TOKEN is not set"):
        await post_status(page(server.url), {"status": "resolved"})
    assert server.requests == 0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "rollbot.db")) as opened:
        yield opened


def engine_for(store: SQLiteStore, url: str) -> Engine:
    data = backend_config("project", 8080)
    data["notifications"] = {
        "status_page": {
            "url": url,
            "secret_header": "X-Status-Token",
            "secret_env": "STATUS_PAGE_TOKEN",
        }
    }
    config = parse_config(data)
    return Engine(config, store, ProviderPool(config))


async def test_each_status_is_sent_once_and_recorded(
    store: SQLiteStore, http_server: HttpServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATUS_PAGE_TOKEN", SECRET)
    server = await http_server(200, "{}")
    engine = engine_for(store, server.url)
    rb = rollback()
    await store.create(rb)
    for sent in (True, False):
        assert await announce(engine, rb, PageStatus.INVESTIGATING) == Announced(sent=sent)
        assert await announce(engine, rb, PageStatus.RESOLVED) == Announced(sent=sent)
    assert [r.json()["status"] for r in server.received] == ["investigating", "resolved"]
    events = [(e.kind, e.text) for e in await store.events(rb.id)]
    assert events == [
        (STATUS_EVENT, "Status page: investigating"),
        (STATUS_EVENT, "Status page: resolved"),
    ]


async def test_a_failing_status_page_is_reported_once(
    store: SQLiteStore, http_server: HttpServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATUS_PAGE_TOKEN", SECRET)
    server = await http_server(503, "down")
    engine = engine_for(store, server.url)
    rb = rollback()
    await store.create(rb)
    failed = await announce(engine, rb, PageStatus.RESOLVED)
    assert failed == Announced(failure="Status page: the service failed (HTTP 503)")
    assert await announce(engine, rb, PageStatus.RESOLVED) == Announced()
    assert server.requests == 3  # one status, its three attempts; never again
    (event,) = await store.events(rb.id)
    assert event.kind == STATUS_FAILED_EVENT and SECRET not in event.text
    audit = await store.audit_log(rb.id)
    assert all(SECRET not in str(a.details) for a in audit)


async def test_dry_runs_and_drills_never_reach_the_status_page(
    store: SQLiteStore, http_server: HttpServerFactory
) -> None:
    server = await http_server(200, "{}")
    engine = engine_for(store, server.url)
    for index, fields in enumerate([{"dry_run": True}, {"drill": True}]):
        rb = rollback(id=f"rb-0000000{index}", **fields)
        await store.create(rb)
        assert await announce(engine, rb, PageStatus.INVESTIGATING) == Announced()
    assert server.requests == 0


@pytest.mark.parametrize(
    ("notifications", "problem"),
    [
        ({"user_channel": "#users"}, "is not a channel id"),
        ({"status_page": {"url": "ftp://status"}}, "url must start with"),
        (
            {"status_page": {"url": "https://s.example", "secret_header": "X-Token"}},
            "give both secret_header and secret_env",
        ),
        (
            {
                "status_page": {
                    "url": "https://s.example",
                    "secret_header": "X Token",
                    "secret_env": "TOKEN",
                }
            },
            "is not a header name",
        ),
        ({"status_page": {"url": "https://s.example", "timeout_seconds": 0}}, "greater than 0"),
        ({"channel": "C1"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_notification_config_is_named(notifications: dict[str, Any], problem: str) -> None:
    data = backend_config("project", 8080) | {"notifications": notifications}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert any(p.startswith("notifications") and problem in p for p in caught.value.problems)


def test_missing_status_page_secret_is_named() -> None:
    data = backend_config("project", 8080) | {
        "notifications": {
            "user_channel": "C_USERS",
            "status_page": {
                "url": "https://status.example/hook",
                "secret_header": "Authorization",
                "secret_env": "STATUS_PAGE_TOKEN",
            },
        }
    }
    config = parse_config(data)
    assert missing_secrets(config, {}) == [
        "notifications.status_page.secret_env: environment variable STATUS_PAGE_TOKEN is not set"
    ]
    assert missing_secrets(config, {"STATUS_PAGE_TOKEN": "x"}) == []
