"""What GitHub enforces on pushing a tag, read before the push and read from a refusal.

Sources (docs.github.com/rest/repos/rules): ``GET /rulesets?includes_parents=true`` lists
every ruleset that applies to the repository, its organization's included, without their
conditions or rules; ``GET /rulesets/{id}`` gives ``target`` ("tag"), ``enforcement``
(only "active" is enforced; "evaluate" only reports), ``conditions.ref_name.include`` and
``exclude`` (full ref names in fnmatch syntax, where ``*`` does not match ``/`` and ``**``
does; ``~ALL`` matches every ref), the ``rules`` (``creation``, ``update``, ``deletion``)
and ``current_user_can_bypass``. A refused tag push says "GH013: Repository rule
violations found for refs/tags/…" and "Cannot create ref due to creations being
restricted."; the older tag protection rules (GitHub Enterprise Server; there is no API
left to read them) say "GH006: Protected tag update failed" and "You're not authorized
to create a tag".
"""

from __future__ import annotations

import re
from typing import Any

from providers.git.github import GitHubApi
from providers.git.rules import Blocker, PushRules, bypass_warnings, github_lines

# Tag rules a push of a new rollback tag (or of one that exists) breaks, and how to say them.
TAG_RULES = {"creation": "creating", "update": "updating"}
WILDCARDS = {"**": ".*", "*": "[^/]*", "?": "[^/]"}


async def read_tag_rules(api: GitHubApi, name: str, *, exists: bool = False) -> PushRules:
    """Read the active tag rulesets that cover tag `name` and restrict creating it."""
    ref = f"refs/tags/{name}"
    rule = "update" if exists else "creation"
    found = PushRules()
    what = f"Reading the rulesets of {api.repository}"
    listed = await api.read("/rulesets?includes_parents=true&per_page=100", what)
    for summary in listed.json():
        if not _may_cover_tags(summary):
            continue
        number = int(summary["id"])
        ruleset = (
            await api.read(f"/rulesets/{number}?includes_parents=true", f"Reading ruleset {number}")
        ).json()
        names = (ruleset.get("conditions") or {}).get("ref_name") or {}
        kinds = {r.get("type") for r in ruleset.get("rules") or []}
        if not _may_cover_tags(ruleset) or rule not in kinds or not covers(names, ref):
            continue
        patterns = ", ".join(names.get("include") or [])
        found.blockers.append(
            Blocker(
                f"ruleset “{ruleset.get('name') or number}”",
                (f"{TAG_RULES[rule]} tags matching {patterns} is restricted",),
                ruleset.get("current_user_can_bypass") == "always",
            )
        )
    return found


def judge_tag(rules: PushRules, name: str, repository: str) -> tuple[str | None, list[str]]:
    """Return why GitHub will refuse the tag push (or None) and the warnings for the plan."""
    warnings = bypass_warnings(rules, f"tag {name}")
    blocking = [b for b in rules.blockers if not b.bypassed]
    if not blocking:
        return None, warnings
    said = "; ".join(f"{b.source}: {', '.join(b.rules)}" for b in blocking)
    sources = " and ".join(b.source for b in blocking)
    return (
        f"GitHub will refuse rollbot's push of tag {name} to {repository}: {said}. Nothing "
        f"was changed; ask a GitHub admin to allow rollbot to bypass {sources} (or to "
        f"exclude refs/tags/{name} from it), or push the tag by hand as someone who may."
    ), warnings


def tag_push_refusal(text: str, name: str) -> tuple[str, str] | None:
    """Read GitHub's reason out of a refused tag push: (why, what to do), or None."""
    said = " ".join(github_lines(text))
    if "GH006" in text:
        return (
            f"tag {name} is covered by a tag protection rule ({said})",
            "only admins may create such a tag: ask a GitHub admin to push it, or to change "
            "the repository's tag protection rules",
        )
    if "GH013" in text:
        return (
            f"it breaks the repository rules for tags ({said})",
            f"ask a GitHub admin to let rollbot bypass the ruleset that protects tag {name} "
            "(Settings, Rules, Rulesets), or push the tag by hand as someone who may",
        )
    return None


def covers(names: dict[str, Any], ref: str) -> bool:
    """Return True when a ruleset's ``ref_name`` condition takes in `ref`."""
    include = names.get("include") or []
    exclude = names.get("exclude") or []
    return any(_matches(p, ref) for p in include) and not any(_matches(p, ref) for p in exclude)


def _matches(pattern: str, ref: str) -> bool:
    if pattern == "~ALL":
        return True
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    regex = "".join(WILDCARDS.get(part, re.escape(part)) for part in parts)
    return re.fullmatch(regex, ref) is not None


def _may_cover_tags(ruleset: dict[str, Any]) -> bool:
    # A listing without a target or an enforcement is read in full rather than skipped.
    return ruleset.get("target", "tag") == "tag" and ruleset.get("enforcement", "active") == (
        "active"
    )
