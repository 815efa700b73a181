"""Git provider: revert bad commits on a branch, or push a rollback tag, to redeploy.

Modules: ``settings`` (the target's settings), ``transport`` (git runs and credentials),
``model`` (tags, commits, snapshots), ``clone`` (the cached clone: fetch, read, push),
``revert`` and ``tag`` (the two modes), ``github`` (GitHub's REST API), ``predict``
(whether GitHub takes the push), ``preflight`` (the checks before approval) and
``provider`` (the Provider protocol on top of them).
"""

from providers.git.model import COMMIT_PATTERN
from providers.git.provider import GitProvider
from providers.git.settings import GitSettings

__all__ = ["COMMIT_PATTERN", "GitProvider", "GitSettings"]
