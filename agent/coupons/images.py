"""Coupon images from files, for ``retail-agent scan``: the size is checked before any decoding.

The width and height are read from the file's header (PNG, JPEG, BMP, WebP, PNM), a few bytes,
and an image over :data:`MAX_SIDE` pixels per side or :data:`MAX_PIXELS` in all is refused
before OpenCV allocates anything: a small file can claim a huge image (a decompression bomb).
Other formats are refused, since their size could not be checked first.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

logger = logging.getLogger(__name__)

MAX_SIDE = 8192
MAX_PIXELS = 40_000_000
FORMATS = "PNG, JPEG, BMP, WebP or PNM"


class ImageFileError(ValueError):
    """An image file that is not read: unreadable, of an unknown format, too large or corrupt."""


def load_image(path: Path) -> np.ndarray:
    """The BGR pixels of an image file whose header shows it within the size limits."""
    try:
        with path.open("rb") as file:
            width, height = image_size(file)
    except OSError as exc:
        raise ImageFileError(f"cannot read the file: {exc.strerror or exc}") from None
    check_size(width, height)
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageFileError(f"cannot decode the image: {str(exc).strip().splitlines()[-1]}") from None
    if image is None:
        raise ImageFileError("cannot decode the image (corrupt or truncated)")
    return image


def check_size(width: int, height: int) -> None:
    """Refuse an image over the limits, naming its size."""
    if width < 1 or height < 1:
        raise ImageFileError(f"the header claims an empty image ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageFileError(f"image of {width}x{height} px is over the limit of {MAX_SIDE} px per side")
    if width * height > MAX_PIXELS:
        raise ImageFileError(f"image of {width}x{height} px is over the limit of {MAX_PIXELS:,} pixels")


def image_size(file: BinaryIO) -> tuple[int, int]:
    """``(width, height)`` from the header of a PNG, JPEG, BMP, WebP or PNM file."""
    head = file.read(32)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(file)
    if head.startswith(b"BM") and len(head) >= 26:
        return _bmp_size(head)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    if len(head) >= 2 and head[0:1] == b"P" and head[1:2] in b"123456":
        file.seek(2)
        return _pnm_size(file)
    raise ImageFileError(f"not a {FORMATS} image")


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""JPEG start-of-frame markers (DHT, JPG and DAC share the range but are not frames)."""


def _jpeg_size(file: BinaryIO) -> tuple[int, int]:
    file.seek(2)
    while True:
        marker = file.read(2)
        while marker[:1] == b"\xff" and marker[1:2] == b"\xff":  # fill bytes
            marker = marker[1:] + file.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            raise ImageFileError("corrupt JPEG: no frame header")
        kind = marker[1]
        if kind == 0x01 or 0xD0 <= kind <= 0xD7:  # markers without a length
            continue
        if kind in (0xD9, 0xDA):
            raise ImageFileError("corrupt JPEG: no frame header before the image data")
        length_bytes = file.read(2)
        if len(length_bytes) < 2:
            raise ImageFileError("corrupt JPEG: truncated header")
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            raise ImageFileError("corrupt JPEG: bad segment length")
        if kind in _SOF:
            frame = file.read(5)
            if len(frame) < 5:
                raise ImageFileError("corrupt JPEG: truncated frame header")
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        file.seek(length - 2, 1)


def _bmp_size(head: bytes) -> tuple[int, int]:
    (header_size,) = struct.unpack("<I", head[14:18])
    if header_size == 12:
        width, height = struct.unpack("<HH", head[18:22])
        return width, height
    width, height = struct.unpack("<ii", head[18:26])
    return width, abs(height)  # a negative height stores rows top-down


def _webp_size(head: bytes) -> tuple[int, int]:
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise ImageFileError("corrupt WebP: unknown header")


def _pnm_size(file: BinaryIO) -> tuple[int, int]:
    numbers: list[int] = []
    token = b""
    while len(numbers) < 2:
        byte = file.read(1)
        if byte == b"#":
            file.readline()
            byte = b" "
        if byte.isdigit():
            token += byte
            if len(token) > 9:
                raise ImageFileError("corrupt PNM: size out of range")
        elif byte and byte.isspace() and token:
            numbers.append(int(token))
            token = b""
        elif not byte or not byte.isspace():
            raise ImageFileError("corrupt PNM: bad header")
    return numbers[0], numbers[1]
