"""Console fixtures: a real agent database with staff, coupons signed by a test issuer, a settable clock."""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from textual import events
from textual.geometry import Region
from textual.keys import _character_to_key
from textual.pilot import Pilot
from textual.widget import Widget

from agent.config import AgentConfig, parse_config
from agent.console.app import ConsoleApp, make_console
from agent.coupons.token import Coupon, issue_token
from agent.storage.audit import Actor, Role
from agent.storage.database import open_database
from agent.storage.staff import add_staff

NOW = 1_767_261_600.0  # 2026-01-01T10:00:00Z (a Thursday)
STORE = 42
KEY = Ed25519PrivateKey.generate()
STAFF_ID, STAFF_PIN = "0042", "1357"
MANAGER_ID, MANAGER_PIN = "m1", "2468"


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test (a Textual pilot needs an event loop) in its own loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token(serial: int = 1, **changes: Any) -> tuple[str, Coupon]:
    fields: dict[str, Any] = {
        "version": 1,
        "key_id": 7,
        "campaign": 1001,
        "serial": serial.to_bytes(16, "big"),
        "not_before": int(NOW) - 86_400,
        "expires": int(NOW) + 86_400,
        "offer": 15,
        "store": 0,
    }
    fields.update(changes)
    coupon = Coupon(**fields)
    return issue_token(coupon, KEY), coupon


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Local time is UTC, so days, hours and snapshots do not depend on the machine's zone."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    public = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return parse_config(
        {
            "device": {"id": "till-1", "state_dir": str(tmp_path / "state")},
            "coupons": {"store": STORE, "issuer_keys": {"7": base64.b64encode(public).decode()}},
            "console": {"idle_lock_s": 60, "max_failed_sign_ins": 3, "lockout_s": 300, "refresh_s": 0.5},
        }
    )


@pytest.fixture
def db_path(config: AgentConfig) -> Path:
    """The agent's database with a staff member and a manager."""
    db = open_database(config.database_path)
    try:
        add_staff(db, STAFF_ID, "staff", STAFF_PIN, Actor(Role.CLI), now=NOW - 3600)
        add_staff(db, MANAGER_ID, "manager", MANAGER_PIN, Actor(Role.CLI), now=NOW - 3600)
    finally:
        db.close()
    return config.database_path


@dataclass
class Console:
    app: ConsoleApp
    clock: Clock


@pytest.fixture
def console(db_path: Path, config: AgentConfig, tmp_path: Path) -> Console:
    clock = Clock()
    return Console(make_console(db_path, config, clock=clock, export_dir=tmp_path / "exports"), clock)


async def settle(pilot: Pilot[Any]) -> None:
    """Let workers finish and their results reach the screen."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def type_text(pilot: Pilot[Any], text: str) -> None:
    """Keys one by one, as a keyboard-wedge scanner or a person sends them."""
    for char in text:
        await pilot.press(char)


def shown_text(widget: Widget) -> str:
    """What a widget shows on screen, as plain text lines."""
    size = widget.region.size
    return "\n".join(strip.text.strip() for strip in widget.render_lines(Region(0, 0, size.width, size.height)))


async def scan(pilot: Pilot[Any], text: str) -> None:
    """A keyboard-wedge scanner: the code's keystrokes in one burst (no pause between them), then Enter."""
    driver = pilot.app._driver
    assert driver is not None
    for char in text:
        key = events.Key(char if char.isalnum() else _character_to_key(char), char)
        key.set_sender(pilot.app)
        driver.send_message(key)
    await pilot.press("enter")
    await settle(pilot)


async def sign_in(pilot: Pilot[Any], staff_id: str = STAFF_ID, pin: str = STAFF_PIN) -> None:
    await settle(pilot)
    await type_text(pilot, staff_id)
    await pilot.press("enter")
    await type_text(pilot, pin)
    await pilot.press("enter")
    await settle(pilot)
