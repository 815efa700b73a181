"""What GitHub enforces on a push to the branch, read before the push and read from a refusal.

Sources (docs.github.com/rest/branches, /rest/repos/rules): classic protection from
``GET /branches/{b}/protection`` (404 "Branch not protected"; 403 without admin rights,
when ``GET /branches/{b}`` still shows ``protected`` and the required status checks);
rulesets from ``GET /rules/branches/{b}`` and, per ruleset, ``current_user_can_bypass``.
A push that breaks them is refused with GH006 (protection) or GH013 (rulesets); a change
under ``.github/workflows/`` needs the token's ``workflow`` scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from providers.git.github import GitHubApi

WORKFLOWS = ".github/workflows/"
PUSH_ADVICE = (
    "ask a GitHub admin to allow rollbot to bypass {what}, or open a pull request with the "
    "revert instead"
)
# Ruleset rules a revert commit pushed by rollbot cannot meet, and how to say them.
RULESET_RULES = {
    "pull_request": "changes must come through a pull request",
    "update": "only people and apps allowed to may update the branch",
    "required_signatures": "commits must be signed",
}
GITHUB_LINE = re.compile(
    r"GH006|GH013|required status checks? .*expected|must be made through a pull request|"
    r"refusing to allow|cannot force-push|repository rules|cannot (create|update|delete) |"
    r"not authorized to (create|update|delete)",
    re.IGNORECASE,
)
WORKFLOW_REFUSAL = re.compile(
    r"refusing to allow an? ([\w ]+?) to create or update workflow `([^`]+)`"
)


@dataclass(frozen=True)
class Blocker:
    """One set of rules that refuses rollbot's push, unless rollbot may bypass it."""

    source: str
    rules: tuple[str, ...]
    bypassed: bool


@dataclass
class PushRules:
    """What GitHub enforces on pushes to one branch, as far as rollbot's token can read."""

    blockers: list[Blocker] = field(default_factory=list)
    hidden: bool = False


async def read_push_rules(api: GitHubApi, branch: str) -> PushRules:
    """Read the branch protection and the rulesets that apply to `branch`."""
    found = PushRules()
    what = f"Reading the branch protection of {branch} in {api.repository}"
    protection = await api.read(f"/branches/{branch}/protection", what, allow=(403, 404))
    if protection.status_code == 200:
        body = protection.json()
        rules = _classic_rules(body)
        admins = bool((body.get("enforce_admins") or {}).get("enabled"))
        if rules:
            # Reading it takes admin rights: rollbot is an admin, exempt unless admins are not.
            found.blockers.append(Blocker(f"the branch protection of {branch}", rules, not admins))
    elif protection.status_code == 403:
        shown = (await api.read(f"/branches/{branch}", f"Reading branch {branch}")).json()
        classic = shown.get("protection") or {}
        checks = tuple((classic.get("required_status_checks") or {}).get("contexts") or ())
        if checks:
            named = tuple(f'required status check "{c}"' for c in checks)
            found.blockers.append(Blocker(f"the branch protection of {branch}", named, False))
        elif classic.get("enabled"):
            found.hidden = True
    listed = await api.read(f"/rules/branches/{branch}", f"Reading the rulesets on {branch}")
    by_ruleset: dict[int, list[str]] = {}
    for rule in listed.json():
        by_ruleset.setdefault(int(rule.get("ruleset_id", 0)), []).extend(_ruleset_rule(rule))
    for ruleset_id, kept in by_ruleset.items():
        if not kept:
            continue
        ruleset = (
            await api.read(f"/rulesets/{ruleset_id}", f"Reading ruleset {ruleset_id}")
        ).json()
        name = ruleset.get("name") or str(ruleset_id)
        bypass = ruleset.get("current_user_can_bypass") == "always"
        found.blockers.append(Blocker(f"ruleset “{name}”", tuple(kept), bypass))
    return found


def bypass_warnings(rules: PushRules, where: str) -> list[str]:
    """Warn about each set of rules that applies to `where` but that rollbot may bypass."""
    return [
        f"{b.source} ({', '.join(b.rules)}) applies to {where}, but rollbot may bypass it, "
        "so its push goes through (GitHub records the bypass)."
        for b in rules.blockers
        if b.bypassed
    ]


def judge(rules: PushRules, branch: str, repository: str) -> tuple[str | None, list[str]]:
    """Return why GitHub will refuse the push (or None) and the warnings for the plan."""
    blocking = [b for b in rules.blockers if not b.bypassed]
    warnings = bypass_warnings(rules, branch)
    if rules.hidden:
        warnings.append(
            f"{branch} of {repository} is protected and rollbot cannot read which rules apply "
            "(that takes admin rights): if they require a pull request, GitHub refuses the "
            "push and nothing changes."
        )
    if not blocking:
        return None, warnings
    said = "; ".join(f"{b.source}: {', '.join(b.rules)}" for b in blocking)
    sources = " and ".join(b.source for b in blocking)
    return (
        f"GitHub will refuse rollbot's push to {branch} of {repository}: {said}, and a revert "
        "commit rollbot makes has no passing checks and no pull request. Nothing was changed; "
        + PUSH_ADVICE.format(what=sources)
        + "."
    ), warnings


def workflow_files(files: list[str]) -> list[str]:
    """Return the files under .github/workflows/ among `files`."""
    return [f for f in files if f.startswith(WORKFLOWS)]


def judge_workflows(
    files: list[str], scopes: frozenset[str] | None
) -> tuple[str | None, list[str]]:
    """Say whether the token may push changes to workflow files (classic scopes are known)."""
    if not files:
        return None, []
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    if scopes is None:
        return None, [
            f"The revert changes {shown}: GitHub refuses that push unless the token may write "
            "workflows (“Workflows: write” for a fine-grained token or app); rollbot cannot "
            "tell for this token."
        ]
    if "workflow" in scopes:
        return None, []
    has = ", ".join(sorted(scopes)) or "no scopes"
    return (
        f"The revert changes {shown}, and GitHub refuses a push that creates or updates a "
        f"workflow from a token without the `workflow` scope (this token has: {has}). Nothing "
        "was changed; give the token the `workflow` scope, or open a pull request with the "
        "revert."
    ), []


def github_lines(text: str) -> list[str]:
    """Return the lines of what git printed that carry GitHub's reason for a refusal."""
    lines = [
        line.removeprefix("remote:").strip().removeprefix("error:").strip().lstrip("- ")
        for line in text.replace("; ", "\n").splitlines()
    ]
    return [line for line in lines if GITHUB_LINE.search(line)]


def push_refusal(text: str, branch: str) -> tuple[str, str] | None:
    """Read GitHub's reason out of a refused push: (why, what to do), or None."""
    said = github_lines(text)
    workflow = WORKFLOW_REFUSAL.search(text)
    if workflow is not None:
        return (
            f"GitHub refuses to let a {workflow[1]} create or update the workflow "
            f"`{workflow[2]}` without `workflow` scope",
            "give the token the `workflow` scope (“Workflows: write” for a fine-grained token "
            "or app), or open a pull request with the revert",
        )
    if "GH006" in text:
        return (
            f"{branch} is a protected branch ({' '.join(said)})",
            PUSH_ADVICE.format(what=f"the branch protection of {branch}"),
        )
    if "GH013" in text:
        return (
            f"it breaks the repository rules of {branch} ({' '.join(said)})",
            PUSH_ADVICE.format(what=f"the rulesets on {branch}"),
        )
    return None


def _classic_rules(body: dict[str, Any]) -> tuple[str, ...]:
    checks = (body.get("required_status_checks") or {}).get("contexts") or []
    rules = [f'required status check "{c}"' for c in checks]
    if body.get("required_pull_request_reviews"):
        rules.append(RULESET_RULES["pull_request"])
    return tuple(rules)


def _ruleset_rule(rule: dict[str, Any]) -> list[str]:
    kind = rule.get("type", "")
    if kind == "required_status_checks":
        checks = (rule.get("parameters") or {}).get("required_status_checks") or []
        return [f'required status check "{c.get("context")}"' for c in checks]
    return [RULESET_RULES[kind]] if kind in RULESET_RULES else []
