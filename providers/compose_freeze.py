"""Freeze on Compose: pin the good image in the file a later `docker compose up` reads.

Compose merges the files given with `-f` (or `COMPOSE_FILE`; by default `compose.yaml`
then `compose.override.yaml`) in order, a later file's `image:` replacing an earlier one's;
and it interpolates `${VAR}` from the project's `.env`. So a freeze either sets
`services.<service>.image` in an override file or sets the pin variable in the env file.

A freeze changes one span of the file (a line replaced or a block inserted) and records
only that span and the digests of the whole file before and after: the rest of the file
(which may hold secrets) never leaves it, and unfreezing puts the span back only when the
file is still exactly what the freeze wrote.
"""

from __future__ import annotations

import errno
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from providers.base import Refused
from providers.capabilities import FreezeRecord
from providers.compose_files import write_atomically

ENV_KIND = "env file"
OVERRIDE_KIND = "compose override"
_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)


@dataclass(frozen=True)
class Splice:
    """One span of a file: `previous` at `start` becomes `written`."""

    start: int
    previous: str
    written: str

    def apply(self, text: str) -> str:
        return text[: self.start] + self.written + text[self.start + len(self.previous) :]

    def undo(self, text: str) -> str:
        return text[: self.start] + self.previous + text[self.start + len(self.written) :]


def freeze_env(path: Path, variable: str, service: str, bad: str, good: str) -> FreezeRecord:
    """Set `variable=good` in the env file the compose file reads its tag from."""
    text, existed = _read(path)
    pattern = re.compile(
        rf"^([ \t]*(?:export[ \t]+)?){re.escape(variable)}[ \t]*=[^\r\n]*", re.MULTILINE
    )
    matches = list(pattern.finditer(text))
    if matches:
        # Compose reads the last assignment, so that is the one that decides.
        last = matches[-1]
        splice = Splice(last.start(), last.group(0), f"{last.group(1)}{variable}={good}")
    else:
        newline = _newline(text)
        lead = newline if text and not text.endswith(("\n", "\r")) else ""
        splice = Splice(len(text), "", f"{lead}{variable}={good}{newline}")
    action = f"pinned {variable}={good} for {service} in {path}"
    return _commit(path, text, existed, splice, ENV_KIND, action, bad, good)


def freeze_override(path: Path, service: str, image: str, bad: str, good: str) -> FreezeRecord:
    """Set `services.<service>.image: image` in a compose override file, creating it if absent."""
    text, existed = _read(path)
    if not existed:
        splice = Splice(0, "", _created_text(service, image, bad, good))
    else:
        splice = _image_splice(text, service, image)
        if _image_of(splice.apply(text), service) != image:
            raise Refused(
                f"Could not pin the image in {path}: its YAML is not in block style the bot "
                f"can edit safely. Set `services.{service}.image: {image}` there by hand."
            )
    action = f"pinned `image: {image}` for {service} in {path}"
    return _commit(path, text, existed, splice, OVERRIDE_KIND, action, bad, good)


def unfreeze_file(record: FreezeRecord, service: str) -> str:
    """Put back the span the freeze changed, or remove the file it created; fail closed."""
    saved = record.saved
    if not saved:
        return "nothing to restore: the freeze only watched"
    path = Path(saved["file"])
    text, exists = _read(path)
    created = saved["created"] == "yes"
    if not exists:
        if created:
            return f"nothing to restore: {path} is already gone"
        raise Refused(
            f"{path} was removed since the freeze; nothing was restored. "
            f"Check the file and set {service}'s image by hand."
        )
    if _digest(text) != saved["after_sha256"]:
        raise Refused(
            f"{path} changed since the freeze; nothing was restored, so the change stays. "
            f"Check the file and set {service}'s image by hand."
        )
    if saved["before_sha256"] == saved["after_sha256"]:
        return f"nothing to restore: the freeze found {path} already pinned and left it"
    if created:
        _write(path, None)
        return f"removed {path}, which the freeze had created"
    splice = Splice(int(saved["start"]), saved["previous"], saved["written"])
    restored = splice.undo(text)
    if _digest(restored) != saved["before_sha256"]:
        raise Refused(f"{path} could not be put back exactly; nothing was restored.")
    _write(path, restored)
    what = saved["previous"].strip() or "without the pin"
    return f"restored {path} as it was before the freeze ({what})"


def _commit(
    path: Path,
    text: str,
    existed: bool,
    splice: Splice,
    kind: str,
    action: str,
    bad: str,
    good: str,
) -> FreezeRecord:
    """Write the splice unless the file already holds it; return what to restore."""
    after = splice.apply(text)
    created = not existed
    if existed and after == text:
        if text == _created_text_for(text):
            # A file this freeze wrote itself: the same record as the first freeze's.
            created, splice = True, Splice(0, "", text)
            text = ""
        else:
            splice = Splice(splice.start, splice.written, splice.written)
    else:
        _write(path, after)
    saved = {
        "file": str(path),
        "kind": kind,
        "created": "yes" if created else "no",
        "start": str(splice.start),
        "previous": splice.previous,
        "written": splice.written,
        "before_sha256": _digest("" if created else text),
        "after_sha256": _digest(after),
        "bad": bad,
        "good": good,
    }
    return FreezeRecord(action=action, saved=saved)


_HEADER = "# rollbot: {service} frozen on {good} after a rollback from {bad}; "
_HEADER_TAIL = "`/rollback unfreeze` removes this file.\n"


def _created_text(service: str, image: str, bad: str, good: str) -> str:
    header = _HEADER.format(service=service, good=good, bad=bad) + _HEADER_TAIL
    return f"{header}services:\n  {service}:\n    image: {image}\n"


def _created_text_for(text: str) -> str | None:
    """Return `text` when it is exactly a file a freeze creates, else None."""
    match = re.fullmatch(
        r"# rollbot: (\S+) frozen on (\S+) after a rollback from (\S+); "
        r"`/rollback unfreeze` removes this file\.\nservices:\n  \S+:\n    image: (\S+)\n",
        text,
    )
    if match is None:
        return None
    service, good, bad, image = match.groups()
    candidate = _created_text(service, image, bad, good)
    return candidate if candidate == text else None


def _image_splice(text: str, service: str, image: str) -> Splice:
    """Find where `services.<service>.image` is, or where it goes, in block-style YAML."""
    newline = _newline(text)
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    top = _find(lines, 0, len(lines), 0, "services")
    if top is None:
        lead = newline if text and not text.endswith(("\n", "\r")) else ""
        block = f"{lead}services:{newline}  {service}:{newline}    image: {image}{newline}"
        return Splice(len(text), "", block)
    end = _block_end(lines, top, 0)
    step = _child_indent(lines, top, end) or 2
    entry = _find(lines, top + 1, end, step, service)
    if entry is None:
        block = f"{' ' * step}{service}:{newline}{' ' * 2 * step}image: {image}{newline}"
        return Splice(offsets[top + 1], "", _after_line(lines[top], newline) + block)
    entry_end = _block_end(lines, entry, step)
    inner = _child_indent(lines, entry, entry_end) or 2 * step
    found = _find(lines, entry + 1, entry_end, inner, "image")
    if found is None:
        block = f"{' ' * inner}image: {image}{newline}"
        return Splice(offsets[entry + 1], "", _after_line(lines[entry], newline) + block)
    line = lines[found].rstrip("\r\n")
    value = re.match(r"[ \t]*image[ \t]*:[ \t]*", line)
    assert value is not None
    body = line[value.end() :]
    comment = re.search(r"[ \t]+#.*$", body)
    old = body[: comment.start()] if comment else body
    return Splice(offsets[found] + value.end(), old, image)


def _after_line(line: str, newline: str) -> str:
    """Return the line break a last line without one needs before an inserted block."""
    return "" if line.endswith(("\n", "\r")) else newline


def _find(lines: list[str], start: int, end: int, indent: int, key: str) -> int | None:
    pattern = re.compile(rf"^ {{{indent}}}{re.escape(key)}[ \t]*:(?:[ \t]|$|\r?\n)")
    for index in range(start, end):
        if pattern.match(lines[index]):
            return index
    return None


def _block_end(lines: list[str], head: int, indent: int) -> int:
    """Return the index after the last line indented deeper than the `head` key."""
    for index in range(head + 1, len(lines)):
        stripped = lines[index].strip()
        if stripped and not stripped.startswith("#") and _indent(lines[index]) <= indent:
            return index
    return len(lines)


def _child_indent(lines: list[str], head: int, end: int) -> int | None:
    for index in range(head + 1, end):
        stripped = lines[index].strip()
        if stripped and not stripped.startswith("#"):
            return _indent(lines[index])
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _image_of(text: str, service: str) -> str | None:
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    services = document.get("services") if isinstance(document, dict) else None
    entry = services.get(service) if isinstance(services, dict) else None
    image = entry.get("image") if isinstance(entry, dict) else None
    return str(image) if image is not None else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read(path: Path) -> tuple[str, bool]:
    """Return the file's text exactly (newlines untouched) and whether it exists."""
    try:
        with path.open(newline="") as handle:
            return handle.read(), True
    except FileNotFoundError:
        return "", False
    except OSError as exc:
        raise _refusal(path, exc, "read") from exc


def _write(path: Path, text: str | None) -> None:
    """Replace the file atomically, or remove it when `text` is None."""
    try:
        if text is None:
            path.unlink(missing_ok=True)
        else:
            write_atomically(path, text)
    except OSError as exc:
        raise _refusal(path, exc, "write") from exc


def _refusal(path: Path, exc: OSError, verb: str) -> Refused:
    reason = exc.strerror or type(exc).__name__
    if exc.errno in _PERMISSION:
        if verb == "read":
            need = f"read permission on {path}"
        else:
            need = (
                f"write permission on {path.parent} (the file is replaced through a "
                "temporary file there)"
            )
        return Refused(
            f"Could not {verb} {path}: the bot's user needs {need}. Nothing was changed ({reason})."
        )
    return Refused(f"Could not {verb} {path} ({reason}). Nothing was changed.")
