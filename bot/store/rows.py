"""How a Rollback maps onto a store row: filtered columns, a JSON body, approvals beside it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from bot.models import Rollback

# Columns are the fields that are filtered, ordered or compare-and-set on; the rest of
# a Rollback lives in a JSON body so a new model field needs no migration.
COLUMNS = ("id", "service", "environment", "state", "created_at", "updated_at", "finished_at")
# approved_by is not stored on the row: the approvals table is its one source of truth.
DERIVED = frozenset({"approved_by"})
# How often claims of old Slack requests are deleted (they stop counting when old anyway).
PRUNE_EVERY = timedelta(minutes=10)
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(info.annotation)
    for name, info in Rollback.model_fields.items()
    if info.annotation is not None
}


def encode(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Validate Rollback fields and split them into column values, JSON values, approvers.

    Column values keep their Python type (datetimes stay datetimes); JSON values are in
    JSON mode, ready to be dumped.
    """
    columns: dict[str, Any] = {}
    data: dict[str, Any] = {}
    approvers: list[str] = []
    for name, raw in fields.items():
        adapter = _ADAPTERS.get(name)
        if adapter is None:
            raise ValueError(f"Rollback has no field {name!r}")
        value = adapter.validate_python(raw)
        if name in DERIVED:
            approvers = list(value)
        elif name in COLUMNS:
            columns[name] = value
        else:
            data[name] = adapter.dump_python(value, mode="json")
    return columns, data, approvers


def json_body(rollback: Rollback) -> dict[str, Any]:
    """Return the JSON body of a rollback: every field that is not a column or derived."""
    return rollback.model_dump(mode="json", exclude={*COLUMNS, *DERIVED})


def to_rollback(
    data: Mapping[str, Any], columns: Mapping[str, Any], approvers: list[str]
) -> Rollback:
    """Build a Rollback from its JSON body, its column values and its approvers."""
    return Rollback.model_validate(
        {**data, **{name: columns[name] for name in COLUMNS}, "approved_by": approvers}
    )


def aware(value: datetime) -> datetime:
    """Return `value` with a timezone; naive datetimes in this codebase mean UTC.

    They come from utcnow()-style code that lost its tz; reading them as UTC beats
    silently shifting them by the host's offset.
    """
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
