"""Preflight of a `docker_swarm` target: the exact images, whether it can run, what changes.

Checks, by their stable names (a break-glass approval names the one it overrides):

- `swarm-manager`: the engine is a swarm manager (only a manager can update a service).
- `update-idle`: no update or rollback is in progress (fails: a rollback now would
  replace it); a paused one warns, since rolling back is the way out of it.
- `image-present`: the target image is on this node (pass), or not but its registry has
  it (warn: Swarm pulls it on each node first), or neither (fail, with the registry's
  reason). Other nodes of a bigger swarm are not checked.

An identity is the digest Swarm pinned in the spec (`repo:tag@sha256:…`), else the
image's registry digest or local ID on this node. Changes compare the current spec with
`PreviousSpec`, the one a rollback restores: image, env names (never values), published
ports, replicas, command and args, and the number of mounts.
"""

from __future__ import annotations

import shlex
from typing import Any

from providers.base import NotFound, ProviderError
from providers.capabilities import Identity, PreflightCheck
from providers.compose_preflight import exact_identity
from providers.images import ImageRef
from providers.preflight_lines import failed, one_line, passed, warned
from providers.registry_auth import credentials_for, docker_config_dir, registry_of
from providers.registry_manifests import Platform, RegistryRefused, remote_image
from providers.swarm_api import SwarmApi
from providers.swarm_status import BUSY_STATES, Json, Specs, image_of, tag_of, without_digest


def pinned_digest(image: str) -> str | None:
    """Return the digest Swarm pinned in an image reference, if any."""
    _, at, digest = image.partition("@")
    return digest if at and digest.startswith("sha256:") else None


async def identity(api: SwarmApi, image: str) -> Identity:
    """Name a spec's image by its tag and, exactly, by its digest (or local image ID)."""
    ref = without_digest(image)
    digest = pinned_digest(image)
    if digest is not None:
        return Identity(tag_of(image), f"{digest} (from {ref})")
    found = await api.find_image(ref)
    exact = exact_identity(found, ImageRef.parse(ref)) if found else f"{ref} (digest unknown)"
    return Identity(tag_of(image), exact)


def manager_check(info: Json) -> PreflightCheck:
    """Pass a swarm manager; fail a worker or an engine outside any swarm."""
    swarm = info.get("Swarm") or {}
    if swarm.get("ControlAvailable"):
        why = f"The engine is a manager of the swarm (node {swarm.get('NodeID')})."
        return passed("swarm-manager", why)
    state = swarm.get("LocalNodeState") or "inactive"
    why = (
        f"The engine is not a swarm manager (node state: {state}): only a manager can update "
        "a service; point docker_host at a manager."
    )
    return failed("swarm-manager", why)


def idle_check(specs: Specs) -> PreflightCheck:
    """Fail while Swarm carries out an update or rollback; warn when one is paused."""
    state = specs.update_state
    if state in BUSY_STATES:
        why = (
            f"Swarm is carrying out an update of `{specs.name}` ({specs.update_text()}): "
            "a rollback now would replace it; wait until it ends."
        )
        return failed("update-idle", one_line(why))
    if state.endswith("paused"):
        why = (
            f"The last update of `{specs.name}` is {specs.update_text()}; the rollback replaces it."
        )
        return warned("update-idle", one_line(why))
    return passed("update-idle", f"No update in progress (last update: {specs.update_text()}).")


async def image_check(api: SwarmApi, image: str, timeout_seconds: float) -> PreflightCheck:
    """Say whether the target image is on this node, or its registry has it."""
    ref = without_digest(image)
    found = await api.find_image(ref)
    if found is not None:
        short = str(found.get("Id", "")).removeprefix("sha256:")[:12]
        return passed("image-present", f"{ref} is on this node (image {short}).")
    target = ImageRef.parse(ref)
    registry = registry_of(target.repository)
    try:
        auth = await credentials_for(target.repository, docker_config_dir(None), timeout_seconds)
        remote = await remote_image(target, auth, Platform("linux", "amd64"), timeout_seconds)
    except RegistryRefused as exc:
        return failed("image-present", f"{ref} is not on this node and {exc.message}")
    except NotFound:
        why = f"{ref} is not on this node, and the registry {registry} has no such tag."
        return failed("image-present", why)
    except ProviderError as exc:
        why = f"{ref} is not on this node, and the registry {registry} could not be asked: "
        return failed("image-present", one_line(why + exc.message))
    why = (
        f"{ref} is not on this node; the registry {registry} has it ({remote.digest[:19]}…): "
        "Swarm pulls it first."
    )
    return warned("image-present", why)


def changes(current: Json, target: Json) -> list[str]:
    """Say what differs between the current spec and the one a rollback restores."""
    lines = []
    if image_of(current) != image_of(target):
        lines.append(f"image: {image_of(current)} -> {image_of(target)}")
    had, has = _env_names(current), _env_names(target)
    parts = [
        f"{word}: {', '.join(sorted(names))}"
        for word, names in (("added", has - had), ("removed", had - has))
        if names
    ]
    if parts:
        lines.append(f"env names {'; '.join(parts)}")
    for label, read in (
        ("published ports", _ports),
        ("replicas", _replicas),
        ("command", lambda s: _argv(_container(s).get("Command"))),
        ("args", lambda s: _argv(_container(s).get("Args"))),
        ("mounts", lambda s: str(len(_container(s).get("Mounts") or []))),
    ):
        before, after = read(current), read(target)
        if before != after:
            lines.append(f"{label}: {before} -> {after}")
    if len(lines) <= 1:
        lines.append("env names, ports, replicas, command and mounts: the same")
    return lines


def _container(spec: Json) -> Json:
    return dict((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {})


def _env_names(spec: Json) -> set[str]:
    """Names of the variables a spec sets (the values are never read)."""
    return {str(e).split("=", 1)[0] for e in _container(spec).get("Env") or []}


def _ports(spec: Json) -> str:
    ports = []
    for port in (spec.get("EndpointSpec") or {}).get("Ports") or []:
        published = port.get("PublishedPort")
        target = port.get("TargetPort")
        mapping = f"{published}:{target}" if published else str(target)
        ports.append(f"{mapping}/{port.get('Protocol') or 'tcp'}")
    return ", ".join(ports) or "none"


def _replicas(spec: Json) -> str:
    mode: dict[str, Any] = spec.get("Mode") or {}
    if "Global" in mode:
        return "global"
    return str((mode.get("Replicated") or {}).get("Replicas", 1))


def _argv(argv: list[str] | None) -> str:
    return shlex.join(argv) if argv else "the image's default"
