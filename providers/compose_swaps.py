"""Swapping one compose container for a new one, putting the old one back, tidying after a crash."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from providers.base import (
    NotFound,
    Progress,
    ProviderError,
    RollbackFailed,
    TimedOut,
    Transient,
    say,
)
from providers.compose_containers import (
    OLD_MARK,
    TEMP_NAME,
    Json,
    container_name,
    create_body,
    endpoints_of,
    is_running,
    old_name,
    raise_if_failed,
    status_text,
    temp_name,
)
from providers.compose_engine import ComposeEngine
from providers.compose_labels import recreated_labels
from providers.images import ImageRef

if TYPE_CHECKING:
    from providers.docker_compose import DockerComposeSettings

log = structlog.get_logger(__name__)

DEFAULT_STOP_TIMEOUT = 10
POLL_SECONDS = 0.25
LOG_TAIL_LINES = 5
SIGKILL_EXIT = 137


@dataclass
class Swap:
    """Where one container recreation stands, so a failure can be undone exactly."""

    name: str
    old_id: str
    new_id: str
    was_running: bool
    old_renamed: bool = False


def stop_timeout(settings: DockerComposeSettings, container: Json) -> int:
    """Return the stop timeout: configured, else the container's own, else Docker's 10 s."""
    if settings.stop_timeout_seconds is not None:
        return settings.stop_timeout_seconds
    own = container["Config"].get("StopTimeout")
    return int(own) if own is not None else DEFAULT_STOP_TIMEOUT


class ContainerSwaps:
    """Recreate a service's containers one at a time, and undo a swap that did not finish."""

    def __init__(
        self,
        engine: ComposeEngine,
        settings: DockerComposeSettings,
        state: Callable[[], Awaitable[str]],
    ) -> None:
        self._engine = engine
        self._settings = settings
        # Says what the service runs, for the message of a swap that failed.
        self._state = state

    async def replace(
        self,
        old: Json,
        target: ImageRef,
        target_image_id: str,
        progress: Progress,
        done: list[str],
    ) -> None:
        """Recreate one container on `target`, putting the old one back if the new one fails."""
        engine = self._engine
        name = container_name(old)
        old_ref = await engine.image_ref(old)
        old_image = await engine.find_image(old["Image"]) or {}
        body = create_body(old, old_image, str(target))
        body["Labels"] = recreated_labels(body.get("Labels") or {}, target_image_id)
        await self._remove_leftover(temp_name(old))
        client = engine.client()
        try:
            new = await engine.call(
                f"creating {temp_name(old)}",
                client.containers.create(body, name=temp_name(old)),
            )
        except (TimedOut, Transient) as exc:
            # The engine may have created it before the answer was lost: ask, then clean up.
            await self._remove_leftover_quietly(temp_name(old))
            state = await self._state()
            raise type(exc)(
                f"{exc.message} Nothing was swapped: {state}.", target_state=state
            ) from exc
        await say(progress, f"Created `{temp_name(old)}` from {target}.")
        swap = Swap(name=name, old_id=old["Id"], new_id=new.id, was_running=is_running(old))
        try:
            await self._connect_extra_networks(old, new.id)
            await self._stop_old(old, progress)
            await self._start_new(swap, old, target, progress)
        except ProviderError as exc:
            reason = exc.message.rstrip(".")
        except asyncio.CancelledError:
            # A deadline hit mid-swap: put the old container back before giving up.
            await self._put_back_quietly(swap, old)
            raise
        else:
            await self._remove_replaced(old, progress)
            return
        await self._restore_and_fail(swap, old, old_ref, target, reason, progress, done)

    async def reconcile(self) -> list[str]:
        """Finish or undo container swaps a crash cut short, so the service is not left down.

        A renamed old container whose successor runs under the service's name is the end
        of a finished swap: it is removed. Otherwise the successor never ran: it is removed
        and the old container gets its name back and runs again. A temporary container
        left before the old one was renamed is removed, and the old one started if stopped.
        """
        containers = await self._engine.labelled()
        by_name = {container_name(c): c for c in containers}
        notes: list[str] = []
        for old in [c for c in containers if OLD_MARK in container_name(c)]:
            name = container_name(old).split(OLD_MARK, 1)[0]
            temp = f"{old['Id'][:12]}_{name}"
            new = by_name.get(name) or by_name.get(temp)
            by_name.pop(temp, None)
            if new is not None and container_name(new) == name and is_running(new):
                await self._engine.remove(old["Id"])
                notes.append(f"`{name}` runs its new container; removed the old one left behind.")
                continue
            swap = Swap(name, old["Id"], new["Id"] if new else "", True, old_renamed=True)
            await self._put_back(swap, old)
            notes.append(f"Put the old `{name}` back: a swap was cut short before the new one ran.")
        for leftover_name, leftover in by_name.items():
            if not TEMP_NAME.match(leftover_name):
                continue
            await self._engine.remove(leftover["Id"])
            name = TEMP_NAME.sub("", leftover_name, count=1)
            service = by_name.get(name)
            if service is not None and not is_running(service):
                swap = Swap(name, service["Id"], "", True)
                await self._put_back(swap, service)
                notes.append(f"Started `{name}` again: a swap was cut short after stopping it.")
            else:
                notes.append(f"Removed `{leftover_name}`, left by a swap cut short.")
        return notes

    async def _connect_extra_networks(self, old: Json, new_id: str) -> None:
        """Attach the new container to every network of the old one beyond the first."""
        networks = self._engine.client().networks
        for network, endpoint in endpoints_of(old)[1:]:
            net = await self._engine.read(
                f"finding network {network}", functools.partial(networks.get, network)
            )
            await self._engine.call(
                f"connecting to network {network}",
                net.connect({"Container": new_id, "EndpointConfig": endpoint}),
            )

    async def _stop_old(self, old: Json, progress: Progress) -> None:
        """Stop the old container, saying whether it had to be killed."""
        name = container_name(old)
        if not is_running(old):
            await say(progress, f"`{name}` is not running ({status_text(old)}); nothing to stop.")
            return
        seconds = stop_timeout(self._settings, old)
        started = time.monotonic()
        handle = self._engine.client().containers.container(old["Id"])
        await self._engine.call(
            f"stopping {name}",
            handle.stop(t=seconds),
            deadline=seconds + self._settings.api_timeout_seconds,
        )
        state = (await self._engine.inspect(old["Id"]))["State"]
        if state.get("ExitCode") == SIGKILL_EXIT and _since(started) >= seconds:
            await say(
                progress,
                f"Stopped `{name}`, but it ignored SIGTERM: killed after {seconds} s "
                "(give it an init process or a shorter stop timeout).",
            )
        else:
            await say(progress, f"Stopped `{name}` in {_since(started):.1f} s.")

    async def _start_new(self, swap: Swap, old: Json, target: ImageRef, progress: Progress) -> None:
        """Give the new container the service's name, start it and wait until it is up."""
        engine = self._engine
        client = engine.client()
        new = client.containers.container(swap.new_id)
        # Rename while neither runs: the engine fails to rename a host-network container
        # that has just crashed ("sandbox ... not found").
        handle = client.containers.container(swap.old_id)
        await engine.call(f"renaming {swap.name}", handle.rename(old_name(old)))
        swap.old_renamed = True
        await engine.call(f"renaming the new {swap.name}", new.rename(swap.name))
        await engine.call(f"starting the new {swap.name}", new.start())
        await say(progress, f"Started `{swap.name}` on {target}; waiting for it to be up…")
        health = await self._wait_up(swap.new_id)
        await say(progress, f"`{swap.name}` is {health}.")

    async def _wait_up(self, container_id: str) -> str:
        """Wait until a new container runs (and is healthy); raise what went wrong if not."""
        settings = self._settings
        deadline = time.monotonic() + settings.healthy_timeout_seconds
        running_since: float | None = None
        while True:
            state = (await self._engine.inspect(container_id))["State"]
            raise_if_failed(state)
            health = (state.get("Health") or {}).get("Status")
            now = time.monotonic()
            if state.get("Running") and running_since is None:
                running_since = now
            if health == "healthy":
                return "running and healthy"
            settled = running_since is not None and now - running_since >= settings.settle_seconds
            if health is None and settled:
                return "running (the image has no HEALTHCHECK)"
            if now >= deadline:
                waited = f"{settings.healthy_timeout_seconds:g} s"
                raise TimedOut(f"it was not up within {waited} (health: {health or 'none'})")
            pause = POLL_SECONDS
            if health is None and running_since is not None:
                # Look again when the settle time ends, not up to a poll later: every
                # rollback of an image without a HEALTHCHECK waits here.
                pause = min(pause, running_since + settings.settle_seconds - now)
            await asyncio.sleep(pause)

    async def _restore_and_fail(
        self,
        swap: Swap,
        old: Json,
        old_ref: ImageRef,
        target: ImageRef,
        reason: str,
        progress: Progress,
        done: list[str],
    ) -> None:
        """Remove the failed new container, bring the old one back and raise RollbackFailed."""
        logs = await self._log_tail(swap.new_id)
        await say(progress, f"The new `{swap.name}` failed: {reason}. Restoring the old one…")
        message = f"{target} did not come up for `{swap.name}`: {reason}."
        if logs:
            message += "\nLast log lines:\n" + "\n".join(logs)
        try:
            await self._put_back(swap, old)
        except ProviderError as exc:
            state = await self._state()
            raise RollbackFailed(
                f"{message}\nRestoring the old container failed too: {exc.message}",
                target_state=f"{state} (old container `{old_name(old)}` NOT restored)",
            ) from exc
        again = "again" if swap.was_running else "again (stopped, as before)"
        state = f"{self._settings.service} runs {old_ref} {again} (old container restored)"
        if done:
            state += f"; already on {target}: {', '.join(done)}"
        await say(progress, f"Restored `{swap.name}` on {old_ref}.")
        raise RollbackFailed(message, target_state=state)

    async def _put_back(self, swap: Swap, old: Json) -> None:
        """Remove the new container and give the old one back its name and its run."""
        engine = self._engine
        client = engine.client()
        if swap.new_id:
            await engine.remove(swap.new_id)
        if swap.old_renamed:
            handle = client.containers.container(swap.old_id)
            await engine.call(f"renaming {old_name(old)} back", handle.rename(swap.name))
        if not swap.was_running:
            return
        await engine.call(
            f"starting the old {swap.name}", client.containers.container(swap.old_id).start()
        )
        deadline = time.monotonic() + self._settings.healthy_timeout_seconds
        while not (state := (await engine.inspect(swap.old_id))["State"]).get("Running"):
            if time.monotonic() >= deadline or state.get("Status") in ("exited", "dead"):
                raise RollbackFailed(f"the old `{swap.name}` did not run again ({state['Status']})")
            await asyncio.sleep(POLL_SECONDS)

    async def _put_back_quietly(self, swap: Swap, old: Json) -> None:
        """Restore the old container after a cancellation, logging rather than raising."""
        try:
            await self._put_back(swap, old)
        except ProviderError as exc:
            log.error("docker_compose.restore_failed", container=swap.name, error=exc.message)
        else:
            log.warning("docker_compose.restored_after_cancel", container=swap.name)

    async def _log_tail(self, container_id: str) -> list[str]:
        """Return the last few log lines of a container, or none when they cannot be read."""
        handle = self._engine.client().containers.container(container_id)
        try:
            lines = await self._engine.call(
                "reading the new container's logs",
                handle.log(stdout=True, stderr=True, tail=LOG_TAIL_LINES),
            )
        except ProviderError:
            return []
        return [line.rstrip("\n") for line in lines if line.strip()][-LOG_TAIL_LINES:]

    async def _remove_replaced(self, old: Json, progress: Progress) -> None:
        """Remove the replaced container; a failure leaves it stopped, which is said, not raised."""
        try:
            await self._engine.remove(old["Id"])
        except ProviderError as exc:
            await say(
                progress,
                f"Could not remove the old container `{old_name(old)}` ({exc.message}); it is "
                f"stopped and harmless: remove it with `docker rm {old_name(old)}`.",
            )
        else:
            await say(progress, f"Removed the old container `{old_name(old)}`.")

    async def _remove_leftover_quietly(self, name: str) -> None:
        """Remove a container a lost create may have left, logging when that fails too."""
        try:
            await self._remove_leftover(name)
        except ProviderError as exc:
            log.warning("docker_compose.leftover_not_removed", container=name, error=exc.message)

    async def _remove_leftover(self, name: str) -> None:
        """Remove a temporary container an interrupted recreation left under `name`."""
        try:
            await self._engine.remove(name)
        except NotFound:
            return
        log.warning("docker_compose.removed_leftover", container=name)


def _since(started: float) -> float:
    return time.monotonic() - started
