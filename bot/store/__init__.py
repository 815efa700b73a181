"""Stores: the engine's persistence, behind small role interfaces."""

from __future__ import annotations

from bot.errors import ConfigError
from bot.store.base import Store, StoreUnavailable
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore


def open_store(url: str) -> Store:
    """Create the store named by a `ROLLBOT_STORE` URL (`sqlite:///PATH`, `postgresql://...`).

    A URL that names no store, or has options it does not know, is a ConfigError that
    says which (never the URL itself: it may hold a password).
    """
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            return PostgresStore(url)
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None
    raise ConfigError(
        [
            f"ROLLBOT_STORE names an unsupported store ({url.split(':', 1)[0]!r}): use "
            "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ]
    )


__all__ = ["Store", "StoreUnavailable", "open_store"]
