"""Ask an image registry, reading only, what a tag is: its digest and its image config.

Distribution API v2 (OCI distribution spec): `GET /v2/<name>/manifests/<tag>` with an
Accept of the OCI and Docker manifest and index types answers the manifest and its
digest (`Docker-Content-Digest`, else the sha256 of the body); an index (a multi-platform
list) names one manifest per platform, and a manifest names its config blob
(`GET /v2/<name>/blobs/<digest>`, which may redirect to storage), whose `config` holds
Env, ExposedPorts, Cmd and Entrypoint. A GET of a manifest counts as a pull on Docker Hub.

Authentication is what the registry asks for in its 401's `WWW-Authenticate`
(distribution's "Token Authentication Specification" and "OAuth2 Token Authentication"):
`Basic` takes the Docker config's user and password; `Bearer realm=…,service=…,scope=…`
wants a token from the realm: a GET with those credentials as Basic (or none, for public
images), or with an identity token a POST `grant_type=refresh_token`. Secrets never reach
a message.

Docker Hub (`docker.io`) is served by `registry-1.docker.io`, its one-word repositories
under `library/`. A registry on the loopback address is spoken to over plain HTTP, as the
engine allows by default for 127.0.0.0/8; any other over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import httpx

from providers.base import AuthRejected, NotFound, ProviderError
from providers.http import error_for, new_client, send
from providers.images import ImageRef
from providers.registry_auth import DOCKER_HUB, RegistryAuth, registry_of
from providers.retry import retrying

Json = dict[str, Any]

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class RemoteImage:
    """What a registry says a tag is."""

    digest: str
    # The image's Config (Env, ExposedPorts, Cmd, Entrypoint); None when it could not be read.
    config: Json | None


@dataclass(frozen=True)
class Platform:
    """The platform whose manifest to pick from an index."""

    os: str
    architecture: str


class RegistryRefused(AuthRejected):
    """The registry wants credentials the Docker config does not hold, or refused them."""


def registry_url(registry: str) -> str:
    """Return the base URL of a registry's API."""
    if registry == DOCKER_HUB:
        return "https://registry-1.docker.io"
    host = registry.rsplit(":", 1)[0].strip("[]") if registry.count(":") <= 1 else registry
    if host == "localhost" or _is_loopback(host):
        return f"http://{registry}"
    return f"https://{registry}"


def repository_path(repository: str) -> str:
    """Return the repository's name on its registry (`library/x` for Docker Hub's `x`)."""
    registry = registry_of(repository)
    name = repository.removeprefix(f"{registry}/") if registry != DOCKER_HUB else repository
    name = name.removeprefix(f"{DOCKER_HUB}/")
    return name if registry != DOCKER_HUB or "/" in name else f"library/{name}"


async def remote_image(
    ref: ImageRef, auth: RegistryAuth | None, platform: Platform, timeout_seconds: float
) -> RemoteImage:
    """Return a tag's digest and image config, changing nothing (reads retried)."""
    async with new_client(timeout_seconds) as client:
        session = _Session(client, ref, auth)
        manifest, digest = await session.manifest(ref.tag)
        config: Json | None = None
        try:
            config = await session.config(manifest, platform)
        except ProviderError:
            # The digest says the tag exists; the config only adds what changes.
            config = None
        return RemoteImage(digest, config)


class _Session:
    """Reads of one repository on one registry, with the authorization it asked for."""

    def __init__(self, client: httpx.AsyncClient, ref: ImageRef, auth: RegistryAuth | None):
        self._client = client
        self._ref = ref
        self._auth = auth
        self._registry = registry_of(ref.repository)
        self._base = registry_url(self._registry)
        self._name = repository_path(ref.repository)
        self._authorization: str | None = None

    async def manifest(self, reference: str) -> tuple[Json, str]:
        """Return a manifest (or index) and its digest."""
        what = f"reading the manifest of {self._ref.repository}:{reference}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = await self._get(f"/v2/{self._name}/manifests/{reference}", what, headers)
        body = response.content
        digest = response.headers.get("Docker-Content-Digest") or (
            "sha256:" + hashlib.sha256(body).hexdigest()
        )
        document: Json = response.json()
        return document, digest

    async def config(self, manifest: Json, platform: Platform) -> Json:
        """Return the image config a manifest names, picking the platform's from an index."""
        if "manifests" in manifest:
            entry = _pick(manifest["manifests"], platform)
            manifest, _ = await self.manifest(str(entry["digest"]))
        digest = str(manifest["config"]["digest"])
        what = f"reading the image config of {self._ref}"
        response = await self._get(f"/v2/{self._name}/blobs/{digest}", what, {})
        config: Json = response.json().get("config") or {}
        return config

    async def _get(self, path: str, what: str, headers: dict[str, str]) -> httpx.Response:
        """GET under retries; answer one 401 challenge with the credentials it asks for."""

        async def attempt() -> httpx.Response:
            response = await self._send(path, what, headers)
            if response.status_code == 401 and self._authorization is None:
                challenge = response.headers.get("WWW-Authenticate", "")
                self._authorization = await self._authorize(challenge)
                response = await self._send(path, what, headers)
            if response.status_code in (401, 403):
                raise self._refused()
            if response.status_code == 404:
                raise NotFound(f"{what}: not found")
            if not response.is_success:
                raise error_for(response, what, service=f"the registry {self._registry}")
            return response

        return await retrying(attempt, attempts=3, base_delay=0.2, timeouts=True)

    async def _send(self, path: str, what: str, headers: dict[str, str]) -> httpx.Response:
        if self._authorization is not None:
            headers = {**headers, "Authorization": self._authorization}
        return await send(
            self._client,
            "GET",
            self._base + path,
            what=what,
            headers=headers,
            follow_redirects=True,
        )

    async def _authorize(self, challenge: str) -> str:
        """Return the Authorization header the registry's challenge asks for."""
        scheme = challenge.split(" ", 1)[0].lower()
        params = dict(CHALLENGE_PARAM.findall(challenge))
        fields = self._auth.fields if self._auth is not None else {}
        user, password = fields.get("username"), fields.get("password")
        basic = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if user is not None and password is not None
            else None
        )
        if scheme == "basic":
            if basic is None:
                raise self._refused()
            return basic
        if scheme != "bearer" or "realm" not in params:
            raise self._refused()
        return "Bearer " + await self._token(params, basic, fields.get("identitytoken"))

    async def _token(self, params: dict[str, str], basic: str | None, refresh: str | None) -> str:
        """Get a pull token from the challenge's realm."""
        realm = params["realm"]
        scope = params.get("scope") or f"repository:{self._name}:pull"
        query = {"scope": scope, **({"service": params["service"]} if "service" in params else {})}
        what = f"asking {self._registry} for a pull token"
        if refresh is not None:
            form = {**query, "grant_type": "refresh_token", "refresh_token": refresh}
            response = await send(
                self._client, "POST", realm, what=what, data={**form, "client_id": "rollbot"}
            )
        else:
            headers = {"Authorization": basic} if basic is not None else {}
            response = await send(
                self._client, "GET", realm, what=what, params=query, headers=headers
            )
        if response.status_code in (401, 403):
            raise self._refused()
        if not response.is_success:
            raise error_for(response, what, service=f"the registry {self._registry}")
        answer = response.json()
        token = answer.get("token") or answer.get("access_token")
        if not token:
            raise RegistryRefused(f"{what}: the answer held no token")
        return str(token)

    def _refused(self) -> RegistryRefused:
        registry = self._registry
        if self._auth is None:
            return RegistryRefused(
                f"The registry {registry} wants credentials for {self._ref.repository}: "
                f"`docker login {registry}` as the bot's user, or set docker_config."
            )
        return RegistryRefused(
            f"The registry {registry} rejected the credentials from {self._auth.source}."
        )


def _pick(entries: list[Json], platform: Platform) -> Json:
    """Return the index entry of `platform`, else the first one."""
    for entry in entries:
        found = entry.get("platform") or {}
        if (found.get("os"), found.get("architecture")) == (platform.os, platform.architecture):
            return entry
    if not entries:
        raise NotFound("the image index lists no manifest")
    return entries[0]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
