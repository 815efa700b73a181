"""Registry credentials for a pull, read from the Docker config as the docker CLI reads them.

The Docker config is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`
(docs.docker.com "docker login": credential stores; docker/cli `cli/config/configfile`).
Per registry it holds, under `auths`, either `auth` (base64 of `user:password`), or
`username` and `password`, or an `identitytoken` (a refresh token the engine trades with
the registry). `credHelpers` names a helper per registry and `credsStore` one for all:
the program `docker-credential-<name>`, run with the argument `get`, reads the server
address on stdin and prints `{"ServerURL", "Username", "Secret"}`; a Username of
`<token>` makes Secret an identity token; "credentials not found" means none.

The engine takes the credentials of a pull as `X-Registry-Auth`: base64url of
`{"username", "password", "serveraddress"}` or `{"identitytoken", "serveraddress"}`
(Docker Engine API, "Authentication"). Secrets never reach a log or a message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.base import Refused

DOCKER_HUB = "docker.io"
# The key the docker CLI files Docker Hub's credentials under.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
TOKEN_USER = "<token>"  # noqa: S105 - the helpers' marker for a token, no secret
NOT_FOUND_OUTPUT = "credentials not found"


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry, and where they came from (never shown: the secret)."""

    registry: str
    source: str
    fields: dict[str, str] = field(repr=False)


def registry_of(repository: str) -> str:
    """Return the registry host of a repository, as the engine decides it (Docker Hub if none)."""
    first, slash, _ = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def docker_config_dir(configured: Path | None) -> Path:
    """Return the Docker config folder: the setting, else DOCKER_CONFIG, else ~/.docker."""
    if configured is not None:
        return configured
    from_env = os.environ.get("DOCKER_CONFIG")
    return Path(from_env) if from_env else Path.home() / ".docker"


async def credentials_for(
    repository: str, config_dir: Path, helper_seconds: float
) -> RegistryAuth | None:
    """Return the credentials the Docker config holds for the repository's registry, if any."""
    registry = registry_of(repository)
    path = config_dir / "config.json"
    config = _read_config(path)
    helper = (config.get("credHelpers") or {}).get(registry) or config.get("credsStore")
    if helper:
        found = await _from_helper(str(helper), registry, helper_seconds)
        if found is not None:
            return found
    entry = _auths_entry(config.get("auths") or {}, registry)
    if entry is None:
        return None
    fields = _entry_fields(entry, registry, path)
    return RegistryAuth(registry, f"{path}", fields) if fields else None


def server_key(registry: str) -> str:
    """Return the address helpers and `auths` file a registry under."""
    return DOCKER_HUB_KEY if registry == DOCKER_HUB else registry


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise Refused(f"Cannot read the Docker config {path}: {exc.strerror}.") from exc
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(
            f"The Docker config {path} is not valid JSON (line {exc.lineno}): fix it or "
            "log in again with `docker login`."
        ) from None
    return config if isinstance(config, dict) else {}


def credentials_in(config: dict[str, Any], registry: str, source: str) -> RegistryAuth | None:
    """Return a registry's credentials from a Docker config's `auths` (e.g. a pull secret)."""
    entry = _auths_entry(config.get("auths") or {}, registry)
    fields = _entry_fields(entry, registry, Path(source)) if entry is not None else {}
    return RegistryAuth(registry, source, fields) if fields else None


def _auths_entry(auths: dict[str, Any], registry: str) -> dict[str, Any] | None:
    """Find a registry's entry, whether filed as `host`, `https://host` or `https://host/v1/`."""
    wanted = {registry, server_key(registry)}
    for key, entry in auths.items():
        if key in wanted or _hostname(key) == registry:
            return entry if isinstance(entry, dict) else None
        if registry == DOCKER_HUB and _hostname(key) in ("index.docker.io", "registry-1.docker.io"):
            return entry if isinstance(entry, dict) else None
    return None


def _hostname(key: str) -> str:
    return key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]


def _entry_fields(entry: dict[str, Any], registry: str, path: Path) -> dict[str, str]:
    """Return the X-Registry-Auth fields of an `auths` entry."""
    address = server_key(registry)
    if entry.get("identitytoken"):
        return {"identitytoken": str(entry["identitytoken"]), "serveraddress": address}
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise Refused(
                f"The `auth` of {registry} in {path} is not base64 of user:password: "
                f"log in again with `docker login {registry}`."
            )
        return {"username": user, "password": password, "serveraddress": address}
    if entry.get("username") and entry.get("password"):
        user, password = str(entry["username"]), str(entry["password"])
        return {"username": user, "password": password, "serveraddress": address}
    return {}


async def _from_helper(helper: str, registry: str, seconds: float) -> RegistryAuth | None:
    """Ask `docker-credential-<helper> get` for a registry's credentials (a program, no shell)."""
    program = f"docker-credential-{helper}"
    try:
        process = await asyncio.create_subprocess_exec(
            program,
            "get",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise Refused(
            f"The Docker config names the credential helper `{helper}`, but `{program}` "
            f"cannot be run ({exc.strerror}): install it on the bot's host or remove it "
            "from the config."
        ) from exc
    try:
        async with asyncio.timeout(seconds):
            out, _ = await process.communicate(server_key(registry).encode())
    except TimeoutError:
        process.kill()
        await process.wait()
        raise Refused(
            f"The credential helper `{program}` gave no answer in time ({seconds:g} s) for "
            f"{registry}: is it waiting for an unlock prompt?"
        ) from None
    text = out.decode(errors="replace").strip()
    if process.returncode != 0:
        if NOT_FOUND_OUTPUT in text.lower():
            return None
        # Its output may hold a secret: say only that it failed and how.
        raise Refused(
            f"The credential helper `{program}` failed for {registry} "
            f"(exit code {process.returncode}): check it on the bot's host."
        )
    try:
        answer = json.loads(text)
        user, secret = str(answer["Username"]), str(answer["Secret"])
    except (json.JSONDecodeError, KeyError, TypeError):
        message = f"The credential helper `{program}` answered {registry} unreadably."
        raise Refused(message) from None
    address = server_key(registry)
    if user == TOKEN_USER:
        fields = {"identitytoken": secret, "serveraddress": address}
    else:
        fields = {"username": user, "password": secret, "serveraddress": address}
    return RegistryAuth(registry, f"credential helper {program}", fields)
