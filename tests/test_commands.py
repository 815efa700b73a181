"""The `/rollback` grammar: examples and properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import (
    USAGE,
    Cancel,
    Help,
    ListVersions,
    RequestRollback,
    Status,
    parse,
)
from bot.errors import UsageError
from bot.names import NAME_PATTERN, VERSION_PATTERN

names = st.from_regex(NAME_PATTERN, fullmatch=True).filter(
    lambda s: s not in {"list", "status", "cancel", "help"}
)
versions = st.from_regex(VERSION_PATTERN, fullmatch=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("backend v1.2.3", RequestRollback("backend", "v1.2.3")),
        ("backend", RequestRollback("backend")),
        ("backend v1.2.3 env=staging", RequestRollback("backend", "v1.2.3", "staging")),
        ("  backend   --dry-run  ", RequestRollback("backend", dry_run=True)),
        ("--dry-run env=prod backend 42", RequestRollback("backend", "42", "prod", True)),
        ("list backend", ListVersions("backend")),
        ("list backend env=staging", ListVersions("backend", "staging")),
        ("status", Status()),
        ("cancel rb-0a1b2c3d", Cancel("rb-0a1b2c3d")),
        ("", Help()),
        ("help", Help()),
    ],
)
def test_examples(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("backend v1.2.3;rm -rf /", "'v1.2.3;rm' is not a valid version"),
        ("backend $(reboot)", "is not a valid version"),
        ("backend v1.2.3 extra", "Too many arguments: 'extra'"),
        ("backend v1.2.3 --force", "Unknown option '--force'"),
        ("backend v1.2.3 region=eu", "Unknown option 'region=eu'"),
        ("Backend v1", "'Backend' is not a valid service"),
        ("backend v1 env=Prod!", "is not a valid environment"),
        ("backend v1 env=a env=b", "env= is given twice"),
        ("backend vé1", "is not a valid version"),
        ("backend " + "v" * 300, "is not a valid version"),
        ("backend " + "v " * 300, "characters long"),
        ("cancel 123", "is not a valid rollback id"),
        ("cancel", "cancel takes exactly one rollback id"),
        ("list", "list takes exactly one service"),
        ("status now", "status takes no arguments"),
        ("--dry-run", "Name the service"),
        ("list backend --dry-run", "--dry-run does not apply to list"),
    ],
)
def test_bad_input_says_what_is_wrong_and_shows_usage(text: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert says in caught.value.message
    assert USAGE in caught.value.message


def test_long_tokens_are_shortened_in_messages() -> None:
    with pytest.raises(UsageError) as caught:
        parse("backend " + "x;" * 100)
    first_line = caught.value.message.splitlines()[0]
    assert len(first_line) < 160


@given(service=names, version=st.none() | versions, env=st.none() | names, dry=st.booleans())
def test_round_trip(service: str, version: str | None, env: str | None, dry: bool) -> None:
    words = [service] + ([version] if version else [])
    words += [f"env={env}"] if env else []
    words += ["--dry-run"] if dry else []
    assert parse(" ".join(words)) == RequestRollback(service, version, env, dry)


@given(st.text(max_size=600))
def test_any_text_parses_or_raises_usage_error(text: str) -> None:
    try:
        command = parse(text)
    except UsageError as exc:
        assert "Usage:" in exc.message
        return
    if isinstance(command, RequestRollback):
        assert NAME_PATTERN.fullmatch(command.service)
        assert command.version is None or VERSION_PATTERN.fullmatch(command.version)
        assert command.environment is None or NAME_PATTERN.fullmatch(command.environment)


@given(st.text(alphabet=";|&$`'\"<>\\(){}*?! \n", min_size=1, max_size=20), names)
def test_shell_metacharacters_never_reach_a_version(junk: str, service: str) -> None:
    try:
        command = parse(f"{service} v1{junk}")
    except UsageError:
        return
    assert isinstance(command, RequestRollback)
    assert command.version is None or not set(command.version) & set(";|&$`'\"<>\\(){}*?! ")
