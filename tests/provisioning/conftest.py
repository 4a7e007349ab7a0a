"""Fixtures for operator-side tests: the Mosquitto helpers of tests/sync, loaded by path as ``sync_broker``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_broker = Path(__file__).resolve().parents[1] / "sync" / "broker.py"
if "sync_broker" not in sys.modules:
    # --import-mode=importlib gives test helpers no package; load the helper module by path once.
    _spec = importlib.util.spec_from_file_location("sync_broker", _broker)
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["sync_broker"] = _module
    _spec.loader.exec_module(_module)
