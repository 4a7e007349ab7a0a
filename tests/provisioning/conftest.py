"""Fixtures for operator-side tests: the Mosquitto helpers of tests/sync, loaded by path as ``sync_broker``."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_broker = Path(__file__).resolve().parents[1] / "sync" / "broker.py"
if "sync_broker" not in sys.modules:
    # --import-mode=importlib gives test helpers no package; load the helper module by path once.
    _spec = importlib.util.spec_from_file_location("sync_broker", _broker)
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["sync_broker"] = _module
    _spec.loader.exec_module(_module)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[object]:
    """A Mosquitto of the test's own that accepts anonymous clients, killed at the end."""
    helpers = sys.modules["sync_broker"]
    if not helpers.mosquitto_available():
        pytest.skip("mosquitto is not installed on this machine")
    running = helpers.Broker(tmp_path / "broker", anonymous=True)
    running.start()
    try:
        yield running
    finally:
        running.kill()
