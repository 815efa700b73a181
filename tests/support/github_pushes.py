"""Pushes refused as GitHub refuses them: a pre-receive hook in the bare remote.

``guard_pushes`` installs the hook with the rules a `FakeGitHub` holds. Documented
behaviours it reproduces (what git prints on a refused push):

- Branch pushes: a protected
  branch refuses with "GH006: Protected branch update failed" and the rule ("Required
  status check "ci" is expected.", "Changes must be made through a pull request."); a
  ruleset with "GH013: Repository rule violations found"; a token that may not write
  workflows refuses a change under ``.github/workflows/`` with "refusing to allow a
  Personal Access Token to create or update workflow `…` without `workflow` scope".
  Admins pass branch protection that does not include administrators, and a ruleset
  whose ``current_user_can_bypass`` is "always" lets the push through.
- Tag pushes: a tag ruleset whose ``creation`` (``update``, ``deletion``) rule covers the
  tag refuses with "GH013: Repository rule violations found for refs/tags/…" and "- Cannot
  create ref due to creations being restricted." (as reported in
  opensearch-project/.github#531); a tag protection rule of the older kind (still on
  GitHub Enterprise Server) refuses a non-admin with "GH006: Protected tag update failed
  for refs/tags/…" and "You're not authorized to create a tag" (VirtusLab/pulumi-kotlin#217).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

from tests.support.github import FakeGitHub, ref_matches

HOOK = r"""
import json, re, subprocess, sys

__REF_MATCHES__

CONFIG = json.loads(__CONFIG__)
ZERO = "0" * 40
status = 0
for line in sys.stdin.read().splitlines():
    old, new, ref = line.split()
    said = []
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    classic = CONFIG["protections"].get(branch) if branch else None
    if classic and not (CONFIG["admin"] and not classic["enforce_admins"]):
        rules = []
        checks = classic["checks"]
        if classic["reviews"]:
            rules.append("Changes must be made through a pull request.")
        if len(checks) == 1:
            rules.append(f'Required status check "{checks[0]}" is expected.')
        elif checks:
            rules.append(f"{len(checks)} of {len(checks)} required status checks are expected.")
        if rules:
            said += [f"error: GH006: Protected branch update failed for {ref}."]
            said += ["error: " + " ".join(rules)]
    for ruleset in CONFIG["rulesets"]:
        if ruleset["target"] != "branch" or ruleset["enforcement"] != "active":
            continue
        if ruleset["branch"] != branch or ruleset["bypass"] == "always":
            continue
        lines = []
        for rule in ruleset["rules"]:
            if rule["type"] == "pull_request":
                lines.append("- Changes must be made through a pull request.")
            if rule["type"] == "required_status_checks":
                for check in rule["parameters"]["required_status_checks"]:
                    lines.append(f'- Required status check "{check["context"]}" is expected.')
        if lines:
            said += [f"error: GH013: Repository rule violations found for {ref}."]
            where = f"https://github.com/{CONFIG['repository']}/rules?ref={ref.replace('/', '%2F')}"
            said += [f"Review all repository rules at {where}", ""]
            said += [part for l in lines for part in (l, "")]
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
    if tag and not CONFIG["admin"] and any(ref_matches(p, tag) for p in CONFIG["protected_tags"]):
        said += [f"error: GH006: Protected tag update failed for {ref}."]
        said += ["error: You're not authorized to create a tag" if old == ZERO else
                 "error: You're not authorized to update a tag"]
    kind = "creation" if old == ZERO else "deletion" if new == ZERO else "update"
    sentence = {
        "creation": "Cannot create ref due to creations being restricted.",
        "update": "Cannot update this protected ref.",
        "deletion": "Cannot delete this protected ref.",
    }[kind]
    for ruleset in CONFIG["rulesets"] if tag else []:
        if ruleset["target"] != "tag" or ruleset["enforcement"] != "active":
            continue
        names = ruleset["include"], ruleset["exclude"]
        if not any(ref_matches(p, ref) for p in names[0]) or any(
            ref_matches(p, ref) for p in names[1]
        ):
            continue
        if ruleset["bypass"] == "always":
            continue
        if any(rule["type"] == kind for rule in ruleset["rules"]):
            where = f"https://github.com/{CONFIG['repository']}/rules?ref={ref.replace('/', '%2F')}"
            said += [f"error: GH013: Repository rule violations found for {ref}."]
            said += [f"Review all repository rules at {where}", "", f"- {sentence}", ""]
    if not CONFIG["workflow_write"] and old != ZERO and new != ZERO:
        changed = subprocess.run(
            ["git", "diff", "--name-only", old, new, "--", ".github/workflows/"],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        if changed:
            said.append(
                f"refusing to allow a Personal Access Token to create or update workflow "
                f"`{changed[0]}` without `workflow` scope"
            )
    if said:
        print("\n".join(said), file=sys.stderr)
        status = 1
sys.exit(status)
"""


def guard_pushes(bare: Path, github: FakeGitHub, *, workflow_write: bool | None = None) -> None:
    """Make the bare remote refuse pushes as GitHub would for `github`'s token and rules.

    `workflow_write` says whether the token may write workflows; by default, whether its
    classic scopes include `workflow` (a fine-grained token must be told).
    """
    if workflow_write is None:
        workflow_write = github.scopes is not None and "workflow" in github.scopes
    config = {
        "repository": github.repository,
        "admin": github.admin,
        "protections": {b: vars(p) for b, p in github.protections.items()},
        "rulesets": [vars(r) for r in github.rulesets],
        "protected_tags": github.protected_tags,
        "workflow_write": workflow_write,
    }
    hook = bare / "hooks" / "pre-receive"
    code = HOOK.replace("__CONFIG__", repr(json.dumps(config)))
    code = code.replace("__REF_MATCHES__", inspect.getsource(ref_matches))
    hook.write_text(f"#!{sys.executable}\n" + code)
    hook.chmod(0o755)
