"""Before approval, what a compose rollback will run and whether it can: reads only.

Checks (names are stable; a break-glass approval names the one it overrides):

- `image-present`: the target tag is on the engine's host (PASS), or not, and the
  rollback pulls it (WARN);
- `image-pullable`: only for a tag not on the host: the registry has it, asked with the
  Docker config's credentials (PASS), or it has not, wants other credentials or cannot
  be asked (FAIL: then nothing says the target can run);
- `compose-file`: a later `docker compose up -d` keeps the target (PASS), or brings
  another tag back or cannot be checked (WARN).

An identity is the image's digest in its registry (RepoDigests) when it came from one,
else its local image ID, with the tag it came from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from providers.base import NotFound, ProviderError
from providers.capabilities import Identity, PreflightCheck, PreflightReport, Verdict
from providers.compose_changes import config_changes, config_on
from providers.compose_containers import Json, container_name
from providers.compose_engine import ComposeEngine
from providers.compose_up import up_check
from providers.images import ImageRef
from providers.registry_auth import credentials_for, docker_config_dir, registry_of
from providers.registry_manifests import Platform, RegistryRefused, RemoteImage, remote_image

if TYPE_CHECKING:
    from providers.docker_compose import DockerComposeSettings


class ComposePreflight:
    """The preflight of one compose service, through the target's engine client."""

    def __init__(
        self,
        engine: ComposeEngine,
        settings: DockerComposeSettings,
        require_pullable: Callable[[ImageRef], Awaitable[None]],
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._require_pullable = require_pullable

    async def identity_now(self) -> Identity:
        """Return what each container of the service runs, exactly."""
        containers = await self._engine.containers()
        found = [await self._running(c) for c in containers]
        if len({exact for _, exact in found}) == 1:
            return Identity(found[0][0].tag, found[0][1])
        tags = list(dict.fromkeys(ref.tag for ref, _ in found))
        exact = "; ".join(
            f"{container_name(c)}: {e}" for c, (_, e) in zip(containers, found, strict=True)
        )
        return Identity(", ".join(tags), exact)

    async def preflight(self, target: str) -> PreflightReport:
        """Check that `target` can run and say what changes; NotFound when it is unknown."""
        containers = await self._engine.containers()
        current_ref = await self._engine.image_ref(containers[0])
        target_ref = current_ref.with_tag(target)
        current = await self.identity_now()
        image = await self._engine.find_image(str(target_ref))
        checks: list[PreflightCheck] = []
        if image is not None:
            checks.append(
                PreflightCheck(
                    "image-present",
                    Verdict.PASS,
                    f"{target_ref} is on this host (image {_short(image['Id'])}).",
                )
            )
            identity = Identity(target, exact_identity(image, target_ref))
            target_config: Json | None = image.get("Config") or {}
        else:
            await self._require_pullable(target_ref)
            checks.append(
                PreflightCheck(
                    "image-present",
                    Verdict.WARN,
                    f"{target_ref} is not on this host: the rollback pulls it first.",
                )
            )
            pullable, remote = await self._pullable(target_ref, containers[0])
            checks.append(pullable)
            exact = f"{remote.digest} (from {target_ref})" if remote else None
            identity = Identity(target, exact or f"{target_ref} (digest unknown)")
            target_config = remote.config if remote else None
        checks.append(await self._compose_file(containers[0], target_ref, current_ref))
        changes = await self._changes(containers, target_config, target_ref)
        return PreflightReport(current=current, target=identity, checks=checks, changes=changes)

    async def _running(self, container: Json) -> tuple[ImageRef, str]:
        """Return the tag a container came from and the exact image it runs."""
        ref = await self._engine.image_ref(container)
        image = await self._engine.find_image(container["Image"]) or {"Id": container["Image"]}
        return ref, exact_identity(image, ref)

    async def _pullable(
        self, target: ImageRef, first: Json
    ) -> tuple[PreflightCheck, RemoteImage | None]:
        """Ask the target's registry for its manifest, with the Docker config's credentials."""
        registry = registry_of(target.repository)
        settings = self._settings
        try:
            auth = await credentials_for(
                target.repository,
                docker_config_dir(settings.docker_config),
                settings.api_timeout_seconds,
            )
            remote = await remote_image(
                target, auth, await self._platform(first), settings.api_timeout_seconds
            )
        except RegistryRefused as exc:
            return PreflightCheck("image-pullable", Verdict.FAIL, exc.message), None
        except ProviderError as exc:
            if isinstance(exc, NotFound):
                why = f"The registry {registry} has no {target} (manifest unknown)."
            else:
                why = f"Could not ask the registry {registry} for {target}: {exc.message}"
            return PreflightCheck("image-pullable", Verdict.FAIL, why), None
        why = f"The registry {registry} has {target} ({remote.digest[:19]}…)."
        return PreflightCheck("image-pullable", Verdict.PASS, why), remote

    async def _platform(self, container: Json) -> Platform:
        """Return the platform of the running image: the one a pull on this host picks."""
        image = await self._engine.find_image(container["Image"]) or {}
        return Platform(str(image.get("Os") or "linux"), str(image.get("Architecture") or "amd64"))

    async def _compose_file(
        self, first: Json, target: ImageRef, current: ImageRef
    ) -> PreflightCheck:
        """Say whether a later `docker compose up -d` keeps the target."""
        settings = self._settings
        variable, pin_file = settings.pin_variable, settings.pin_env_file
        pinned = {variable: target.tag} if variable is not None else None
        found = await asyncio.to_thread(
            up_check,
            service=settings.service,
            configured_files=settings.compose_files,
            labels=first["Config"].get("Labels") or {},
            pin_env_file=pin_file,
            target=target,
            replaced=current,
            pinned=pinned,
        )
        if not found.keeps_target:
            return PreflightCheck("compose-file", Verdict.WARN, found.text)
        if pinned is not None:
            why = (
                f"Once the rollback sets {variable}={target.tag} in {pin_file}, the compose "
                f"file {found.file} names {target}."
            )
        else:
            why = (
                f"The compose file {found.file} names {target}: a later "
                "`docker compose up -d` keeps it."
            )
        return PreflightCheck("compose-file", Verdict.PASS, why)

    async def _changes(
        self, containers: list[Json], target_config: Json | None, target: ImageRef
    ) -> list[str]:
        """Say what differs between each container's config and its copy's on the target."""
        if target_config is None:
            return [f"env, ports and command: unknown until {target} is pulled"]
        lines: list[str] = []
        for container in containers:
            old_image = await self._engine.find_image(container["Image"]) or {}
            before = container["Config"]
            after = config_on(before, old_image.get("Config") or {}, target_config)
            lines.extend(line for line in config_changes(before, after) if line not in lines)
        return lines


def exact_identity(image: Json, ref: ImageRef) -> str:
    """Return an image's registry digest for the repository (else its ID), with its tag."""
    for repo_digest in image.get("RepoDigests") or []:
        name, _, digest = str(repo_digest).partition("@")
        if ImageRef.parse(name).repository == ref.repository and digest:
            return f"{digest} (from {ref})"
    return f"{image['Id']} (from {ref})"


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
