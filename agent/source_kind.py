"""How a configured video source is read: a USB camera index, a stream URL or a file path.

Pure string rules, shared by the config (which checks that a file source exists) and
``agent.vision.source`` (which opens it), so both always agree on what a value means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

SourceKind = Literal["file", "url", "usb"]
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")


def classify_source(value: str | int | Path) -> tuple[SourceKind, str | int]:
    """``(kind, value)``: an int or a string of digits is a USB index, a string starting with a
    stream scheme (``rtsp://``, ``rtsps://``, ``http://``, ``https://``) is a URL, anything else a
    file path (surrounding blanks removed). Raises ValueError for a bool, a negative index or an
    empty string."""
    if isinstance(value, bool):
        raise ValueError(f"not a video source: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"USB camera index must be >= 0, got {value}")
        return "usb", value
    text = str(value).strip()
    if not text:
        raise ValueError("empty video source")
    if text.isascii() and text.isdigit():
        return "usb", int(text)
    scheme, sep, _ = text.partition("://")
    if sep and scheme.lower() in URL_SCHEMES:
        return "url", text
    return "file", text
