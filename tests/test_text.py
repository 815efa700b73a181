"""Foreign text is made inert before it is posted, and config limits hold."""

from __future__ import annotations

import pytest

from bot.config import parse_config
from bot.errors import ConfigError
from bot.render import render
from bot.text import escape
from tests.e2e_helpers import backend_config


def test_escape_keeps_user_mentions_and_defuses_the_rest() -> None:
    text = "db down <!channel> <!here> <@U0LEAD> <https://evil|click> a & b"
    assert escape(text) == (
        "db down &lt;!channel&gt; &lt;!here&gt; <@U0LEAD> &lt;https://evil|click&gt; a &amp; b"
    )


def test_templates_escape_values_from_outside() -> None:
    class Rb:
        id = "rb-00000001"
        service = "backend"
        environment = "production"
        target_version = "v1.2.3"
        target_state = "backend runs v1.2.4 again"
        error = "container said <!channel> panic"

    text = render("rollback_failed.md.j2", rb=Rb())
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_lock_ttl_must_outlive_a_rollback() -> None:
    config = backend_config("p", 1)
    config["runtime"] |= {"lock_ttl_seconds": 60, "rollback_timeout_seconds": 600}
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    assert caught.value.problems[0].startswith(
        "runtime: Value error, lock_ttl_seconds (60) must be at least 900"
    )
