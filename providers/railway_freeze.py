"""Freezing a Railway service: its automatic deployments are turned off, then back on.

What Railway offers, and this module relies on: the dashboard's "Disable automatic
deployments" of a service instance, which the public GraphQL API exposes as
``serviceInstanceAutoDeployStatus(projectId, environmentId, serviceId) { enabled canEnable
reason }`` and ``serviceInstanceAutoDeployUpdate(input: {projectId, environmentId,
serviceId, enabled})``. Only an account or workspace token may change it; a project token is
answered "Bad Access".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.base import AuthRejected, Conflicting, Refused
from providers.freeze_switch import Freezer, Setting, Switch
from providers.railway_client import RailwayClient

if TYPE_CHECKING:
    from providers.railway import RailwaySettings


def railway_freezer(client: RailwayClient, settings: RailwaySettings) -> Freezer:
    """Return the freezer of the service's automatic deployments."""

    async def read() -> Setting:
        status = await client.auto_deploy()
        return Setting(on=bool(status["enabled"]))

    async def write(enabled: bool) -> None:
        try:
            await client.set_auto_deploy(enabled)
        except Refused as exc:
            if isinstance(exc, Conflicting):
                raise
            lowered = exc.message.lower()
            if isinstance(exc, AuthRejected) or "access" in lowered:
                raise Refused(
                    f"{exc.message} Changing automatic deployments needs an account or "
                    f"workspace token (token_kind: account) that may manage project "
                    f"{settings.project_id}; a project token may not (it is "
                    f"{settings.token_kind})."
                ) from exc
            raise

    return Freezer(
        Switch(
            key="autoDeployEnabled",
            label=(
                f"Railway service {settings.service_id} in environment "
                f"{settings.environment_id}: auto-deploys"
            ),
            off_text="disabled",
            on_text="re-enabled",
            read=read,
            write=write,
        )
    )
