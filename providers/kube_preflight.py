"""Preflight of a `kubernetes` target: exact revisions, whether the target can roll, what changes.

Checks, by their stable names (a break-glass approval names the one it overrides):

- `rollout-possible`: fails for a paused Deployment or an OnDelete StatefulSet/DaemonSet,
  whose pods a template change would not roll.
- `rollout-idle`: warns while a rollout is still going (the rollback replaces it).
- `autoscaler`: warns when a HorizontalPodAutoscaler scales the workload (the rollback
  changes the pod template, never the replica count).
- `image-present`: each image of the target template is in its registry (a manifest
  read with the credentials of the template's imagePullSecrets), shown with its digest;
  fails when the registry says it is not there; warns when it cannot be asked.

Changes compare the current and target pod templates per container: image, environment
variable names (never values), envFrom sources, ports, command and args.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from providers.base import AuthRejected, NotFound, ProviderError
from providers.capabilities import Identity, PreflightCheck, Verdict
from providers.images import ImageRef
from providers.kube_api import KubeApi
from providers.kube_revisions import History, Revision
from providers.kube_rollout import not_rolling, rollout_of
from providers.registry_auth import RegistryAuth, credentials_in, registry_of
from providers.registry_manifests import Platform, remote_image

Json = dict[str, Any]
PLATFORM = Platform("linux", "amd64")


def identity(
    kind: str, name: str, history: History, revision: Revision, digest: str = ""
) -> Identity:
    """Name a revision by its version, and exactly by its number, holder and image."""
    image = revision.image(history.container) or "no image"
    pinned = f" ({digest})" if digest else ""
    exact = f"{kind} {name} revision {revision.number} ({revision.source}): {image}{pinned}"
    return Identity(version=history.name(revision), exact=exact)


def rollout_checks(
    kind: str, workload: Json, autoscalers: list[str] | None
) -> list[PreflightCheck]:
    """The checks read off the workload itself and the autoscalers that target it."""
    checks = []
    why = not_rolling(kind, workload)
    if why:
        checks.append(PreflightCheck("rollout-possible", Verdict.FAIL, why))
    else:
        text = f"{kind} {workload['metadata']['name']} rolls its pods when its template changes."
        checks.append(PreflightCheck("rollout-possible", Verdict.PASS, text))
    rollout = rollout_of(kind, workload)
    if rollout.failed:
        checks.append(
            PreflightCheck(
                "rollout-idle", Verdict.WARN, f"The last rollout failed ({rollout.failed})."
            )
        )
    elif not rollout.done:
        text = f"A rollout is in progress ({rollout.text}): the rollback replaces it."
        checks.append(PreflightCheck("rollout-idle", Verdict.WARN, text))
    else:
        checks.append(
            PreflightCheck(
                "rollout-idle", Verdict.PASS, f"No rollout in progress ({rollout.text})."
            )
        )
    if autoscalers is None:
        text = "Could not read the HorizontalPodAutoscalers (no RBAC permission to list them)."
        checks.append(PreflightCheck("autoscaler", Verdict.WARN, text))
    elif autoscalers:
        text = (
            f"{'; '.join(autoscalers)}: the rollback changes the pod template only, and the "
            "autoscaler keeps setting the replica count."
        )
        checks.append(PreflightCheck("autoscaler", Verdict.WARN, text))
    else:
        checks.append(
            PreflightCheck("autoscaler", Verdict.PASS, "No HorizontalPodAutoscaler scales it.")
        )
    return checks


def autoscaler_lines(kind: str, name: str, hpas: list[Json]) -> list[str]:
    """Describe the HPAs whose scale target is this workload."""
    lines = []
    for hpa in hpas:
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        if ref.get("kind") == kind and ref.get("name") == name:
            lines.append(
                f"HorizontalPodAutoscaler {hpa['metadata']['name']} scales it between "
                f"{spec.get('minReplicas', 1)} and {spec.get('maxReplicas')} replicas"
            )
    return lines


class ImageCheck:
    """The `image-present` check: ask each image's registry, with the pod's pull secrets."""

    def __init__(self, api: KubeApi, namespace: str, timeout_seconds: float) -> None:
        self._api = api
        self._namespace = namespace
        self._timeout = timeout_seconds

    async def check(self, template: Json) -> tuple[PreflightCheck, dict[str, str]]:
        """Check every container image of a pod template; return the check and the digests."""
        spec = template.get("spec") or {}
        secrets = [str(s.get("name")) for s in spec.get("imagePullSecrets") or [] if s.get("name")]
        found: list[tuple[Verdict, str]] = []
        digests: dict[str, str] = {}
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            image = str(container.get("image") or "")
            verdict, line, digest = await self._one(str(container.get("name")), image, secrets)
            found.append((verdict, line))
            if digest:
                digests[image] = digest
        verdict = Verdict.worst(f[0] for f in found)
        return PreflightCheck(
            "image-present", verdict, "; ".join(f[1] for f in found) + "."
        ), digests

    async def _one(self, name: str, image: str, secrets: list[str]) -> tuple[Verdict, str, str]:
        registry = registry_of(ImageRef.parse(image).repository)
        auth, problem = await self._credentials(registry, secrets)
        try:
            remote = await remote_image(ImageRef.parse(image), auth, PLATFORM, self._timeout)
        except NotFound:
            return (
                Verdict.FAIL,
                f"{name}: {image} is not in its registry (the pods could not pull it)",
                "",
            )
        except AuthRejected as exc:
            if auth is None:
                why = (
                    "the registry wants credentials no imagePullSecret of the pod holds; "
                    "the nodes may have their own"
                )
                return Verdict.WARN, f"{name}: {image} not checked ({problem or why})", ""
            return (
                Verdict.FAIL,
                f"{name}: {image}: the registry refused the pull secret's credentials "
                f"({exc.message})",
                "",
            )
        except ProviderError as exc:
            return Verdict.WARN, f"{name}: {image} not checked ({exc.message})", ""
        return Verdict.PASS, f"{name}: {image} is in its registry ({remote.digest})", remote.digest

    async def _credentials(
        self, registry: str, secrets: list[str]
    ) -> tuple[RegistryAuth | None, str]:
        """The pull secrets' credentials for a registry, and why none could be read, if so."""
        problem = ""
        core = await self._api.core()
        for secret in secrets:
            where = f"secret {self._namespace}/{secret}"
            try:
                found = await self._api.read(
                    f"reading pull {where}", core.read_namespaced_secret, secret, self._namespace
                )
            except ProviderError as exc:
                problem = f"could not read pull {where}: {exc.message}"
                continue
            raw = (found.get("data") or {}).get(".dockerconfigjson")
            if not raw:
                continue
            try:
                config = json.loads(base64.b64decode(raw))
            except (ValueError, TypeError):
                problem = f"pull {where} is not a Docker config"
                continue
            auth = credentials_in(config, registry, where)
            if auth is not None:
                return auth, ""
        return None, problem


def changes(current: Revision, target: Revision) -> list[str]:
    """Say what differs between two pod templates, one line each (never an env value)."""
    before, after = _containers(current.template), _containers(target.template)
    lines = []
    for name in after.keys() - before.keys():
        lines.append(f"container added: {name}")
    for name in before.keys() - after.keys():
        lines.append(f"container removed: {name}")
    for name, then in after.items():
        now = before.get(name)
        if now is None:
            continue
        if now.get("image") != then.get("image"):
            lines.append(f"{name}: image: {now.get('image')} -> {then.get('image')}")
        had, has = _env_names(now), _env_names(then)
        parts = [
            f"{word}: {', '.join(sorted(n))}"
            for word, n in (("added", has - had), ("removed", had - has))
            if n
        ]
        if parts:
            lines.append(f"{name}: env names {'; '.join(parts)}")
        for key, label in (("ports", "ports"), ("command", "command"), ("args", "args")):
            if (now.get(key) or []) != (then.get(key) or []):
                lines.append(f"{name}: {label}: {_show(key, now)} -> {_show(key, then)}")
    return lines or ["pod template: the same images, env names, ports, command and args"]


def _containers(template: Json) -> dict[str, Json]:
    return {str(c.get("name")): c for c in (template.get("spec") or {}).get("containers") or []}


def _env_names(container: Json) -> set[str]:
    names = {str(e.get("name")) for e in container.get("env") or [] if e.get("name")}
    for source in container.get("envFrom") or []:
        for kind in ("configMapRef", "secretRef"):
            if source.get(kind):
                names.add(f"{source.get('prefix') or ''}*({kind[:-3]} {source[kind].get('name')})")
    return names


def _show(key: str, container: Json) -> str:
    value = container.get(key) or []
    if key == "ports":
        return (
            ", ".join(f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}" for p in value)
            or "none"
        )
    return " ".join(str(v) for v in value) or "the image's default"
