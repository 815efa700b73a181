"""Backup files on disk, shared by every provider that keeps them: durable, strictly named.

A backup is written under a temporary name, flushed, then renamed, and the folder is
flushed too, so a crash leaves either the whole file under its final name or nothing.
Listings only see names of the provider's strict pattern: nothing else in the folder is
ever listed, restored or pruned.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from providers.base import Refused


def rename_durably(partial: Path, path: Path) -> int:
    """Give a flushed file its final name and flush the folder; return the file's size."""
    partial.rename(path)
    # The rename is durable only once the folder is flushed too.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path.stat().st_size


def named_files(folder: Path, pattern: re.Pattern[str]) -> list[tuple[Path, re.Match[str]]]:
    """Return the files of `folder` whose whole name matches `pattern`, with the match."""
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise Refused(f"Cannot read the backup folder {folder}: {exc.strerror}") from exc
    found = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is not None and entry.is_file():
            found.append((entry, match))
    return found
