"""``retail-agent scan`` on hostile image files: each bad file is reported, the others still scan."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import segno


def _png(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A gray 8-bit PNG; ``rows`` are the raw scanlines (default: none, for a header-only file)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", rows) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def _bomb(width: int, height: int) -> bytes:
    """A white gray PNG of width x height that compresses to well under a megabyte."""
    packer = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * width
    parts = [packer.compress(row) for _ in range(height)]
    return _png(width, height, b"".join(parts) + packer.flush())


@pytest.fixture
def code_png(tmp_path: Path) -> Path:
    path = tmp_path / "code.png"
    segno.make_qr("HELLO-SCAN", error="m").save(str(path), scale=8, border=4)
    return path


def scan(*files: Path) -> tuple[int, dict, str]:
    """Run the command: its exit code, its JSON and its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "agent", "scan", *map(str, files), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def scan_with_peak_memory(*files: Path) -> tuple[int, dict, float]:
    """Run the command: its exit code, its JSON and the peak memory of its process in MB."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child runs the command with its stdout on the pipe
        os.close(read)
        os.dup2(write, 1)
        os.execv(sys.executable, [sys.executable, "-m", "agent", "scan", *map(str, files), "--json"])
    os.close(write)
    with os.fdopen(read) as pipe:
        out = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), json.loads(out), usage.ru_maxrss / 1024


def test_a_valid_code_scans_with_exit_0(code_png: Path) -> None:
    code, report, err = scan(code_png)
    assert code == 0, err
    assert report["results"][0]["codes"] == ["HELLO-SCAN"]


def test_bad_files_are_reported_in_the_json_and_the_others_still_scan(tmp_path: Path, code_png: Path) -> None:
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.full((1, 100_000), 255, np.uint8))
    huge_claim = tmp_path / "claim.png"
    huge_claim.write_bytes(_png(40_000, 40_000, zlib.compress(b"\x00" * 100)))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    absent = tmp_path / "absent.png"
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(code_png.read_bytes()[:200])
    files = (wide, code_png, huge_claim, junk, absent, truncated)

    code, report, err = scan(*files)

    assert code == 2
    assert "Traceback" not in err
    results = report["results"]
    assert [item["file"] for item in results] == [str(f) for f in files]
    assert results[1]["codes"] == ["HELLO-SCAN"]
    errors = {Path(item["file"]).name: item.get("error", "") for item in results}
    assert "100000x1 px is over the limit of 8192 px per side" in errors["wide.png"]
    assert "40000x40000 px is over the limit" in errors["claim.png"]
    assert "not a PNG, JPEG, BMP, WebP or PNM image" in errors["junk.png"]
    assert "No such file" in errors["absent.png"]
    assert "cannot decode" in errors["truncated.png"]


def test_too_many_pixels_within_the_side_limit_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(_png(8000, 8000, zlib.compress(b"\x00" * 100)))
    code, report, _ = scan(big)
    assert code == 2
    assert "over the limit of 40,000,000 pixels" in report["results"][0]["error"]


def test_a_png_bomb_is_refused_before_it_is_decoded(tmp_path: Path, code_png: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bomb(20_000, 20_000))
    assert bomb.stat().st_size < 1_000_000
    _, _, baseline_mb = scan_with_peak_memory(code_png)
    code, report, peak_mb = scan_with_peak_memory(bomb, code_png)
    assert code == 2
    assert "20000x20000 px is over the limit" in report["results"][0]["error"]
    assert report["results"][1]["codes"] == ["HELLO-SCAN"]
    # Decoded, the bomb would take 400 MB in grey and 1.2 GB in colour; refused from its
    # header it costs nothing over scanning the small code alone, measured in the same run.
    assert peak_mb - baseline_mb < 100, f"peak {peak_mb:.0f} MB against {baseline_mb:.0f} MB without the bomb"
