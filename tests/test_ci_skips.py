"""With CI=true the suite fails when a test skips for any reason but a missing YOLOX-Nano export."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

SAMPLE_TESTS = """
import pytest

def test_runs():
    pass

def test_without_the_export(yolox_path):
    pass

def test_skipped_for_another_reason():
    pytest.skip("mosquitto is not installed on this machine")
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A small suite under the project's conftest, on a machine without the YOLOX-Nano export."""
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE_TESTS, encoding="utf-8")
    return tmp_path


def _pytest(suite: Path, ci: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["RETAIL_SHARED"] = str(suite / "no-shared-folder")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args, str(suite)],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_in_ci_a_skip_for_another_reason_fails_the_run_and_is_named(suite: Path) -> None:
    done = _pytest(suite, "true")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    assert "1 passed, 2 skipped" in done.stdout
    report = done.stdout.split("skipped tests fail the run in CI", 1)[1]
    assert "test_sample.py::test_skipped_for_another_reason: mosquitto is not installed" in report
    assert "test_without_the_export" not in report


def test_in_ci_a_missing_yolox_export_may_skip(suite: Path) -> None:
    done = _pytest(suite, "true", "-k", "not another_reason")
    assert done.returncode == pytest.ExitCode.OK, done.stdout
    assert "1 passed, 1 skipped" in done.stdout
    assert "fail the run in CI" not in done.stdout


def test_outside_ci_skips_do_not_fail_the_run(suite: Path) -> None:
    done = _pytest(suite, None)
    assert done.returncode == pytest.ExitCode.OK, done.stdout
    assert "1 passed, 2 skipped" in done.stdout
