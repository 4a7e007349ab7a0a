"""`retail-agent run` with an [mqtt] section: it announces itself and delivers what its outbox holds."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_broker import Broker, Subscriber

from agent.config import load_config
from agent.coupons.ledger import Ledger
from agent.coupons.token import Coupon, issue_token, new_serial, verify_token


@pytest.fixture
def clip(vtest_clip: Callable[[int], Path]) -> Path:
    """The first 60 frames of the sample clip: six seconds at its native rate."""
    return vtest_clip(60)


@pytest.mark.integration
def test_run_announces_itself_and_delivers_the_outbox(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], clip: Path, tmp_path: Path
) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        f"""
[device]
id = "till-1"
tenant = "acme"
store = "s12"
state_dir = "{tmp_path / "state"}"

[camera]
source = "{clip}"

[camera.lines.walkway_west]
a = [330, 385]
b = [330, 180]

[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
tls = false
"""
    )
    config = load_config(config_file)
    # A redemption made while the device was offline, in a window that has closed since, waits in the outbox.
    key = Ed25519PrivateKey.generate()
    now = int(time.time())
    then = now - 1200
    coupon = Coupon(1, 0, 5, new_serial(), now - 3600, now + 3600, 1, 0)
    raw = key.public_key().public_bytes_raw()
    with Ledger(config.database_path, "till-1") as ledger:
        verification = verify_token(issue_token(coupon, key), {0: raw}, 0, (), then)
        assert ledger.redeem(verification, "cli", now=then).redeemed

    platform = subscriber(mosquitto, "retail/v1/acme/#")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    received = platform.wait_for(lambda ms: any(m.topic.endswith("/ledger") for m in ms), timeout=10)
    ledger_messages = [json.loads(m.payload) for m in received if m.topic == "retail/v1/acme/s12/till-1/ledger"]
    assert [m["serial"] for m in ledger_messages] == [coupon.serial_hex]
    assert ledger_messages[0]["sent_at"] == then // 900 * 900 + 900  # the window's close, not the redemption
    states = [json.loads(m.payload) for m in received if m.topic == "retail/v1/acme/s12/till-1/state"]
    assert states[0]["online"] is True
    assert states[-1]["online"] is False  # a clean stop leaves the retained state offline
    assert states[0]["bd_seq"] == states[-1]["bd_seq"]
    assert states[0]["model"]["name"] == "ssdlite-pedestrian"

    with sqlite3.connect(config.database_path) as conn:
        waiting = conn.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND kind = 'ledger'").fetchone()
    assert waiting == (0,)
