"""What keeps `retail-agent run` small: one malloc arena, and no SciPy in the agent's imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.runtime.memory import limit_malloc_arenas


def test_the_environment_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_arenas_are_limited_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True


def test_the_running_agent_does_not_import_scipy() -> None:
    """scipy.optimize alone is about 40 MB of resident memory; the tracker has its own solver."""
    code = "import sys, agent.runtime.run, agent.vision.pipeline; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
