"""A registry that asks for Bearer tokens, as Docker Hub, GHCR and ECR do (reads only).

It reproduces, from the distribution project's "Token Authentication Specification" and
the OCI distribution spec:

- a manifest or blob request without a token is answered 401 with
  `WWW-Authenticate: Bearer realm="…/token",service="…",scope="repository:<name>:pull"`;
- the realm hands out a token (`{"token", "access_token"}`) for HTTP Basic credentials
  (GET), or for an identity token (POST `grant_type=refresh_token`, `refresh_token`),
  and answers 401 to wrong ones; the token is good for the scope asked only;
- `fail_manifests` answers that many manifest requests 503 first (a registry's bad minute);
- a tag resolves to an OCI image index listing one manifest per platform; the answer
  carries `Docker-Content-Digest`; a manifest names its config blob by digest;
- an unknown tag is 404 `MANIFEST_UNKNOWN`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

from aiohttp import web

from playground.world import free_port

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
SERVICE = "token-registry.test"


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


class TokenRegistry:
    """A local registry with token auth; `scopes` lists the scopes tokens were asked for."""

    def __init__(self, *, user: str, password: str, identity_token: str = "") -> None:
        self._user, self._password = user, password
        self._identity_token = identity_token
        self.fail_manifests = 0
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.scopes: list[str] = []
        self._tokens: dict[str, str] = {}
        self._blobs: dict[str, tuple[str, bytes]] = {}
        self._tags: dict[tuple[str, str], str] = {}
        self._runner: web.AppRunner | None = None

    def add(self, name: str, tag: str, config: dict[str, Any], *, architecture: str) -> None:
        """Publish `name:tag` as an index of an arm/v5 image and one for `architecture`."""
        entries = []
        for arch, image_config in (("arm", {"Env": ["WRONG_PLATFORM=1"]}), (architecture, config)):
            blob = json.dumps(
                {"architecture": arch, "os": "linux", "config": image_config}
            ).encode()
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": MANIFEST,
                    "config": {"mediaType": CONFIG, "digest": _digest(blob), "size": len(blob)},
                    "layers": [],
                }
            ).encode()
            self._blobs[_digest(blob)] = (CONFIG, blob)
            self._blobs[_digest(manifest)] = (MANIFEST, manifest)
            platform = {"os": "linux", "architecture": arch}
            entries.append(
                {
                    "mediaType": MANIFEST,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": platform,
                }
            )
        index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
        self._blobs[_digest(index)] = (INDEX, index)
        self._tags[(name, tag)] = _digest(index)

    def digest(self, name: str, tag: str) -> str:
        """Return the digest `name:tag` resolves to."""
        return self._tags[(name, tag)]

    async def __aenter__(self) -> TokenRegistry:
        app = web.Application()
        app.router.add_get("/token", self._token)
        app.router.add_post("/token", self._refresh)
        app.router.add_route("*", r"/v2/{name:.+}/manifests/{ref}", self._manifest)
        app.router.add_get(r"/v2/{name:.+}/blobs/{ref}", self._blob)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"details": "incorrect username or password"}, status=401)
        scope = request.query.get("scope", "")
        self.scopes.append(scope)
        token = secrets.token_hex(8)
        self._tokens[token] = scope
        return web.json_response({"token": token, "access_token": token})

    async def _refresh(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = (form.get("grant_type"), form.get("refresh_token"))
        if not self._identity_token or grant != ("refresh_token", self._identity_token):
            return web.json_response({"error": "invalid_grant"}, status=401)
        scope = str(form.get("scope", ""))
        self.scopes.append(scope)
        token = secrets.token_hex(8)
        self._tokens[token] = scope
        return web.json_response({"access_token": token})

    def _challenge(self, request: web.Request, name: str) -> web.Response | None:
        scope = f"repository:{name}:pull"
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self._tokens.get(token) == scope:
            return None
        realm = f"http://{self.address}/token"
        header = f'Bearer realm="{realm}",service="{SERVICE}",scope="{scope}"'
        body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        return web.json_response(body, status=401, headers={"WWW-Authenticate": header})

    async def _manifest(self, request: web.Request) -> web.Response:
        name, ref = request.match_info["name"], request.match_info["ref"]
        if self.fail_manifests:
            self.fail_manifests -= 1
            return web.json_response({"errors": [{"code": "UNAVAILABLE"}]}, status=503)
        refused = self._challenge(request, name)
        if refused is not None:
            return refused
        digest = ref if ref.startswith("sha256:") else self._tags.get((name, ref))
        if digest is None or digest not in self._blobs:
            body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
            return web.json_response(body, status=404)
        media_type, content = self._blobs[digest]
        headers = {"Docker-Content-Digest": digest, "Content-Type": media_type}
        return web.Response(body=b"" if request.method == "HEAD" else content, headers=headers)

    async def _blob(self, request: web.Request) -> web.Response:
        name, ref = request.match_info["name"], request.match_info["ref"]
        refused = self._challenge(request, name)
        if refused is not None:
            return refused
        if ref not in self._blobs:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        media_type, content = self._blobs[ref]
        return web.Response(body=content, headers={"Content-Type": media_type})
