"""A compose service's containers as the engine shows them, and the copy made to replace one."""

from __future__ import annotations

import re
from typing import Any

from providers.base import RollbackFailed
from providers.compose_labels import NUMBER_LABEL, ONEOFF_LABEL

Json = dict[str, Any]

OLD_MARK = "_rollbot_old_"
# `<old id[:12]>_<name>`: a new container before it takes the service's name (compose's too).
TEMP_NAME = re.compile(r"^[0-9a-f]{12}_")
# The engine copies these from the image into a container's Config when the user left them
# unset; a copy that still equals the old image's value must go so the new image's applies.
IMAGE_DEFAULT_KEYS = ("WorkingDir", "User", "Healthcheck", "StopSignal", "OnBuild")
IMAGE_DEFAULT_SETS = ("ExposedPorts", "Volumes")


def create_body(old: Json, old_image: Json, target: str) -> Json:
    """Build the create request of a container like `old` but on the `target` image."""
    image_config = old_image.get("Config") or {}
    config = {k: v for k, v in old["Config"].items() if k not in ("Hostname", "Image")}
    drop_image_defaults(config, image_config)
    endpoints = endpoints_of(old)
    body: Json = {**config, "Image": target, "HostConfig": host_config(old)}
    if endpoints:
        network, endpoint = endpoints[0]
        body["NetworkingConfig"] = {"EndpointsConfig": {network: endpoint}}
    return body


def drop_image_defaults(config: Json, image: Json) -> None:
    """Drop values the engine copied from the old image, so the new image's defaults apply."""
    entrypoint_is_default = config.get("Entrypoint") == image.get("Entrypoint")
    # The engine only fills Cmd from the image when the user set no Entrypoint.
    if entrypoint_is_default:
        config.pop("Entrypoint", None)
        if config.get("Cmd") == image.get("Cmd"):
            config.pop("Cmd", None)
    for key in IMAGE_DEFAULT_KEYS:
        if key in config and config[key] == image.get(key):
            config.pop(key)
    for key in IMAGE_DEFAULT_SETS:
        inherited = image.get(key) or {}
        kept = {k: v for k, v in (config.get(key) or {}).items() if k not in inherited}
        config[key] = kept or None
    image_env = set(image.get("Env") or [])
    config["Env"] = [e for e in config.get("Env") or [] if e not in image_env]
    image_labels = image.get("Labels") or {}
    labels = config.get("Labels") or {}
    config["Labels"] = {k: v for k, v in labels.items() if image_labels.get(k) != v}


def host_config(old: Json) -> Json:
    """Return the old HostConfig, with its anonymous volumes bound so their data stays."""
    host = dict(old["HostConfig"])
    declared = {bind_target(b) for b in host.get("Binds") or []}
    declared |= {m.get("Target") for m in host.get("Mounts") or []}
    anonymous = [
        f"{m['Name']}:{m['Destination']}{'' if m.get('RW', True) else ':ro'}"
        for m in old.get("Mounts") or []
        if m.get("Type") == "volume" and m.get("Destination") not in declared
    ]
    if anonymous:
        host["Binds"] = [*(host.get("Binds") or []), *anonymous]
    return host


def bind_target(bind: str) -> str:
    """Return the container path of a `source:target[:options]` bind."""
    parts = bind.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def endpoints_of(old: Json) -> list[tuple[str, Json]]:
    """Return the old container's networks and the endpoint settings worth keeping, main first."""
    networks = (old.get("NetworkSettings") or {}).get("Networks") or {}
    mode = old["HostConfig"].get("NetworkMode")
    short_id = old["Id"][:12]
    endpoints = []
    for network, endpoint in networks.items():
        # The engine adds the container's short id as an alias; the new one gets its own.
        aliases = [a for a in endpoint.get("Aliases") or [] if a != short_id]
        kept: Json = {"Aliases": aliases or None}
        for key in ("IPAMConfig", "Links", "DriverOpts"):
            if endpoint.get(key):
                kept[key] = endpoint[key]
        endpoints.append((network, kept))
    return sorted(endpoints, key=lambda item: item[0] != mode)


def raise_if_failed(state: Json) -> None:
    """Raise when a new container exited, restarted or reports unhealthy."""
    if state.get("Status") in ("exited", "dead", "restarting"):
        raise RollbackFailed(f"it {exit_text(state)}")
    if int(state.get("RestartCount") or 0) > 0:
        raise RollbackFailed(f"it crashed and was restarted ({exit_text(state)})")
    health = state.get("Health") or {}
    if health.get("Status") == "unhealthy":
        checks = health.get("Log") or [{}]
        output = str(checks[-1].get("Output") or "").strip()
        detail = f": {output[:200]}" if output else ""
        raise RollbackFailed(f"it runs but its HEALTHCHECK reports unhealthy{detail}")


def exit_text(state: Json) -> str:
    code = state.get("ExitCode")
    error = state.get("Error")
    text = f"exited with code {code}" if code is not None else str(state.get("Status"))
    return f"{text} ({error})" if error else text


def is_service_container(container: Json) -> bool:
    """Leave out one-off containers and a rollback's leftovers."""
    labels = container["Config"].get("Labels") or {}
    name = container_name(container)
    leftover = OLD_MARK in name or TEMP_NAME.match(name) is not None
    return labels.get(ONEOFF_LABEL, "False") != "True" and not leftover


def container_order(container: Json) -> tuple[int, str]:
    labels = container["Config"].get("Labels") or {}
    number = str(labels.get(NUMBER_LABEL, "0"))
    return (int(number) if number.isdigit() else 0, container_name(container))


def container_name(container: Json) -> str:
    return str(container["Name"]).lstrip("/")


def temp_name(container: Json) -> str:
    return f"{container['Id'][:12]}_{container_name(container)}"


def old_name(container: Json) -> str:
    return f"{container_name(container)}{OLD_MARK}{container['Id'][:12]}"


def is_running(container: Json) -> bool:
    return bool(container["State"].get("Running"))


def status_text(container: Json) -> str:
    state = container["State"]
    status = str(state.get("Status"))
    health = (state.get("Health") or {}).get("Status")
    if status == "exited":
        status = f"exited ({state.get('ExitCode')})"
    return f"{status}, {health}" if health else status
