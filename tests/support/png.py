"""Reading a PNG as a Slack client would before showing it: its signature and its size."""

from __future__ import annotations

import struct

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Return (width, height) from the IHDR chunk, which a valid PNG has first."""
    assert data.startswith(SIGNATURE), data[:16]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, (kind, length)
    width, height = struct.unpack(">II", data[16:24])
    return width, height
