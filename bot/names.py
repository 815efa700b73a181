"""Strict patterns for every identifier that comes from chat, checked before any provider."""

from __future__ import annotations

import re

# Service and environment names: what config keys may be.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# Versions: Docker's tag grammar (which also covers semver, git tags and revision
# numbers); no shell metacharacters, spaces or path separators can pass.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
# Rollback ids the bot hands out.
ROLLBACK_ID_PATTERN = re.compile(r"rb-[0-9a-f]{8}")
# Backup file names as providers write them (a timestamp, a label, a suffix): no path
# separators, no leading dot (hidden and partial files) or dash (an option), nothing a shell
# would read.
BACKUP_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# A commit named by its (abbreviated) hex sha.
COMMIT_PATTERN = re.compile(r"[0-9a-f]{7,40}")
