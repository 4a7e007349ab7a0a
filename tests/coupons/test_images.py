"""Image sizes read from file headers, before any pixel is decoded."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.coupons.images import ImageFileError, check_size, image_size, load_image


@pytest.mark.parametrize(
    ("ext", "params", "gray"),
    [
        (".png", [], False),
        (".jpg", [], False),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], False),
        (".bmp", [], False),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], False),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], False),  # lossless (VP8L)
        (".ppm", [], False),
        (".pgm", [], True),
    ],
)
def test_the_size_is_read_from_the_header_of_each_format(ext: str, params: list[int], gray: bool) -> None:
    image = np.zeros((37, 53) if gray else (37, 53, 3), np.uint8)
    ok, data = cv2.imencode(ext, image, params)
    assert ok
    assert image_size(io.BytesIO(data.tobytes())) == (53, 37)


def test_a_jpeg_frame_header_after_a_large_metadata_segment_is_found() -> None:
    _, data = cv2.imencode(".jpg", np.zeros((20, 30, 3), np.uint8))
    raw = data.tobytes()
    app1 = b"\xff\xe1" + struct.pack(">H", 60_002) + b"x" * 60_000
    assert image_size(io.BytesIO(raw[:2] + app1 + raw[2:])) == (30, 20)


def test_a_pnm_header_with_a_comment_is_read() -> None:
    assert image_size(io.BytesIO(b"P5\n# made by hand\n640 480\n255\n")) == (640, 480)


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a....", b"\xff\xd8\xff\xd9", b"\xff\xd8\xff\xe0\x00", b"P5 12x 4", b"RIFF\x00\x00\x00\x00WEBPVP8Q"],
)
def test_unknown_or_corrupt_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ImageFileError):
        image_size(io.BytesIO(data + b"\x00" * 8))


@pytest.mark.parametrize(
    ("size", "outcome"),
    [
        ((8192, 4000), None),
        ((8193, 10), "per side"),
        ((10, 8193), "per side"),
        ((8000, 5001), "pixels"),
        ((0, 5), "empty"),
    ],
)
def test_size_limits(size: tuple[int, int], outcome: str | None) -> None:
    if outcome is None:
        check_size(*size)
    else:
        with pytest.raises(ImageFileError, match=outcome):
            check_size(*size)


def test_load_image_decodes_a_file_within_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "frame.bmp"
    cv2.imwrite(str(path), np.full((12, 34, 3), 200, np.uint8))
    image = load_image(path)
    assert image.shape == (12, 34, 3)
