"""Railway's public GraphQL API as the railway provider calls it: one request, its errors.

What Railway documents, and this module relies on:

- One endpoint, ``POST https://backboard.railway.com/graphql/v2``. Account and workspace
  tokens go in ``Authorization: Bearer``, project tokens (scoped to one environment of one
  project) in ``Project-Access-Token``.
- Errors come back as HTTP 200 with ``errors: [{message, ...}]`` ("Not Authorized" for a
  token that may not see the resource); rate limits as HTTP 429 with Retry-After and
  ``X-RateLimit-Limit/Remaining/Reset`` (the public API reference's "Rate Limits").

Where the docs are silent: a GraphQL error whose message says "not authorized" is
AuthRejected (as Railway's CLI reads it), one that says "not found" is NotFound, any other
is Refused.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx

from providers.base import AuthRejected, NotFound, ProviderError, Refused, Transient, redact
from providers.http import LazyClient, error_for, send, token_from
from providers.railway_deployments import Deployment, newest_first
from providers.retry import retrying

if TYPE_CHECKING:
    from providers.railway import RailwaySettings

Json = dict[str, Any]

MAX_ERROR_TEXT = 300
# Where each kind of token goes (workspace tokens are sent like account tokens).
TOKEN_HEADERS = {
    "project": ("Project-Access-Token", "{}"),
    "account": ("Authorization", "Bearer {}"),
}

DEPLOYMENTS_QUERY = """
query RollbotDeployments($input: DeploymentListInput!, $first: Int) {
  deployments(input: $input, first: $first) {
    edges { node { id status createdAt canRollback staticUrl meta } }
  }
}
"""
ROLLBACK_MUTATION = """
mutation RollbotDeploymentRollback($id: String!) {
  deploymentRollback(id: $id)
}
"""
AUTO_DEPLOY_QUERY = """
query RollbotAutoDeployStatus($projectId: String!, $environmentId: String!, $serviceId: String!) {
  serviceInstanceAutoDeployStatus(
    projectId: $projectId, environmentId: $environmentId, serviceId: $serviceId
  ) { enabled canEnable reason }
}
"""
AUTO_DEPLOY_MUTATION = """
mutation RollbotAutoDeployUpdate($input: ServiceInstanceAutoDeployUpdateInput!) {
  serviceInstanceAutoDeployUpdate(input: $input) { enabled }
}
"""


class RailwayClient:
    """Send GraphQL requests to Railway with the token, and read a service's deployments."""

    def __init__(self, settings: RailwaySettings) -> None:
        self._settings = settings
        self._client = LazyClient(settings.request_timeout_seconds)
        self._token = token_from(settings.token_env)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def deployments(self, *, retry: bool = True) -> list[Deployment]:
        """Read the service's recent deployments, newest first (a read: retried)."""
        settings = self._settings
        variables = {
            "input": {
                "projectId": settings.project_id,
                "serviceId": settings.service_id,
                "environmentId": settings.environment_id,
            },
            "first": settings.history,
        }
        what = (
            f"Reading the Railway deployments of service {settings.service_id} "
            f"in environment {settings.environment_id}"
        )
        data = (
            await retrying(lambda: self._graphql(DEPLOYMENTS_QUERY, variables, what), timeouts=True)
            if retry
            else await self._graphql(DEPLOYMENTS_QUERY, variables, what)
        )
        edges = (data.get("deployments") or {}).get("edges") or []
        found = [Deployment.parse(edge["node"]) for edge in edges if edge.get("node")]
        return sorted(found, key=newest_first)

    async def deployment_rollback(self, deployment_id: str, what: str) -> Json:
        """Send deploymentRollback once (a mutation is never retried) and return its data."""
        return await self._graphql(ROLLBACK_MUTATION, {"id": deployment_id}, what)

    async def auto_deploy(self) -> Json:
        """Read whether pushes deploy the service in its environment (a read: retried)."""
        settings = self._settings
        variables = {
            "projectId": settings.project_id,
            "environmentId": settings.environment_id,
            "serviceId": settings.service_id,
        }
        what = f"Reading whether Railway service {settings.service_id} auto-deploys"
        data = await retrying(
            lambda: self._graphql(AUTO_DEPLOY_QUERY, variables, what), timeouts=True
        )
        status = data.get("serviceInstanceAutoDeployStatus")
        if not isinstance(status, dict) or not isinstance(status.get("enabled"), bool):
            raise Transient(f"{what}: Railway answered without `enabled`.")
        return status

    async def set_auto_deploy(self, enabled: bool) -> None:
        """Send serviceInstanceAutoDeployUpdate once (the caller decides about resending)."""
        settings = self._settings
        variables = {
            "input": {
                "projectId": settings.project_id,
                "environmentId": settings.environment_id,
                "serviceId": settings.service_id,
                "enabled": enabled,
            }
        }
        what = (
            f"Railway serviceInstanceAutoDeployUpdate(enabled: {str(enabled).lower()}) for "
            f"service {settings.service_id}"
        )
        await self._graphql(AUTO_DEPLOY_MUTATION, variables, what)

    def _http(self) -> httpx.AsyncClient:
        """Return the one HTTP client, created on first use."""
        return self._client.get()

    def _auth_headers(self) -> dict[str, str]:
        """Return the header that carries the token, reading the variable again if unset."""
        if self._token is None:
            self._token = token_from(self._settings.token_env)
        if self._token is None:
            raise Refused(
                f"{self._settings.token_env} is not set: rollbot has no Railway token to use."
            )
        header, template = TOKEN_HEADERS[self._settings.token_kind]
        return {header: template.format(self._token.get_secret_value())}

    async def _graphql(self, query: str, variables: Json, what: str) -> Json:
        """Send one GraphQL request and return its data; errors become provider errors."""
        body = {"query": query, "variables": variables, "operationName": _operation(query)}
        response = await send(
            self._http(),
            "POST",
            self._settings.endpoint,
            what=what,
            json=body,
            headers=self._auth_headers(),
        )
        payload = _json_or_none(response)
        errors = (payload or {}).get("errors")
        if response.status_code != httpx.codes.OK:
            raise error_for(response, what, self._redact(_first_message(errors)))
        if payload is None:
            raise Transient(f"{what}: Railway answered with something that is not JSON.")
        if errors:
            raise self._graphql_error(errors, what)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise Transient(f"{what}: Railway answered without data.")
        return data

    def _graphql_error(self, errors: Any, what: str) -> ProviderError:
        """Map GraphQL errors onto the provider error tree."""
        messages = [self._redact(m) for m in _messages(errors)]
        text = "; ".join(messages)[:MAX_ERROR_TEXT] or "an error without a message"
        lowered = text.lower()
        if "not authorized" in lowered or "unauthorized" in lowered:
            settings = self._settings
            return AuthRejected(
                f"{what}: Railway said “{text}”. Check that {settings.token_env} holds a "
                f"{settings.token_kind} token that may see project {settings.project_id}, "
                f"environment {settings.environment_id}."
            )
        if "not found" in lowered:
            return NotFound(f"{what}: Railway said “{text}”.")
        return Refused(f"{what}: Railway refused: {text}")

    def _redact(self, text: str) -> str:
        """Keep the token out of any text Railway sends back."""
        return redact(text, self._token.get_secret_value() if self._token else None)


def _operation(query: str) -> str:
    """Return the operation name a query declares (Railway's logs show it)."""
    match = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
    return match.group(1) if match else ""


def _json_or_none(response: httpx.Response) -> Json | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _messages(errors: Any) -> list[str]:
    if not isinstance(errors, list):
        return []
    return [str(e.get("message") or "") for e in errors if isinstance(e, dict)]


def _first_message(errors: Any) -> str:
    return next(iter(_messages(errors)), "")[:MAX_ERROR_TEXT]
