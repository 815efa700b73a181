"""The files a compose project reads: the service's `image:` in its compose files, its env files.

Compose interpolates `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
`${VAR?error}` and `$VAR` in the file, `$$` being a literal dollar; the values come from
the shell that runs compose, then the project's `.env` (or `--env-file`). The bot does
not see that shell, so it resolves variables from the env files only and says so when
one is set nowhere it can read.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)
ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


class ComposeFileUnreadable(Exception):
    """A compose or env file could not be read or parsed; the message says which and why."""


@dataclass(frozen=True)
class ServiceImage:
    """The `image:` a compose file gives a service, as written and as compose would read it."""

    file: Path
    written: str
    # None when a variable it reads is set in no env file the bot can read.
    resolved: str | None
    variables: tuple[str, ...]
    unset: tuple[str, ...]


def read_service_image(
    files: Iterable[Path],
    service: str,
    env_files: Iterable[Path],
    overrides: Mapping[str, str] | None = None,
) -> ServiceImage | None:
    """Return the service's image in the last compose file naming one (later files override).

    `overrides` are values set on top of the env files (a pin about to be written).
    """
    env = {**read_env_files(env_files), **(overrides or {})}
    found: ServiceImage | None = None
    for path in files:
        written = _image_in(path, service)
        if written is not None:
            found = _resolve(path, written, env)
    return found


def read_env_files(paths: Iterable[Path]) -> dict[str, str]:
    """Read `KEY=value` lines of env files (later files override); a missing file adds nothing."""
    env: dict[str, str] = {}
    for path in paths:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ComposeFileUnreadable(f"cannot read {path}: {exc.strerror}") from exc
        for line in text.splitlines():
            match = ENV_LINE.match(line)
            if match and not line.lstrip().startswith("#"):
                env[match.group(1)] = _unquote(match.group(2))
    return env


def write_pin(path: Path, variable: str, value: str) -> None:
    """Set `variable=value` in an env file, keeping other lines; replace the file atomically."""
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines()
    pattern = re.compile(rf"^(\s*(?:export\s+)?){re.escape(variable)}\s*=")
    replaced = False
    for index, line in enumerate(lines):
        match = pattern.match(line)
        if match:
            lines[index] = f"{match.group(1)}{variable}={value}"
            replaced = True
    if not replaced:
        lines.append(f"{variable}={value}")
    write_atomically(path, "\n".join(lines) + "\n")


def _image_in(path: Path, service: str) -> str | None:
    """Return the raw `image:` of `service` in one compose file, or None when it names none."""
    try:
        document: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ComposeFileUnreadable(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ComposeFileUnreadable(f"{path} is not valid YAML: {exc}") from exc
    services = document.get("services") if isinstance(document, dict) else None
    entry = services.get(service) if isinstance(services, dict) else None
    image = entry.get("image") if isinstance(entry, dict) else None
    return str(image) if image is not None else None


def _resolve(path: Path, written: str, env: Mapping[str, str]) -> ServiceImage:
    """Interpolate the variables of an `image:` value as compose does, from `env` alone."""
    variables: list[str] = []
    unset: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("plain") or match.group("braced")
        variables.append(name)
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        if op in (":-", ":?") and value == "":
            value = None
        if value is not None:
            return value
        if op in (":-", "-"):
            return arg
        unset.append(name)
        return ""

    resolved = VARIABLE.sub(substitute, written)
    return ServiceImage(
        file=path,
        written=written,
        resolved=None if unset else resolved,
        variables=tuple(variables),
        unset=tuple(unset),
    )


def resolve_value(written: str, env: Mapping[str, str]) -> str | None:
    """Interpolate a value with `env` alone; None when a variable it needs is unset."""
    return _resolve(Path(), written, env).resolved


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value.split(" #", 1)[0].rstrip()


def write_atomically(path: Path, text: str) -> None:
    """Write through a temp file in the same folder, so readers see the old or the new file."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
