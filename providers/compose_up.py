"""What a later `docker compose up -d` will do after a rollback, read from the compose files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from providers.compose_files import (
    ComposeFileUnreadable,
    ServiceImage,
    read_service_image,
    resolve_value,
)
from providers.compose_labels import ENVIRONMENT_FILE_LABEL, WORKING_DIR_LABEL, config_files
from providers.images import ImageRef


@dataclass(frozen=True)
class UpCheck:
    """What a later `docker compose up -d` runs, as far as the compose files tell."""

    # The file the service's image is read from, when it names one the bot could resolve.
    file: Path | None
    # True when that run keeps the target.
    keeps_target: bool
    text: str


def up_warning(
    *,
    service: str,
    configured_files: list[Path] | None,
    labels: Mapping[str, str],
    pin_env_file: Path | None,
    target: ImageRef,
    replaced: ImageRef,
) -> str:
    """Say which image the compose file names for the service and how to pin `target`."""
    return up_check(
        service=service,
        configured_files=configured_files,
        labels=labels,
        pin_env_file=pin_env_file,
        target=target,
        replaced=replaced,
    ).text


def up_check(
    *,
    service: str,
    configured_files: list[Path] | None,
    labels: Mapping[str, str],
    pin_env_file: Path | None,
    target: ImageRef,
    replaced: ImageRef,
    pinned: Mapping[str, str] | None = None,
) -> UpCheck:
    """Read the image the compose file names for the service; `pinned` overrides env files."""
    files = configured_files or [Path(f) for f in config_files(labels)]
    if not files:
        return UpCheck(
            None,
            False,
            f"Could not check the compose file: no `compose_files` setting and the containers "
            f"do not name theirs. Make sure it names {target} before the next "
            f"`docker compose up -d`, or that run brings {replaced} back.",
        )
    env_files = _env_files(labels, files, pin_env_file)
    try:
        image = read_service_image(files, service, env_files, pinned)
    except ComposeFileUnreadable as exc:
        return UpCheck(
            None,
            False,
            f"Could not check the compose file ({exc}). Make sure it names {target} before "
            f"the next `docker compose up -d`, or that run brings {replaced} back.",
        )
    if image is None:
        names = ", ".join(str(f) for f in files)
        return UpCheck(
            None,
            False,
            f"The compose file ({names}) names no image for `{service}` (it builds one?): "
            f"a later `docker compose up -d` runs what it builds, not {target}.",
        )
    keeps = image.resolved is not None and ImageRef.parse(image.resolved) == target
    return UpCheck(image.file, keeps, _image_warning(image, target, replaced))


def _image_warning(image: ServiceImage, target: ImageRef, replaced: ImageRef) -> str:
    written = f"`image: {image.written}`"
    if image.resolved is None:
        unset = ", ".join(image.unset)
        return (
            f"The compose file {image.file} names {written}, and {unset} is set in no env "
            f"file the bot reads: set {_variable_hint(image, target)} where "
            f"`docker compose up -d` runs, or that run may bring {replaced} back."
        )
    if ImageRef.parse(image.resolved) == target:
        return (
            f"The compose file {image.file} names {target}: a later `docker compose up -d` "
            "keeps it (it recreates the container once, on the same image, because the "
            f"config hash the container carries was taken for {replaced})."
        )
    how = f"pin `image: {target}`"
    if image.variables:
        how += f" (or set {_variable_hint(image, target)}, the variable it reads)"
    return (
        f"The compose file {image.file} still names {image.resolved}; {how} before the "
        f"next `docker compose up -d`, or that run brings {image.resolved} back."
    )


def _variable_hint(image: ServiceImage, target: ImageRef) -> str:
    """Return `VAR=value` that makes the file name `target`, when one variable decides it."""
    names = sorted(set(image.variables))
    if len(names) != 1:
        return " and ".join(f"{name}=…" for name in names)
    name = names[0]
    for value in (target.tag, str(target)):
        candidate = resolve_value(image.written, {name: value})
        if candidate is not None and ImageRef.parse(candidate) == target:
            return f"{name}={value}"
    return f"{name}=…"


def _env_files(labels: Mapping[str, str], files: list[Path], pin: Path | None) -> list[Path]:
    """Return the env files compose reads for the project: --env-file, else the project's .env."""
    named = [Path(f) for f in (labels.get(ENVIRONMENT_FILE_LABEL) or "").split(",") if f]
    if not named:
        folder = labels.get(WORKING_DIR_LABEL)
        named = [Path(folder) / ".env" if folder else files[0].parent / ".env"]
    return [*named, pin] if pin is not None and pin not in named else named
