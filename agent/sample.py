"""The sample clip the demo runs on, found on this machine or unpacked from Debian's opencv-doc."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

SAMPLE_NAME = "vtest.avi"
DEBIAN_PATH = Path("/usr/share/doc/opencv-doc/examples/data") / SAMPLE_NAME
REPO = Path(__file__).resolve().parents[1]


class SampleUnavailable(RuntimeError):
    """The sample clip is not on this machine and could not be fetched."""


def shared_dir() -> Path:
    """The folder of large inputs kept beside a checkout: ``$RETAIL_SHARED`` when set, else ../shared."""
    return Path(os.environ.get("RETAIL_SHARED") or REPO.parent / "shared")


def candidates(cache_dir: Path) -> list[Path]:
    """Where the clip may already be, in order of preference."""
    return [cache_dir / SAMPLE_NAME, DEBIAN_PATH, shared_dir() / "data" / SAMPLE_NAME]


def find_sample(cache_dir: Path, fetch: bool = True) -> Path:
    """Return the sample clip, unpacking it from ``apt-get download opencv-doc`` when it is missing."""
    for path in candidates(cache_dir):
        if path.is_file():
            return path
    if not fetch:
        raise SampleUnavailable(f"{SAMPLE_NAME} not found in {', '.join(map(str, candidates(cache_dir)))}")
    return _fetch_from_debian(cache_dir)


def _fetch_from_debian(cache_dir: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SampleUnavailable("the sample clip is missing and apt-get/dpkg-deb are not available to fetch it")
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("fetching the sample clip from Debian's opencv-doc package")
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        work = Path(tmp)
        try:
            subprocess.run(
                ["apt-get", "download", "opencv-doc"], cwd=work, check=True, capture_output=True, timeout=600
            )
            package = next(work.glob("opencv-doc_*.deb"))
            subprocess.run(
                ["dpkg-deb", "-x", str(package), str(work / "root")],
                check=True,
                capture_output=True,
                timeout=600,
            )
        except (subprocess.SubprocessError, StopIteration, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            raise SampleUnavailable(
                f"could not fetch opencv-doc ({exc}; {detail.decode(errors='replace').strip()[:200]}); "
                "pass a video file with --video"
            ) from None
        found = work / "root" / DEBIAN_PATH.relative_to("/")
        if not found.is_file():
            raise SampleUnavailable(f"opencv-doc did not contain {DEBIAN_PATH}")
        target = cache_dir / SAMPLE_NAME
        os.replace(found, target)
    return target
