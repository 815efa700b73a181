"""One redactor for everything rollbot writes: log lines, Slack messages, report files.

It replaces with ``[redacted]``: URL credentials of any scheme, the token shapes of
Slack, GitHub and AWS, HTTP credentials, values labelled as passwords, secrets or
tokens; and, once `install` has read the config, the exact value of every secret the
config names (and the credentials inside a URL-valued one). `redact()` uses the
process-wide instance that the log processor and the Slack text path share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote

from bot.settings import OWN_SECRETS

if TYPE_CHECKING:
    from bot.config import RollbotConfig

REDACTED = "[redacted]"
# Shorter values would match ordinary words and shred the text around them.
MIN_SECRET_LENGTH = 6

_SCHEME = r"(?<![\w+.-])[A-Za-z][\w+.-]*://"
# A user part never holds '/' (that would be a path); a password may hold anything but
# whitespace, and ends at the last '@' before it: `p@ss:w/rd` goes whole.
_USERINFO = r"[^\s<>/:]*(?::[^\s<>]*)?"
_CRED_CHAR = r"[\w\-.~+/]"
# Only what looks like a credential: a digit, capital or symbol after the first
# character, so "Basic troubleshooting" is left alone.
_CREDENTIAL = rf"(?={_CRED_CHAR}{_CRED_CHAR}*?[0-9A-Z+/_~.-]){_CRED_CHAR}{{8,}}=*"
_LABELS = r"password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
_PATTERNS = re.compile(
    "|".join(
        [
            rf"(?P<scheme>{_SCHEME}){_USERINFO}@",
            # A header's value: its scheme word and the credential after it.
            r"(?P<header>(?ai:\bauthorization)[\"']?\s*[:=]\s*[\"']?)"
            r"(?:(?ai:bearer|basic|token|digest)\s+)?[^\s\"',;]+",
            rf"(?P<auth>\b(?:Bearer|Basic)\s+){_CREDENTIAL}",
            # key=value, key: value and "key": "value", for keys that end in a secret's
            # name (PGPASSWORD, aws_secret_access_key); what comes before stays as it is.
            rf"(?P<label>(?ai:{_LABELS})"
            r"(?:[\"']?\s*=\s*[\"']?|[\"']?:\s+[\"']?|[\"']:[\"']))[^\s\"'&,;<>]+",
            r"(?<![\w-])xox[abeprs](?:\.xox[a-z])?-[A-Za-z0-9-]{6,}",
            r"(?<![\w-])xapp-[A-Za-z0-9-]{6,}",
            r"(?<!\w)gh[pousr]_[A-Za-z0-9]{16,}",
            r"(?<!\w)github_pat_\w{20,}",
            r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])",
        ]
    )
)
# Lower-case pieces of text without which no pattern can match (the case-blind parts
# are ASCII-only): most text has none and skips the regex, which is the slow part.
_NEEDED = tuple(
    "://  xox xapp-  ghp_ gho_ ghu_ ghs_ ghr_ github_pat_  akia asia  authorization bearer basic"
    "  pass pwd secret token key".split()
)
_CREDENTIALS = re.compile(rf"{_SCHEME}(?P<userinfo>{_USERINFO})@")
_SECRET_QUERY_KEY = re.compile(r"(?i)pass|secret|token|key")


def _replace(match: re.Match[str]) -> str:
    kept = match["scheme"] or match["header"] or match["auth"] or match["label"] or ""
    return kept + REDACTED + ("@" if match["scheme"] else "")


def secret_forms(value: str) -> set[str]:
    """Return a secret and, for a URL, its password, plain and %-encoded."""
    forms = {value}
    found = _CREDENTIALS.match(value)
    # A user name alone (postgres@db) is no secret; inside a URL the pattern hides it.
    password = found["userinfo"].partition(":")[2] if found else ""
    if password:
        forms |= {password, unquote(password), quote(unquote(password), safe="")}
    query = value.partition("?")[2].partition("#")[0]
    for key, item in parse_qsl(query):
        if _SECRET_QUERY_KEY.search(key):
            forms |= {item, quote(item, safe="")}
    return {form for form in forms if form}


class Redactor:
    """Replaces secrets in text with `[redacted]` and keeps the rest readable."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {form for secret in secrets for form in secret_forms(secret)}
        # Longest first: a URL goes whole before the password inside it is looked for.
        kept = sorted(
            (form for form in forms if len(form) >= MIN_SECRET_LENGTH),
            key=lambda form: (-len(form), form),
        )
        self._values = re.compile("|".join(map(re.escape, kept))) if kept else None

    @classmethod
    def from_config(cls, config: RollbotConfig, environ: Mapping[str, str]) -> Redactor:
        """Build a redactor for the value of every secret variable the config names."""
        names = [*OWN_SECRETS, *(variable for _, variable in config.secret_variables())]
        return cls(environ[name] for name in names if environ.get(name))

    def redact(self, text: str) -> str:
        """Return text with every secret replaced."""
        if self._values is not None:
            text = self._values.sub(REDACTED, text)
        lowered = text.lower()
        if not any(needed in lowered for needed in _NEEDED):
            return text
        return _PATTERNS.sub(_replace, text)


_current = Redactor()


def current() -> Redactor:
    """Return the process-wide redactor."""
    return _current


def use(redactor: Redactor) -> None:
    """Make a redactor the process-wide one."""
    global _current
    _current = redactor


def install(config: RollbotConfig, environ: Mapping[str, str]) -> Redactor:
    """Make the config-aware redactor the process-wide one and return it."""
    use(Redactor.from_config(config, environ))
    return _current


def redact(text: str) -> str:
    """Replace secrets in text with the process-wide redactor."""
    return _current.redact(text)
