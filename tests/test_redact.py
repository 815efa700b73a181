"""One redactor: URL credentials, token shapes and the secrets the config names."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from bot import logs, redact
from bot.config import RollbotConfig, parse_config
from bot.redact import REDACTED, Redactor

EXAMPLE = Path(__file__).resolve().parent.parent / "rollbot.example.yaml"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
FINE_GRAINED = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCD"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def example_config() -> RollbotConfig:
    """The example config, with a status page whose secret comes from a variable."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["notifications"] = {
        "status_page": {
            "url": "https://status.example.com/hook",
            "secret_header": "Authorization",
            "secret_env": "STATUS_PAGE_TOKEN",
        }
    }
    return parse_config(data)


CONFIG = example_config()


@pytest.fixture
def restore_default() -> Iterator[None]:
    """Put the process-wide redactor back as it was after a test installs another."""
    before = redact.current()
    yield
    redact.use(before)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw@cache:6379/0", "redis://[redacted]@cache:6379/0"),
        ("URL=redis://default:s3cret@cache:6379", "URL=redis://[redacted]@cache:6379"),
        ("postgresql://app:p@ss:w/rd@db/x failed", "postgresql://[redacted]@db/x failed"),
        ("postgresql://u:p@ss:w%2Frd@h/db", "postgresql://[redacted]@h/db"),
        ("amqp://user:p%40ss#1?@mq:5672/vhost", "amqp://[redacted]@mq:5672/vhost"),
        ("postgresql+asyncpg://me@corp.com:pw@db/x", "postgresql+asyncpg://[redacted]@db/x"),
        (
            "git push https://x-access-token:ghs_abc@github.com/acme/app.git",
            "git push https://[redacted]@github.com/acme/app.git",
        ),
        ("https://tok3n@github.com/acme", "https://[redacted]@github.com/acme"),
        (
            "two: redis://:a1@h1 and redis://:b2@h2/0 end",
            "two: redis://[redacted]@h1 and redis://[redacted]@h2/0 end",
        ),
        ("(see <redis://:pw@cache|the cache>)", "(see <redis://[redacted]@cache|the cache>)"),
        ("xoxb-1234-5678-abcdEFGH", REDACTED),
        ("token xoxp-1-2-3-abcdef0123 leaked", "token [redacted] leaked"),
        ("xoxa-2-abcdef123456 xoxr-abcdef123456", f"{REDACTED} {REDACTED}"),
        ("xoxs-abcdef123456", REDACTED),
        ("xoxe.xoxp-1-abcdef123456 xoxe-1-abcdef123456", f"{REDACTED} {REDACTED}"),
        ("app token xapp-1-A0123-456-abcdef", "app token [redacted]"),
        (f"GITHUB_TOKEN {GITHUB} set", "GITHUB_TOKEN [redacted] set"),
        (f"gho_{GITHUB[4:]} ghs_{GITHUB[4:]}", f"{REDACTED} {REDACTED}"),
        (f"ghu_{GITHUB[4:]} ghr_{GITHUB[4:]}", f"{REDACTED} {REDACTED}"),
        (f"pat {FINE_GRAINED}.", "pat [redacted]."),
        ("id AKIAIOSFODNN7EXAMPLE and ASIAY34FZKBOKMUTVV7A", "id [redacted] and [redacted]"),
        (f"aws_secret_access_key={AWS_SECRET}", "aws_secret_access_key=[redacted]"),
        (f"AWS_SECRET_ACCESS_KEY: {AWS_SECRET}", "AWS_SECRET_ACCESS_KEY: [redacted]"),
        (f'{{"aws_secret_access_key": "{AWS_SECRET}"}}', '{"aws_secret_access_key": "[redacted]"}'),
        ("Authorization: Bearer abc.def.ghi", "Authorization: [redacted]"),
        ("-H 'authorization: token abcdef' -v", "-H 'authorization: [redacted]' -v"),
        ("sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "sent Bearer [redacted]"),
        ("Basic dXNlcjpwYXNz", "Basic [redacted]"),
        ("GET /x?user=a&password=hunter2&y=1", "GET /x?user=a&password=[redacted]&y=1"),
        ("host=db pwd=s3cret port=5432", "host=db pwd=[redacted] port=5432"),
        ("PGPASSWORD=p@ss!w0rd psql", "PGPASSWORD=[redacted] psql"),
        ("Server=db;Password=p@ss;Database=x", "Server=db;Password=[redacted];Database=x"),
        ("password: hunter2", "password: [redacted]"),
    ],
)
def test_shapes_are_redacted_and_the_rest_stays_readable(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "mail ops@example.com about https://example.com/packages/@scope/name",
        "Basic troubleshooting: the bearer of bad news; Bearer tokens expire",
        "password reset, 3 tokens: none, secret_header Authorization",
        "backend runs rollbot-test/backend:v1.2.4 again (old container restored)",
        "redis://cache:6379/0 and https://status.example.com/hooks/rollbot?x=1",
        "AKIA is a prefix; xoxb- alone is not a token",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().redact(text) == text


def test_the_configs_secrets_are_redacted_wherever_they_appear() -> None:
    environ = {
        "DATABASE_URL": "postgresql://app:pa:ss@w0rd#1@db:5432/app",
        "REDIS_URL": "redis://:cache-pw-42@cache:6379/0",
        "VERCEL_TOKEN": "vercel_!t0k#en%20",
        "RAILWAY_TOKEN": "rw-2f1c-token",
        "GITHUB_TOKEN": "gh-plain-token-1",
        "STATUS_PAGE_TOKEN": "Bearer st!x#y%z&long",
        "SLACK_SIGNING_SECRET": "8f14e45fceea167a",
        "SLACK_APP_TOKEN": "short",
        "NOT_NAMED": "ordinary-value-1",
    }
    redactor = Redactor.from_config(CONFIG, environ)
    text = (
        "psql said pa:ss@w0rd#1 was wrong; cache-pw-42 too. vercel_!t0k#en%20, rw-2f1c-token "
        "and gh-plain-token-1 leaked; page got Bearer st!x#y%z&long; signed 8f14e45fceea167a. "
        "A short answer; ordinary-value-1."
    )
    assert redactor.redact(text) == (
        "psql said [redacted] was wrong; [redacted] too. [redacted], [redacted] "
        "and [redacted] leaked; page got [redacted]; signed [redacted]. "
        "A short answer; ordinary-value-1."
    )


def test_longer_secrets_win_and_encoded_passwords_are_found() -> None:
    redactor = Redactor(["abcdef", "abcdefgh", "postgresql://u:p%40ss%2Fword@db/x"])
    assert redactor.redact("abcdefgh abcdef") == "[redacted] [redacted]"
    assert redactor.redact("got p@ss/word and p%40ss%2Fword") == "got [redacted] and [redacted]"


def test_a_user_name_alone_is_no_secret() -> None:
    redactor = Redactor(["postgresql://postgres@db:5432/postgres"])
    assert redactor.redact("db:5432/postgres as postgres") == "db:5432/postgres as postgres"


def test_install_makes_the_config_aware_redactor_the_default(restore_default: None) -> None:
    environ = {"RAILWAY_TOKEN": "rw-secret-value", "SLACK_BOT_TOKEN": "not-a-slack-shape"}
    redact.install(CONFIG, environ)
    assert redact.redact("rw-secret-value, not-a-slack-shape") == "[redacted], [redacted]"


# Text from this alphabet cannot form any shape the redactor knows (no ':', '=', '@',
# '-', '_' or capitals), and secrets below always hold a character outside it.
PLAIN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789 .,;!?()'\"*~\n"))
PUNCTUATED = st.text(
    st.characters(codec="ascii", exclude_categories=["Cc"], exclude_characters="[] "),
    min_size=6,
    max_size=40,
).filter(lambda s: any(c in s for c in "@#%:/=&$") and "://" not in s)


@given(secret=PUNCTUATED, before=st.text(max_size=30), after=st.text(max_size=30))
def test_a_named_secret_never_survives(secret: str, before: str, after: str) -> None:
    # A secret inside the marker itself would be found in every redacted text.
    assume(secret not in REDACTED)
    redactor = Redactor.from_config(CONFIG, {"RAILWAY_TOKEN": secret})
    assert secret not in redactor.redact(before + secret + after + secret)


@given(
    password=st.text(
        st.characters(codec="ascii", exclude_categories=["Cc"], exclude_characters=" <>"),
        min_size=1,
    ),
    before=PLAIN,
    after=PLAIN,
)
def test_a_url_password_never_survives(password: str, before: str, after: str) -> None:
    text = f"{before} postgresql://app:{password}@db:5432/x {after}"
    assert Redactor().redact(text) == f"{before} postgresql://[redacted]@db:5432/x {after}"


@given(text=PLAIN, secret=PUNCTUATED)
def test_text_without_secrets_is_unchanged(text: str, secret: str) -> None:
    redactor = Redactor.from_config(CONFIG, {"DATABASE_URL": secret, "GITHUB_TOKEN": secret})
    assert redactor.redact(text) == text


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Give structlog and the root logger back as they were after a test configures them."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    for handler in [h for h in root.handlers if h not in before]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


def test_a_log_line_carries_no_secret_even_nested(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Configured here, not in a fixture: capsys gives each test phase its own stderr.
    logs.configure(fmt="json")
    log = structlog.get_logger("test")
    try:
        raise ConnectionError("cannot reach postgresql://app:s3cr3t!@db/x")
    except ConnectionError:
        log.exception(
            "connect failed",
            target={"url": "redis://:hunter2@cache:6379", "tried": ["Bearer eyJ0eXAi.x1.y2"]},
            token_seen=("xoxb-1-2-secretvalue",),
        )
    logging.getLogger("aiohttp.client").warning("retrying redis://:libpw@cache/0")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    written = json.dumps(lines)
    for secret in ("s3cr3t!", "hunter2", "eyJ0eXAi", "secretvalue", "libpw"):
        assert secret not in written
    first: dict[str, Any] = lines[0]
    assert first["target"] == {
        "url": "redis://[redacted]@cache:6379",
        "tried": ["Bearer [redacted]"],
    }
    assert "postgresql://[redacted]@db/x" in first["exception"]
    assert lines[1]["event"] == "retrying redis://[redacted]@cache/0"
