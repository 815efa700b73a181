"""Freezing a Vercel project: auto-assignment of its production domains is paused, then resumed.

What Vercel documents, and this module relies on: a project's "Auto-assign Custom Production
Domains" setting is ``autoAssignCustomDomains`` of ``GET/PATCH /v9/projects/{idOrName}``
("Update an existing project"), with ``autoAssignCustomDomainsUpdatedBy``. While it is off,
new production deployments are built but do not get the production domains until someone
promotes one; the site keeps serving. (``POST /v1/projects/{id}/pause`` is not used: it
also blocks the active production deployment, taking the site down.)

Choices where the docs are silent: rollbot writes ``autoAssignCustomDomainsUpdatedBy:
"rollbot"`` with the pause, and treats any other value found at unfreeze time as someone
else's change; an answer without ``autoAssignCustomDomains`` is refused rather than guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.base import AuthRejected, Refused
from providers.freeze_switch import Freezer, Setting, Switch
from providers.vercel_client import VercelClient

if TYPE_CHECKING:
    from providers.vercel import VercelSettings

FIELD = "autoAssignCustomDomains"
BY_FIELD = "autoAssignCustomDomainsUpdatedBy"
MARK = "rollbot"


def vercel_freezer(client: VercelClient, settings: VercelSettings) -> Freezer:
    """Return the freezer of the project's auto-assignment of production domains."""
    project = settings.project

    async def read() -> Setting:
        body = await client.project()
        value = body.get(FIELD)
        if not isinstance(value, bool):
            raise Refused(
                f"Vercel did not say whether project `{project}` auto-assigns its production "
                f"domains ({FIELD} missing); nothing was changed."
            )
        marked = not value and body.get(BY_FIELD) == MARK
        return Setting(on=value, ours=value or marked, marked=marked)

    async def write(on: bool) -> None:
        body = {FIELD: on, BY_FIELD: MARK} if not on else {FIELD: on}
        what = f"setting {FIELD} of project `{project}` to {str(on).lower()}"
        try:
            await client.update_project(body, what)
        except AuthRejected as exc:
            raise Refused(
                f"{exc.message} The token in {settings.token_env} needs permission to change "
                f"project settings of `{project}` (an Owner, Member or Project Administrator "
                "role); a Viewer's may only read."
            ) from exc

    return Freezer(
        Switch(
            key=FIELD,
            label=f"Vercel project `{project}`: auto-assignment of production domains",
            off_text="paused",
            on_text="resumed",
            read=read,
            write=write,
        )
    )
