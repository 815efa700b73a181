"""Stores: the engine's persistence, behind one small interface."""

from __future__ import annotations

from bot.store.base import Store
from bot.store.sqlite import SQLiteStore


def open_store(url: str) -> Store:
    """Create the store named by a `ROLLBOT_STORE` URL (`sqlite:///path`)."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"))
    raise ValueError(f"unsupported ROLLBOT_STORE {url.split(':', 1)[0]!r}: use sqlite:///PATH")


__all__ = ["Store", "open_store"]
