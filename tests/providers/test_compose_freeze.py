"""Freeze on Compose: the good image pinned in the override file `docker compose up` reads."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from providers.base import Refused
from providers.capabilities import Freeze
from tests.providers.test_compose_labels import ComposeProject, compose_project
from tests.support.docker import (
    ComposeContainerFactory,
    ComposeProviderFactory,
    unique_project,
)
from tests.support.progress import Recorder

__all__ = ["compose_project"]

GOOD = "rollbot-test/backend:v1.2.3"
TEAM_OVERRIDE = (
    b"# staging tweaks\r\n"
    b"services:\r\n"
    b"  worker:\r\n"
    b"    image: rollbot-test/worker:v9\r\n"
    b"  backend:\r\n"
    b"    environment:\r\n"
    b'      LOG_LEVEL: "debug"   # keep\r\n'
    b"    image: rollbot-test/backend:v1.2.4\r\n"
    b"    init: true"
)


async def test_after_freeze_compose_up_keeps_the_good_image_and_unfreeze_removes_the_file(
    compose_project: ComposeProject, make_compose_provider: ComposeProviderFactory
) -> None:
    override = compose_project.folder / "compose.rollbot.yaml"
    provider = make_compose_provider(compose_project.name, freeze_file=override)
    assert isinstance(provider, Freeze)
    await provider.rollback("v1.2.3", Recorder())

    record = await provider.freeze("v1.2.4", "v1.2.3")

    assert record.action == f"pinned `image: {GOOD}` for backend in {override}"
    text = override.read_text()
    assert "services:\n  backend:\n    image: rollbot-test/backend:v1.2.3\n" in text
    assert text.startswith("# rollbot: backend frozen on v1.2.3 after a rollback from v1.2.4")
    compose_project.run("-f", str(compose_project.file), "-f", str(override), "up", "-d")
    assert await compose_project.version() == "v1.2.3"
    [row] = compose_project.ps()
    assert (row["Image"], row["State"]) == (GOOD, "running")

    said = await provider.unfreeze(record)

    assert said == f"removed {override}, which the freeze had created"
    assert not override.exists()


async def test_freeze_edits_the_team_override_and_unfreeze_restores_it_byte_for_byte(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.3")
    override = tmp_path / "compose.override.yaml"
    override.write_bytes(TEAM_OVERRIDE)
    override.chmod(0o640)
    provider = make_compose_provider(container.project, freeze_file=override)

    record = await provider.freeze("v1.2.4", "v1.2.3")

    assert override.read_bytes() == TEAM_OVERRIDE.replace(b"backend:v1.2.4", b"backend:v1.2.3")
    assert "debug" not in str(record.saved)
    await provider.unfreeze(record)
    assert override.read_bytes() == TEAM_OVERRIDE
    assert override.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    "before",
    [
        b"services:\n  backend:\n    init: true\n",
        b"services:\n  worker:\n    image: w:1\n",
        b"# nothing yet\n",
    ],
    ids=["service-without-image", "other-service", "no-services"],
)
async def test_freeze_adds_the_image_where_the_override_has_none(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
    before: bytes,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.3")
    override = tmp_path / "compose.override.yaml"
    override.write_bytes(before)
    provider = make_compose_provider(container.project, freeze_file=override)

    record = await provider.freeze("v1.2.4", "v1.2.3")

    document = yaml.safe_load(override.read_text())
    assert document["services"]["backend"]["image"] == GOOD
    await provider.unfreeze(record)
    assert override.read_bytes() == before


async def test_a_second_freeze_with_the_same_bad_version_changes_nothing(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.3")
    override = tmp_path / "compose.rollbot.yaml"
    provider = make_compose_provider(container.project, freeze_file=override)
    first = await provider.freeze("v1.2.4", "v1.2.3")
    written = override.read_bytes()
    stamp = override.stat().st_mtime_ns

    second = await provider.freeze("v1.2.4", "v1.2.3")

    assert override.read_bytes() == written
    assert override.stat().st_mtime_ns == stamp
    assert second == first
    await provider.unfreeze(second)
    assert not override.exists()


async def test_unfreeze_refuses_when_the_file_changed_since_the_freeze(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.3")
    override = tmp_path / "compose.override.yaml"
    override.write_bytes(TEAM_OVERRIDE)
    provider = make_compose_provider(container.project, freeze_file=override)
    record = await provider.freeze("v1.2.4", "v1.2.3")
    edited = override.read_bytes().replace(b"worker:v9", b"worker:v10")
    override.write_bytes(edited)

    with pytest.raises(Refused) as refused:
        await provider.unfreeze(record)

    assert str(refused.value) == (
        f"{override} changed since the freeze; nothing was restored, so the change stays. "
        "Check the file and set backend's image by hand."
    )
    assert override.read_bytes() == edited


async def test_unfreeze_refuses_when_someone_removed_the_team_file(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.3")
    override = tmp_path / "compose.override.yaml"
    override.write_bytes(TEAM_OVERRIDE)
    provider = make_compose_provider(container.project, freeze_file=override)
    record = await provider.freeze("v1.2.4", "v1.2.3")
    override.unlink()

    with pytest.raises(Refused, match="was removed since the freeze; nothing was restored"):
        await provider.unfreeze(record)

    assert not override.exists()


@contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """Make a folder refuse new files even to root (`chattr +i`), as a read-only mount does."""
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        # The permission test needs it: fail loudly rather than skip and prove nothing.
        pytest.fail(f"chattr +i is not allowed here: {made.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


async def test_a_folder_the_bot_may_not_write_is_refused_naming_the_permission(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.3")
    folder = tmp_path / "deploy"
    folder.mkdir()
    override = folder / "compose.rollbot.yaml"
    provider = make_compose_provider(container.project, freeze_file=override)

    with immutable(folder), pytest.raises(Refused) as refused:
        await provider.freeze("v1.2.4", "v1.2.3")

    assert str(refused.value).startswith(
        f"Could not write {override}: the bot's user needs write permission on {folder} "
        "(the file is replaced through a temporary file there). Nothing was changed ("
    )
    assert list(folder.iterdir()) == []


async def test_freeze_pins_the_env_file_variable_and_keeps_its_other_lines_out_of_the_record(
    compose_container: ComposeContainerFactory,
    make_compose_provider: ComposeProviderFactory,
    tmp_path: Path,
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.3")
    env = tmp_path / ".env"
    before = b"DATABASE_URL=postgresql://app:hunter2@db/x\nexport BACKEND_TAG=v1.2.4\nDEBUG=0"
    env.write_bytes(before)
    provider = make_compose_provider(
        container.project, pin_env_file=env, pin_variable="BACKEND_TAG"
    )

    record = await provider.freeze("v1.2.4", "v1.2.3")

    assert env.read_bytes() == before.replace(b"=v1.2.4", b"=v1.2.3")
    assert record.action == f"pinned BACKEND_TAG=v1.2.3 for backend in {env}"
    assert "hunter2" not in f"{record.saved}{record.action}"
    said = await provider.unfreeze(record)
    assert said == f"restored {env} as it was before the freeze (export BACKEND_TAG=v1.2.4)"
    assert env.read_bytes() == before


async def test_without_a_file_to_pin_the_freeze_only_watches(
    compose_container: ComposeContainerFactory, make_compose_provider: ComposeProviderFactory
) -> None:
    container = await compose_container(unique_project(), "backend", "v1.2.3")
    provider = make_compose_provider(container.project)

    record = await provider.freeze("v1.2.4", "v1.2.3")

    assert record.action == (
        "watch only: no freeze_file or pin_env_file is configured, so nothing keeps a "
        "`docker compose up` from bringing v1.2.4 back"
    )
    assert record.saved == {}
    assert await provider.unfreeze(record) == "nothing to restore: the freeze only watched"
