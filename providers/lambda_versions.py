"""A Lambda function's published versions, the alias that points at one, and their names.

Versions are named by their number (`5`). A version also answers to its description when
that names no other listed version: the whole description when it is one word
(`v1.2.3`), and each release-like word in a longer one (`v1.2.3` in "v1.2.3 hotfix").
`previous` names the previous stable version. A name that fits several versions names
none of them: `resolve` refuses it and lists which versions it fits.

An alias that splits traffic (`RoutingConfig.AdditionalVersionWeights`) runs several
versions at once; it is named by them, primary first (`7+8`), and its previous stable
version is the oldest one it sends traffic to: a rollback sends 100 % there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from providers.base import NotFound, Refused

Json = dict[str, Any]

PREVIOUS = "previous"
# One word a person would type as a version (the bot accepts no other).
WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
RELEASE = re.compile(r"(?<![\w.])v?\d+(?:\.\d+)+(?:[-+][A-Za-z0-9_.]+)?(?![\w.])")


@dataclass(frozen=True)
class FunctionVersion:
    """One published version of the function, as ListVersionsByFunction describes it."""

    number: int
    description: str
    code_sha256: str
    last_modified: datetime | None
    # The version's configuration holds environment values: kept out of repr and logs.
    config: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, config: Json) -> FunctionVersion:
        """Read one FunctionConfiguration of a published version."""
        return cls(
            number=int(config["Version"]),
            description=str(config.get("Description") or "").strip(),
            code_sha256=str(config.get("CodeSha256") or ""),
            last_modified=parse_time(config.get("LastModified")),
            config=config,
        )

    def words(self) -> set[str]:
        """The names in its description a person may call it by."""
        text = self.description
        found = set(RELEASE.findall(text))
        if WORD.fullmatch(text):
            found.add(text)
        return {w for w in found if not w.isdigit() and w != PREVIOUS}


@dataclass(frozen=True)
class Alias:
    """Where an alias points: its version, the weights it gives others, its RevisionId."""

    name: str
    version: str
    weights: dict[str, float]
    revision_id: str

    @classmethod
    def of(cls, answer: Json) -> Alias:
        """Read a GetAlias answer."""
        routing = answer.get("RoutingConfig") or {}
        weights = routing.get("AdditionalVersionWeights") or {}
        return cls(
            name=str(answer.get("Name") or ""),
            version=str(answer.get("FunctionVersion") or ""),
            weights={str(v): float(w) for v, w in weights.items() if float(w) > 0},
            revision_id=str(answer.get("RevisionId") or ""),
        )

    @property
    def split(self) -> bool:
        """Return True when it sends part of the traffic to other versions."""
        return bool(self.weights)

    @property
    def running(self) -> str:
        """Name what it runs: `7`, or `7+8` while it splits traffic."""
        return "+".join([self.version, *sorted(self.weights, key=_order)])

    def shares(self) -> list[tuple[str, float]]:
        """Each version it sends traffic to with its percentage, primary first."""
        primary = 100.0 - sum(w * 100 for w in self.weights.values())
        others = [(v, w * 100) for v, w in sorted(self.weights.items(), key=lambda i: _order(i[0]))]
        return [(self.version, primary), *others]

    def traffic(self) -> str:
        """Say where its traffic goes: `version 7 (90 %), version 8 (10 %)`."""
        return ", ".join(f"version {v} ({percent(p)})" for v, p in self.shares())


@dataclass
class Catalog:
    """The alias, and the function's published versions (newest first)."""

    function: str
    alias: Alias
    versions: list[FunctionVersion]

    def find(self, number: str) -> FunctionVersion | None:
        """Return the listed version with this number."""
        return next((v for v in self.versions if str(v.number) == number), None)

    def previous(self) -> FunctionVersion | None:
        """Return the version a plain rollback goes to (see the module's docstring)."""
        alias = self.alias
        if alias.split:
            oldest = min((v for v, _ in alias.shares()), key=_order)
            return self.find(oldest)
        current = int(alias.version) if alias.version.isdigit() else None
        older = [v for v in self.versions if current is None or v.number < current]
        return older[0] if older else None

    def names(self) -> dict[str, list[int]]:
        """Map each description word to the version numbers it fits."""
        found: dict[str, list[int]] = {}
        for version in self.versions:
            for word in version.words():
                found.setdefault(word, []).append(version.number)
        return found

    def aliases_of(self, version: FunctionVersion) -> tuple[str, ...]:
        """The names besides its number that mean this version and no other."""
        words = sorted(w for w, numbers in self.names().items() if numbers == [version.number])
        previous = self.previous()
        if previous is not None and previous.number == version.number:
            words.append(PREVIOUS)
        return tuple(words)

    def resolve(self, target: str) -> FunctionVersion:
        """Find the version a number, `previous` or a description word means."""
        if target == PREVIOUS:
            found = self.previous()
            if found is None:
                raise NotFound(
                    f"`{self.function}` has no published version older than what alias "
                    f"`{self.alias.name}` runs ({self.alias.running})."
                )
            return found
        if target.isdigit():
            found = self.find(str(int(target)))
            if found is None:
                raise NotFound(f"`{self.function}` has no version {target} ({self.listing()}).")
            return found
        matching = [v for v in self.versions if target in v.words()]
        if len(matching) > 1:
            which = ", ".join(self.label(v) for v in matching)
            raise Refused(
                f"`{target}` is in the description of {len(matching)} versions of "
                f"`{self.function}` ({which}): name one by its number."
            )
        if not matching:
            raise NotFound(
                f"No published version of `{self.function}` is `{target}` ({self.listing()})."
            )
        return matching[0]

    def label(self, version: FunctionVersion) -> str:
        """Name a version for people: `version 5 ("v1.2.3")`."""
        return (
            f'version {version.number} ("{version.description}")'
            if version.description
            else (f"version {version.number}")
        )

    def listing(self) -> str:
        """List the versions one may name, newest first (at most ten)."""
        shown = ", ".join(self.label(v) for v in self.versions[:10])
        return f"available: {shown or 'none'}"


def parse_time(value: Any) -> datetime | None:
    """Read Lambda's LastModified (`2024-03-01T10:00:00.000+0000`)."""
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            return None


def percent(share: float) -> str:
    """Say a share of traffic: `10 %`, `2.5 %`."""
    return f"{round(share, 2):g} %"


def _order(version: str) -> int:
    return int(version) if version.isdigit() else 1 << 62
