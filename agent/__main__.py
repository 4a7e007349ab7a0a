"""``python -m agent``: the same as the ``retail-agent`` command."""

from __future__ import annotations

from agent.cli import main

raise SystemExit(main())
