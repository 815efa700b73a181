"""Whether GitHub will take rollbot's push, predicted from the rules it can read.

The plan refuses on a predicted refusal and warns otherwise; the preflight turns the same
prediction into the ``push-allowed`` check (fail when blocked, warn when unknown).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.base import TimedOut, Transient
from providers.git.github import GitHubApi
from providers.git.model import ROLLBACK_SUFFIX
from providers.git.rules import PushRules, judge, judge_workflows, read_push_rules, workflow_files
from providers.git.settings import GitSettings
from providers.git.tag_rules import judge_tag, read_tag_rules
from providers.git.transport import Scrubber


@dataclass(frozen=True)
class Prediction:
    """What GitHub will say to the push, as far as rollbot can tell."""

    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)
    # Why the answer is not known (rules unread or hidden), or None when it is.
    unknown: str | None = None
    # What rollbot is pushing to, as the lines say it ("main", "tag v1.2.3-rollback").
    where: str = ""
    # The rules that apply but that rollbot may bypass, by their source.
    bypassed: list[str] = field(default_factory=list)


async def predict_push(
    settings: GitSettings, github: GitHubApi, scrub: Scrubber, branch: str, files: list[str]
) -> Prediction:
    """Predict GitHub's answer to a push of `files` changed on `branch`."""
    repository = settings.github_repository or ""
    try:
        rules = await read_push_rules(github, branch)
    except (Transient, TimedOut) as exc:
        said = scrub(exc.message)
        return Prediction(
            warnings=[
                f"Could not read what GitHub enforces on pushes to {branch} ({said}): GitHub "
                "may still refuse the push, and then nothing changes."
            ],
            unknown=f"could not read what GitHub enforces on pushes to {branch} ({said})",
            where=branch,
        )
    refusal, warnings = judge(rules, branch, repository)
    unknown = (
        f"{branch} of {repository} is protected and rollbot cannot read which rules apply "
        "(that takes admin rights)"
        if rules.hidden
        else None
    )
    if refusal is None and settings.https_token:
        # Only a push with the token is held to its scopes (an ssh key has none).
        changed = workflow_files(files)
        refusal, more = judge_workflows(changed, github.scopes)
        warnings += more
        if more and unknown is None:
            unknown = "rollbot cannot tell whether the token may write the workflows it changes"
    return Prediction(refusal, warnings, unknown, branch, bypassed_by(rules))


async def predict_tag(
    settings: GitSettings, github: GitHubApi, scrub: Scrubber, version: str
) -> Prediction:
    """Predict GitHub's answer to a push of the rollback tag of `version`."""
    repository = settings.github_repository or ""
    name = version + ROLLBACK_SUFFIX
    try:
        rules = await read_tag_rules(github, name)
    except (Transient, TimedOut) as exc:
        said = scrub(exc.message)
        return Prediction(
            warnings=[
                f"Could not read the tag rules of {repository} ({said}): GitHub may still "
                f"refuse tag {name}, and then nothing changes."
            ],
            unknown=f"could not read the tag rules of {repository} ({said})",
            where=f"tag {name}",
        )
    refusal, warnings = judge_tag(rules, name, repository)
    return Prediction(refusal, warnings, None, f"tag {name}", bypassed_by(rules))


def bypassed_by(rules: PushRules) -> list[str]:
    """Name the sets of rules that apply but that rollbot may bypass."""
    return [b.source for b in rules.blockers if b.bypassed]
