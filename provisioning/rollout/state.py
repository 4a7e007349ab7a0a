"""The rollout's local state file: the plan, what was sent, the last status of each job; written atomically.

It is the operator tool's only memory: ``resume`` reads it to continue where a killed tool
stopped (jobs already sent are not sent again), ``status`` and ``cancel`` read it to know the
rollout's jobs. JSON, schema ``rollout.v1``; rewritten whole (temporary file, fsync, rename)
after every change, so a kill leaves either the old or the new file.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from provisioning.rollout.targets import DeviceRef

logger = logging.getLogger(__name__)

SCHEMA = "rollout.v1"
Status = Literal["running", "done", "aborted", "canceled"]


class StateFileError(ValueError):
    """A state file that cannot be read as a rollout; the message names the file and the field."""


@dataclass
class Entry:
    """One device's job in the rollout."""

    store: str
    device: str
    job_id: str
    sent: bool = False
    state: str | None = None
    version: int = 0
    reason: str | None = None

    @property
    def ref(self) -> DeviceRef:
        return DeviceRef(self.store, self.device)


@dataclass
class RolloutState:
    """Everything a rollout needs to go on: identity, the job, the options and the waves of entries."""

    rollout_id: str
    tenant: str
    broker: str
    job_type: str
    job_body: dict[str, Any]
    max_failure_rate: float
    wave_timeout_s: float
    soak_s: float
    ttl_s: int
    waves: list[list[Entry]]
    wave: int = 0
    status: Status = "running"
    message: str = ""
    cancel_sent: list[str] = field(default_factory=list)

    def entries(self) -> list[Entry]:
        return [entry for wave in self.waves for entry in wave]

    def sent(self) -> list[Entry]:
        return [entry for entry in self.entries() if entry.sent]

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA} | asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any], where: str) -> RolloutState:
        if not isinstance(document, dict) or document.get("schema") != SCHEMA:
            raise StateFileError(f"{where}: not a rollout state file (schema {SCHEMA!r} expected)")
        fields = dict(document)
        fields.pop("schema")
        try:
            waves = [[Entry(**entry) for entry in wave] for wave in fields.pop("waves")]
            return cls(waves=waves, **fields)
        except (KeyError, TypeError) as exc:
            raise StateFileError(f"{where}: a field is missing or unknown: {exc}") from None


def load(path: Path) -> RolloutState:
    """The rollout in ``path``; StateFileError when it is missing or not a rollout."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateFileError(f"--state {path}: no such file (start a rollout first)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StateFileError(f"--state {path}: cannot read it: {exc}") from None
    return RolloutState.from_json(document, f"--state {path}")


def save(state: RolloutState, path: Path) -> None:
    """Write ``state`` to ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps(state.to_json(), indent=1, sort_keys=True)
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
