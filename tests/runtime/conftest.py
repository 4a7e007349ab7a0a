"""Fixtures for the running agent. The helpers live in ``runtime_fixtures.py`` beside this file and
are importable as ``runtime_fixtures`` once this conftest has loaded."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
if "runtime_fixtures" not in sys.modules:
    # --import-mode=importlib gives test helpers no package; load the helper module by path once.
    _spec = importlib.util.spec_from_file_location("runtime_fixtures", _here / "runtime_fixtures.py")
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["runtime_fixtures"] = _module
    _spec.loader.exec_module(_module)

from runtime_fixtures import synthetic_clip  # noqa: E402

__all__ = ["synthetic_clip"]
