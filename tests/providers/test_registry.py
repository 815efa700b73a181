"""The provider registry: one tuple of kinds, and what each can do asked of its class."""

from __future__ import annotations

import typing

from providers import BY_NAME, PROVIDERS, ProviderSettings, StepSettings, restorers
from providers.capabilities import ClearsState, Reconciles, RevertsCommits


def members(union: object) -> set[type]:
    """The settings classes of an Annotated discriminated union."""
    return set(typing.get_args(typing.get_args(union)[0]))


def test_the_settings_unions_list_exactly_the_registered_kinds() -> None:
    assert members(StepSettings) == {kind.settings for kind in PROVIDERS}
    assert members(ProviderSettings) == {kind.settings for kind in PROVIDERS if kind.versioned}
    for kind in PROVIDERS:
        assert kind.settings.model_fields["provider"].annotation == typing.Literal[kind.name]


def test_capabilities_are_read_from_the_classes_not_from_name_lists() -> None:
    assert {k.name for k in PROVIDERS if not k.versioned} == {"redis_state"}
    assert restorers("database") == {"postgres_migrations"}
    assert restorers("redis") == {"redis_state"}
    assert restorers("nothing") == frozenset()
    assert issubclass(BY_NAME["git"].factory, RevertsCommits)
    assert issubclass(BY_NAME["docker_compose"].factory, Reconciles)
    assert issubclass(BY_NAME["redis_state"].factory, ClearsState)
    assert not issubclass(BY_NAME["vercel"].factory, ClearsState)
