"""Base45 (RFC 9285): bytes as text in the QR alphanumeric character set."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
"""The 45 characters of QR alphanumeric mode, in base45 value order."""

_VALUES = {char: value for value, char in enumerate(ALPHABET)}


class Base45Error(ValueError):
    """The text is not valid base45."""


def encode(data: bytes) -> str:
    """Encode bytes: each pair becomes three characters, a final single byte two."""
    out: list[str] = []
    for start in range(0, len(data) - 1, 2):
        value = data[start] * 256 + data[start + 1]
        high, rest = divmod(value, 45 * 45)
        middle, low = divmod(rest, 45)
        out += (ALPHABET[low], ALPHABET[middle], ALPHABET[high])
    if len(data) % 2:
        middle, low = divmod(data[-1], 45)
        out += (ALPHABET[low], ALPHABET[middle])
    return "".join(out)


def decode(text: str) -> bytes:
    """Decode base45 text; raise Base45Error on a bad character, length or group value."""
    if len(text) % 3 == 1:
        raise Base45Error(f"a base45 text cannot have {len(text)} characters (a lone final character)")
    try:
        values = [_VALUES[char] for char in text]
    except KeyError as error:
        raise Base45Error(f"{error.args[0]!r} is not a base45 character") from None
    out = bytearray()
    for start in range(0, len(values) - 2, 3):
        low, middle, high = values[start : start + 3]
        value = low + middle * 45 + high * 45 * 45
        if value > 0xFFFF:
            raise Base45Error(f"group {text[start : start + 3]!r} is {value}, more than two bytes can hold")
        out += value.to_bytes(2, "big")
    if len(values) % 3 == 2:
        value = values[-2] + values[-1] * 45
        if value > 0xFF:
            raise Base45Error(f"final pair {text[-2:]!r} is {value}, more than one byte can hold")
        out.append(value)
    return bytes(out)
