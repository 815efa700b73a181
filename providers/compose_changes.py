"""What a container's config becomes on another image, and the differences people should see.

The engine builds a container's config from the create request and the image (moby
`daemon/commit.go` `merge`): image Env entries whose names the request does not set are
added; ExposedPorts are the union of both; with no Entrypoint in the request the image's
applies, and with neither Entrypoint nor Cmd the image's Cmd too. A rollback's copy
first drops what the old container took from the old image (`drop_image_defaults`), so the
target image's defaults apply. Only names are compared for the environment, never values.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Iterable

from providers.base import redact
from providers.compose_containers import Json, drop_image_defaults

COMMAND_LIMIT = 100
# A value this short is too likely to be a common word to blank out of a command line.
SECRET_MIN_LENGTH = 6


def config_on(container: Json, old_image: Json, target_image: Json) -> Json:
    """Return the Config a copy of `container` gets on the target image (its Config given)."""
    config = copy.deepcopy(container)
    drop_image_defaults(config, old_image)
    env = list(config.get("Env") or [])
    named = {_name(e) for e in env}
    env += [e for e in target_image.get("Env") or [] if _name(e) not in named]
    ports = {**(target_image.get("ExposedPorts") or {}), **(config.get("ExposedPorts") or {})}
    entrypoint, cmd = config.get("Entrypoint"), config.get("Cmd")
    if not entrypoint:
        if not cmd:
            cmd = target_image.get("Cmd")
        if entrypoint is None:
            entrypoint = target_image.get("Entrypoint")
    return {**config, "Env": env, "ExposedPorts": ports, "Entrypoint": entrypoint, "Cmd": cmd}


def config_changes(before: Json, after: Json) -> list[str]:
    """Say what differs between two container Configs: env names, exposed ports, command."""
    lines: list[str] = []
    old_names = {_name(e) for e in before.get("Env") or []}
    new_names = {_name(e) for e in after.get("Env") or []}
    added, removed = sorted(new_names - old_names), sorted(old_names - new_names)
    parts = [f"added: {', '.join(added)}"] if added else []
    parts += [f"removed: {', '.join(removed)}"] if removed else []
    if parts:
        lines.append(f"env names {'; '.join(parts)}")
    old_ports, new_ports = _ports(before), _ports(after)
    if old_ports != new_ports:
        lines.append(f"ports: {old_ports} -> {new_ports}")
    old_command, new_command = _command(before), _command(after)
    if old_command != new_command:
        values = [_value(e) for e in before.get("Env") or []]
        secrets = [v for v in values if len(v) >= SECRET_MIN_LENGTH]
        shown = [_cut(redact(c, *secrets)) for c in (old_command, new_command)]
        lines.append(f"command: {shown[0]} -> {shown[1]}")
    return lines


def _name(entry: str) -> str:
    return entry.split("=", 1)[0]


def _value(entry: str) -> str:
    return entry.partition("=")[2]


def _ports(config: Json) -> str:
    return ", ".join(sorted(config.get("ExposedPorts") or {})) or "none"


def _command(config: Json) -> str:
    words = [*_words(config.get("Entrypoint")), *_words(config.get("Cmd"))]
    return shlex.join(words) if words else "none"


def _words(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(w) for w in value] if isinstance(value, Iterable) else []


def _cut(text: str) -> str:
    return text if len(text) <= COMMAND_LIMIT else text[: COMMAND_LIMIT - 1] + "…"
