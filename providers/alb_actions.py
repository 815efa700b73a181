"""An ALB listener's default actions: where the forward action sends traffic, and the
same action list rewritten to send it all to one target group."""

from __future__ import annotations

import copy
from typing import Any

from providers.base import Refused

Json = dict[str, Any]


def forward_action(actions: list[Json]) -> Json | None:
    """Return the forward action among the default actions, if there is one."""
    return next((a for a in actions if a.get("Type") == "forward"), None)


def forward_weights(listener: Json) -> dict[str, int]:
    """Return the forward action's target groups with their weights."""
    action = forward_action(listener.get("DefaultActions") or []) or {}
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
    if groups:
        return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
    arn = action.get("TargetGroupArn")
    return {arn: 1} if arn else {}


def forward_target(listener: Json) -> str | None:
    """Return the target group taking the traffic: the only one, or the heaviest."""
    weights = forward_weights(listener)
    return max(weights, key=lambda arn: weights[arn]) if weights else None


def switched(actions: list[Json], arn: str) -> list[Json]:
    """Return the full default action list with the forward action sending all to `arn`."""
    result = copy.deepcopy(actions)
    forward = forward_action(result)
    if forward is None:
        raise Refused("The listener has no forward default action to switch.")
    forward_config = forward.get("ForwardConfig")
    if forward_config:
        # Keep stickiness; TargetGroupArn and ForwardConfig must then agree, so drop it.
        forward_config["TargetGroups"] = [{"TargetGroupArn": arn, "Weight": 1}]
        forward.pop("TargetGroupArn", None)
    else:
        forward["TargetGroupArn"] = arn
    for action in result:
        oidc = action.get("AuthenticateOidcConfig")
        # describe_listeners never returns the client secret; reuse the stored one.
        if oidc is not None and "ClientSecret" not in oidc:
            oidc["UseExistingClientSecret"] = True
    return result
