"""Fleet test fixtures: the helpers module (``fleet_helpers``) and a plain Mosquitto on a free port."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_here = Path(__file__).resolve().parent
for _name, _file in (
    ("fleet_helpers", _here / "fleet_helpers.py"),
    ("sync_broker", _here.parent / "sync" / "broker.py"),
):
    if _name not in sys.modules:
        # --import-mode=importlib gives test helpers no package; load each helper module by path once.
        _spec = importlib.util.spec_from_file_location(_name, _file)
        assert _spec is not None and _spec.loader is not None
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_name] = _module
        _spec.loader.exec_module(_module)

from sync_broker import Broker, mosquitto_available  # noqa: E402


@pytest.fixture
def fleet_broker(tmp_path: Path) -> Iterator[Broker]:
    """A plain broker: anonymous clients allowed."""
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed on this machine")
    broker = Broker(tmp_path / "broker", anonymous=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
