"""Shared fixtures: the sample clip and the YOLOX-Nano export, and the CI rule on skipped tests.

Large inputs are not part of the repository. They are looked for in the shared folder beside the
checkout: ``$RETAIL_SHARED`` when it is set (and then only there), else ``../shared``.

- The sample clip (``vtest.avi``) is found the way ``retail-agent demo`` finds it: in this machine's
  test cache (``$XDG_CACHE_HOME/retail-agent/sample``, else ``~/.cache/retail-agent/sample``), in an
  installed ``opencv-doc``, in the shared folder, or else unpacked once per machine from Debian's
  ``opencv-doc`` package with ``apt-get download`` (no root needed). A fresh clone therefore runs
  every test that needs it; ``RETAIL_SHARED=/nonexistent`` simulates a machine without ../shared.
- The YOLOX-Nano export (``models/yolox_nano.onnx`` in the shared folder) cannot be fetched by the
  tests; the tests that need it skip without it, saying so.

With ``CI=true`` a run in which any other test skipped fails, listing those tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import pytest

from agent.sample import SampleUnavailable, find_sample, shared_dir

REPO = Path(__file__).resolve().parents[1]
YOLOX_SKIP = "needs the YOLOX-Nano export"


def sample_cache_dir() -> Path:
    """Where the tests keep the sample clip once fetched: the user's cache, outside any checkout."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "retail-agent" / "sample"


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    """The 795-frame pedestrian clip (768x576, 10 fps)."""
    try:
        return find_sample(sample_cache_dir())
    except SampleUnavailable as exc:
        pytest.skip(f"the sample clip is not on this machine and could not be fetched: {exc}")


@pytest.fixture(scope="session")
def yolox_path() -> Path:
    """A YOLOX-Nano ONNX export (1x3x416x416 in, 1x3549x85 out)."""
    path = shared_dir() / "models" / "yolox_nano.onnx"
    if not path.is_file():
        pytest.skip(
            f"{YOLOX_SKIP} (yolox_nano.onnx), which is not part of the repository: "
            f"{path} is not on this machine (set RETAIL_SHARED to the folder holding models/yolox_nano.onnx)"
        )
    return path


@pytest.fixture(scope="session")
def vtest_clip(vtest_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """Make (once per length) a clip of the sample's first ``frames`` frames, at its native 10 fps."""
    made: dict[int, Path] = {}

    def clip(frames: int) -> Path:
        if frames not in made:
            out = tmp_path_factory.mktemp("clip") / f"first-{frames}.avi"
            capture = cv2.VideoCapture(str(vtest_path))
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
            for _ in range(frames):
                ok, image = capture.read()
                assert ok, f"the sample clip has fewer than {frames} frames"
                writer.write(image)
            writer.release()
            capture.release()
            made[frames] = out
        return made[frames]

    return clip


# --------------------------------------------------------------------- CI: no unexpected skips


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def unexpected_skips(reports: Iterable[pytest.TestReport | pytest.CollectReport]) -> list[str]:
    """``nodeid: reason`` of every skip that is not for want of the YOLOX-Nano export."""
    return [
        f"{report.nodeid}: {reason}"
        for report in reports
        if report.skipped and YOLOX_SKIP not in (reason := _skip_reason(report))
    ]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _session_skips(config: pytest.Config) -> list[str]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return unexpected_skips(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _in_ci() and exitstatus == pytest.ExitCode.OK and _session_skips(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    skips = _session_skips(config) if _in_ci() else []
    if skips:
        terminalreporter.section("skipped tests fail the run in CI", sep="=", red=True, bold=True)
        terminalreporter.line(
            "With CI=true only tests that need the YOLOX-Nano export may skip; these skipped too:", red=True
        )
        for line in skips:
            terminalreporter.line(f"  {line}", red=True)
