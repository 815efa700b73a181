"""The Kubernetes API for the kubernetes provider: one client, raw JSON, errors translated.

The client comes from a kubeconfig file (and context) or, without one, from the pod's
service account (in-cluster). Objects are read and written as the API's own JSON, not
the generated models, so a patch is built from exactly what the server holds. Reads
are retried on transient failures (a 429 with its Retry-After, a 5xx, an unanswered
request); a write never is.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import aiohttp

from providers.base import (
    AuthRejected,
    Conflicting,
    NotFound,
    ProviderError,
    RateLimited,
    Refused,
    TimedOut,
    Transient,
)
from providers.retry import retrying

if TYPE_CHECKING:
    from kubernetes_asyncio import client

Json = dict[str, Any]
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def _kubernetes() -> tuple[ModuleType, ModuleType]:
    """kubernetes_asyncio's client and config modules, imported on first use.

    Its client package loads every API and model, about 60 MiB: only a rollbot with a
    Kubernetes target (or Argo CD) pays for it, and only once it talks to a cluster.
    """
    from kubernetes_asyncio import client, config

    return client, config


class KubeApi:
    """One API client for a kubeconfig context or the in-cluster service account."""

    def __init__(
        self, kubeconfig: Path | None, context: str | None, timeout_seconds: float
    ) -> None:
        self._kubeconfig = kubeconfig
        self._context = context
        self._timeout = timeout_seconds
        self._client: client.ApiClient | None = None
        self._creating = asyncio.Lock()

    async def api(self) -> client.ApiClient:
        """Return the client, made on first use."""
        async with self._creating:
            if self._client is None:
                self._client = await self._new_client()
            return self._client

    async def apps(self) -> client.AppsV1Api:
        """The apps/v1 API: Deployments, StatefulSets, DaemonSets and their revisions."""
        api = await self.api()
        return _kubernetes()[0].AppsV1Api(api)

    async def core(self) -> client.CoreV1Api:
        """The core/v1 API: pods and events."""
        api = await self.api()
        return _kubernetes()[0].CoreV1Api(api)

    async def custom(self) -> client.CustomObjectsApi:
        """Custom resources (Argo CD Applications)."""
        api = await self.api()
        return _kubernetes()[0].CustomObjectsApi(api)

    async def autoscaling(self) -> client.AutoscalingV2Api:
        """autoscaling/v2: the HorizontalPodAutoscalers that may scale a workload."""
        api = await self.api()
        return _kubernetes()[0].AutoscalingV2Api(api)

    async def read(
        self, what: str, call: Callable[..., Awaitable[Any]], *args: Any, **kw: Any
    ) -> Json:
        """Run a read, retrying transient failures and unanswered requests."""
        return await retrying(lambda: self.call(what, call, *args, **kw), timeouts=True)

    async def call(
        self, what: str, call: Callable[..., Awaitable[Any]], *args: Any, **kw: Any
    ) -> Json:
        """Run one API call and return its JSON body, translating every failure."""
        from kubernetes_asyncio.client.rest import ApiException  # loaded with the client

        try:
            async with asyncio.timeout(self._timeout + 5):
                response = await call(
                    *args, _preload_content=False, _request_timeout=self._timeout, **kw
                )
                body = await response.read()
        except ApiException as exc:
            raise translate(int(exc.status or 0), exc.body, exc.headers, what) from exc
        except TimeoutError as exc:
            raise TimedOut(f"{what}: the Kubernetes API did not answer in time.") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise Transient(
                f"{what}: cannot reach the Kubernetes API ({type(exc).__name__})."
            ) from exc
        # Unread (not preloaded), an error answer is not raised: it is only a status.
        if response.status >= 400:
            raise translate(response.status, body, response.headers, what)
        try:
            answer: Json = json.loads(body) if body else {}
        except ValueError as exc:
            raise Transient(f"{what}: the answer was not JSON (a proxy in between?).") from exc
        return answer

    async def aclose(self) -> None:
        """Close the client's connections."""
        api, self._client = self._client, None
        if api is not None:
            await api.close()

    async def _new_client(self) -> client.ApiClient:
        client, config = _kubernetes()
        try:
            if self._kubeconfig is not None:
                return await config.new_client_from_config(
                    config_file=str(self._kubeconfig), context=self._context, persist_config=False
                )
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                return client.ApiClient(configuration)
            return await config.new_client_from_config(context=self._context, persist_config=False)
        except (config.ConfigException, OSError, KeyError, ValueError) as exc:
            where = self._kubeconfig or "the default kubeconfig"
            raise Refused(
                f"Cannot set up the Kubernetes client from {where}"
                f"{f' (context {self._context})' if self._context else ''}: {exc}"
            ) from exc


def translate(status: int, body: Any, headers: Any, what: str) -> ProviderError:
    """Map an API error onto the provider error tree, with the server's own message."""
    message = _status_message(status, body)
    if status == 401:
        return AuthRejected(f"{what}: the Kubernetes API rejected the credentials ({message}).")
    if status == 403:
        return AuthRejected(
            f"{what}: Kubernetes refused: {message} (the account lacks an RBAC permission; "
            "see the Role in deploy/kubernetes-rbac.yaml)."
        )
    if status == 404:
        return NotFound(f"{what}: not found ({message}).")
    if status == 409:
        return Conflicting(f"{what}: {message}.")
    if status == 429:
        retry_after = (headers or {}).get("Retry-After")
        return RateLimited(
            f"{what}: rate limited by the Kubernetes API ({message}).",
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    if status >= 500:
        return Transient(f"{what}: the Kubernetes API failed (HTTP {status}: {message}).")
    return Refused(f"{what}: Kubernetes refused the request (HTTP {status}: {message}).")


def _status_message(status: int, raw: Any) -> str:
    """The Status object's message; a proxy's HTML page is named by its status only."""
    try:
        body = json.loads(raw or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"]).rstrip(".")[:300]
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "?"
    return f"{phrase}; the answer was not a Kubernetes Status (a proxy in between?)"
