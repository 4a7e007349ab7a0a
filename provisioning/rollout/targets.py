"""Rollout targets: devices named in a list file, or the devices of a store found on the broker.

A device list file has one device a line as ``STORE/DEVICE`` (``#`` starts a comment, blank lines
are skipped); the order is the rollout order, so the first device is the canary. A store target
is every device whose retained birth (``retail/v1/{tenant}/{store}/{device}/state``) the broker
holds, online or not, in name order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agent.fleet.commands import ID_PATTERN

logger = logging.getLogger(__name__)


class TargetError(ValueError):
    """A device list that cannot be used; the message names the file and line."""


@dataclass(frozen=True, order=True)
class DeviceRef:
    """One device of the tenant: its store and its id (the two levels of its topic prefix)."""

    store: str
    device: str

    def __post_init__(self) -> None:
        for what, value in (("store", self.store), ("device", self.device)):
            if not ID_PATTERN.match(value):
                raise ValueError(f"{what} {value[:70]!r} must be 1-64 letters, digits, '_', '.' or '-'")

    def __str__(self) -> str:
        return f"{self.store}/{self.device}"


def read_device_list(path: Path) -> list[DeviceRef]:
    """The devices in ``path`` in file order; TargetError naming the line of a bad or repeated entry."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"--devices {path}: cannot read it: {exc}") from None
    devices: list[DeviceRef] = []
    seen: set[DeviceRef] = set()
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        store, sep, device = text.partition("/")
        try:
            if not sep:
                raise ValueError("write each device as STORE/DEVICE")
            ref = DeviceRef(store.strip(), device.strip())
        except ValueError as exc:
            raise TargetError(f"--devices {path} line {number}: {exc}") from None
        if ref in seen:
            raise TargetError(f"--devices {path} line {number}: {ref} is listed twice")
        seen.add(ref)
        devices.append(ref)
    if not devices:
        raise TargetError(f"--devices {path}: no device listed")
    return devices


def devices_from_births(topics: list[str], tenant: str, store: str) -> list[DeviceRef]:
    """The devices of ``store`` whose retained birth topics are in ``topics``, in name order."""
    prefix = f"retail/v1/{tenant}/{store}/"
    found = set()
    for topic in topics:
        if topic.startswith(prefix) and topic.endswith("/state"):
            device = topic[len(prefix) : -len("/state")]
            try:
                found.add(DeviceRef(store, device))
            except ValueError:
                logger.warning("skipped a birth on %s: not a device id", topic[:120])
    return sorted(found)
