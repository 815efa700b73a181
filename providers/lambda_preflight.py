"""Preflight of a `lambda_alias` target: the exact versions, whether the target runs, what changes.

Checks, by their stable names (a break-glass approval names the one it overrides):

- `version-exists`: the target is a published version whose `State` is `Active`
  (GetFunctionConfiguration with the version as qualifier); `Pending`, `Inactive` or
  `Failed` fails, with Lambda's StateReason.
- `alias-routing`: the alias sends all its traffic to one version (pass), or splits it
  (warn, naming each version and its share, and that the rollback sends 100 % to the
  target).

A provisioned-concurrency check is not made: rollbot's test platform (moto) has no
provisioned concurrency to check it against, and a check never tested is not shipped.

Changes compare the current and target versions' configurations: code (CodeSha256),
runtime, handler, memory, timeout, architectures, layers and environment variable names
(never a value).
"""

from __future__ import annotations

from typing import Any

from providers.capabilities import Identity, PreflightCheck, PreflightReport
from providers.lambda_versions import Alias, Catalog, FunctionVersion, percent
from providers.preflight_lines import direction, failed, passed, warned

Json = dict[str, Any]


def identity(function: str, version: FunctionVersion) -> Identity:
    """Name a version by its number, and exactly by its code's SHA-256."""
    return Identity(
        version=str(version.number),
        exact=f"{function}:{version.number} (sha256 {version.code_sha256 or 'unknown'})",
    )


def alias_identity(catalog: Catalog, configs: dict[str, Json]) -> Identity:
    """Name what the alias runs exactly: each version's code, and the shares while it splits."""
    alias = catalog.alias
    parts = []
    for number, share in alias.shares():
        sha = str((configs.get(number) or {}).get("CodeSha256") or "unknown")
        where = f"{catalog.function}:{number} (sha256 {sha})"
        parts.append(f"{where} {percent(share)}" if alias.split else where)
    return Identity(version=alias.running, exact=", ".join(parts))


def report(
    catalog: Catalog, target: FunctionVersion, target_config: Json, configs: dict[str, Json]
) -> PreflightReport:
    """Say exactly what runs now and what would, whether it can, and what differs."""
    current_config = configs.get(catalog.alias.version) or {}
    return PreflightReport(
        current=alias_identity(catalog, configs),
        target=identity(catalog.function, target),
        checks=[state_check(catalog.function, target_config), routing_check(catalog.alias, target)],
        changes=changes(catalog, current_config, target, target_config),
    )


def state_check(function: str, config: Json) -> PreflightCheck:
    """Pass a published, Active version; fail any other state, with Lambda's reason."""
    name = "version-exists"
    number = config.get("Version")
    state = str(config.get("State") or "unknown")
    where = f"{function}:{number}"
    if state == "Active":
        return passed(name, f"{where} is published and Active.")
    reason = config.get("StateReason")
    code = config.get("StateReasonCode")
    because = f": {reason}" + (f" ({code})" if code else "") if reason else ""
    return failed(name, f"{where} is {state}, not Active{because}: the alias cannot serve it.")


def routing_check(alias: Alias, target: FunctionVersion) -> PreflightCheck:
    """Pass an alias with one version; warn when it splits traffic, saying how."""
    name = "alias-routing"
    if not alias.split:
        return passed(name, f"Alias `{alias.name}` sends all traffic to version {alias.version}.")
    return warned(name, split_text(alias, target))


def split_text(alias: Alias, target: FunctionVersion) -> str:
    """Say how the alias splits traffic and that the rollback ends the split."""
    others = ", ".join(f"{percent(w * 100)} to version {v}" for v, w in alias.weights.items())
    return (
        f"Alias `{alias.name}` sends {others} (the rest to version {alias.version}); after "
        f"the rollback 100 % goes to version {target.number}."
    )


def changes(catalog: Catalog, now: Json, target: FunctionVersion, then: Json) -> list[str]:
    """Say what differs between the current and the target versions, one line each."""
    lines = []
    current = catalog.find(catalog.alias.version)
    if current is not None:
        forward = direction(
            f"version {current.number}",
            current.last_modified,
            f"version {target.number}",
            target.last_modified,
        )
        if forward:
            lines.append(forward)
    if now.get("CodeSha256") == then.get("CodeSha256"):
        lines.append(f"code: the same (sha256 {then.get('CodeSha256')}); only settings differ")
    else:
        lines.append(f"code: sha256 {now.get('CodeSha256')} -> {then.get('CodeSha256')}")
    for key, label, unit in (
        ("Runtime", "runtime", ""),
        ("Handler", "handler", ""),
        ("MemorySize", "memory", " MB"),
        ("Timeout", "timeout", " s"),
    ):
        if now.get(key) != then.get(key):
            lines.append(f"{label}: {now.get(key) or 'none'} -> {then.get(key) or 'none'}{unit}")
    if _architectures(now) != _architectures(then):
        lines.append(f"architectures: {_architectures(now)} -> {_architectures(then)}")
    lines.extend(_added_removed("layers", _layers(now), _layers(then)))
    lines.extend(_added_removed("env names", _env_names(now), _env_names(then)))
    return lines


def _architectures(config: Json) -> str:
    return ", ".join(config.get("Architectures") or ["x86_64"])


def _layers(config: Json) -> set[str]:
    return {str(layer.get("Arn")) for layer in config.get("Layers") or [] if layer.get("Arn")}


def _env_names(config: Json) -> set[str]:
    """The names of the environment variables; their values are never read."""
    return set(((config.get("Environment") or {}).get("Variables") or {}).keys())


def _added_removed(label: str, before: set[str], after: set[str]) -> list[str]:
    parts = [
        f"{word}: {', '.join(sorted(names))}"
        for word, names in (("added", after - before), ("removed", before - after))
        if names
    ]
    return [f"{label} {'; '.join(parts)}"] if parts else []
