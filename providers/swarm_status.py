"""What a swarm service document says: its two specs as versions, its update, its tasks.

Swarm keeps one `PreviousSpec`; a version is named by the image tag of a spec. Images
may carry the digest Swarm pinned when the service was deployed (`repo:tag@sha256:…`).
`UpdateStatus.State` is one of updating, paused, completed, rollback_started,
rollback_paused, rollback_completed (absent before the first update).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from providers.images import ImageRef

Json = dict[str, Any]

PREVIOUS = "previous"
# A manual or automatic update or rollback Swarm is carrying out: a second one replaces it.
BUSY_STATES = frozenset({"updating", "rollback_started"})
FAILED_TASK_STATES = frozenset({"failed", "rejected", "orphaned"})


def image_of(spec: Json | None) -> str:
    """Return the image a spec runs, as Swarm keeps it (with its pinned digest, if any)."""
    return str(((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Image", ""))


def tag_of(image: str) -> str:
    """Return the tag of an image reference, without its digest."""
    return ImageRef.parse(image).tag if image else "unknown"


def without_digest(image: str) -> str:
    """Return `repo:tag` of a pinned `repo:tag@sha256:…`."""
    return image.split("@", 1)[0]


@dataclass(frozen=True)
class Specs:
    """The service's current and previous specs, named as versions."""

    service: Json

    @property
    def name(self) -> str:
        return str(self.service.get("Spec", {}).get("Name") or self.service.get("ID"))

    @property
    def index(self) -> int:
        """The `Version.Index` an update must send to prove nothing changed since."""
        return int(self.service.get("Version", {}).get("Index") or 0)

    @property
    def current(self) -> Json:
        return dict(self.service.get("Spec") or {})

    @property
    def previous(self) -> Json | None:
        previous = self.service.get("PreviousSpec")
        return dict(previous) if previous else None

    @property
    def current_name(self) -> str:
        return tag_of(image_of(self.current))

    @property
    def previous_name(self) -> str | None:
        """The previous spec's tag, or `previous` when it runs the same tag as now."""
        if self.previous is None:
            return None
        tag = tag_of(image_of(self.previous))
        return PREVIOUS if tag == self.current_name else tag

    def means_previous(self, target: str) -> bool:
        """Return True when a user's name for a version means the previous spec."""
        if self.previous is None:
            return False
        image = image_of(self.previous)
        return target in {PREVIOUS, self.previous_name, image, without_digest(image)}

    @property
    def update_state(self) -> str:
        return str((self.service.get("UpdateStatus") or {}).get("State") or "")

    @property
    def update_message(self) -> str:
        return str((self.service.get("UpdateStatus") or {}).get("Message") or "")

    def update_text(self) -> str:
        """Say how the last update stands, e.g. `rollback_paused (update paused due to …)`."""
        if not self.update_state:
            return "never updated"
        message = f" ({self.update_message})" if self.update_message else ""
        return f"{self.update_state}{message}"

    @property
    def replicas(self) -> int | None:
        """Desired replicas of a replicated service; None for a global one."""
        replicated = (self.current.get("Mode") or {}).get("Replicated")
        return None if replicated is None else int(replicated.get("Replicas") or 0)


@dataclass(frozen=True)
class Tasks:
    """The service's tasks, as far as one image is concerned."""

    tasks: list[Json]

    def desired_running(self) -> list[Json]:
        return [t for t in self.tasks if t.get("DesiredState") == "running"]

    def running_on(self, image: str) -> int:
        """Count the tasks that should run and do run `image`."""
        return sum(
            1
            for t in self.desired_running()
            if _task_image(t) == image and _task_state(t) == "running"
        )

    def failures(self, image: str, limit: int = 3) -> list[str]:
        """Say why the newest tasks on `image` failed, with Docker's own error."""
        lines = []
        for task in self.tasks:
            if _task_image(task) != image or _task_state(task) not in FAILED_TASK_STATES:
                continue
            status = task.get("Status") or {}
            err = status.get("Err") or status.get("Message") or "no error given"
            lines.append(f"task {str(task.get('ID'))[:12]} {_task_state(task)}: {err}")
            if len(lines) == limit:
                break
        return lines

    def states(self) -> str:
        """Count the tasks that should run by state, e.g. `1 running, 1 preparing`."""
        counts = Counter(_task_state(t) for t in self.desired_running())
        return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no task"


def state_text(specs: Specs, tasks: Tasks) -> str:
    """Say in one line what the service is set to and what its tasks run."""
    image = image_of(specs.current)
    wanted = specs.replicas
    of = f" of {wanted} desired" if wanted is not None else " (global)"
    return (
        f"swarm service `{specs.name}` is set to {image} (spec version {specs.index}): "
        f"{tasks.running_on(image)} task(s) running it{of} ({tasks.states()}); "
        f"last update: {specs.update_text()}"
    )


def _task_image(task: Json) -> str:
    return str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") or "")


def _task_state(task: Json) -> str:
    return str((task.get("Status") or {}).get("State") or "unknown")
