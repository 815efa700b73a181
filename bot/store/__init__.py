"""Stores: the engine's persistence, behind small role interfaces."""

from __future__ import annotations

from bot.store.base import Store, StoreUnavailable
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore


def open_store(url: str) -> Store:
    """Create the store named by a `ROLLBOT_STORE` URL (`sqlite:///PATH`, `postgresql://...`)."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ValueError(
        f"unsupported ROLLBOT_STORE {url.split(':', 1)[0]!r}: "
        "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    )


__all__ = ["Store", "StoreUnavailable", "open_store"]
