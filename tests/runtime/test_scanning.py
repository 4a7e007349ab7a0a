"""Coupon scanning in the running agent: a camera showing a coupon is redeemed exactly once."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from runtime_fixtures import coupon_clip

from agent.config import parse_config
from agent.coupons.desk import CouponDesk
from agent.coupons.token import Coupon, issue_token, new_serial
from agent.runtime.scanning import ScanService
from agent.vision.source import parse_source

KEY = Ed25519PrivateKey.generate()


@pytest.mark.integration
def test_a_coupon_held_in_front_of_the_camera_is_redeemed_once(tmp_path: Path) -> None:
    now = int(time.time())
    coupon = Coupon(1, 4, 77, new_serial(), now - 60, now + 3600, 5, 12)
    clip = coupon_clip(tmp_path / "counter.avi", issue_token(coupon, KEY))
    public = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    config = parse_config(
        {
            "device": {"id": "kiosk-2", "tenant": "acme", "store": "s12", "state_dir": str(tmp_path)},
            "coupons": {"store": 12, "issuer_keys": {"4": public}, "scan_source": str(clip), "scan_fps": 10},
        }
    )
    outcomes = []
    service = ScanService(config, parse_source(str(clip)), outcomes.append)
    service.run(threading.Event(), lambda: None)
    with CouponDesk.from_config(config) as desk:
        rows = desk.db.execute("SELECT serial, store, source FROM redemptions").fetchall()
        audited = desk.db.execute("SELECT actor, action, outcome FROM audit").fetchall()
    assert service.stats.frames >= 30
    assert service.stats.codes_seen >= 20  # seen in most frames it was shown in
    assert [o.result.value for o in outcomes] == ["valid"]
    assert rows == [(coupon.serial_hex, 12, "scanner")]
    assert audited == [("system:scanner", "redeem", "ok")]


@pytest.mark.integration
def test_a_coupon_for_another_store_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    now = int(time.time())
    coupon = Coupon(1, 4, 77, new_serial(), now - 60, now + 3600, 5, 99)
    clip = coupon_clip(tmp_path / "counter.avi", issue_token(coupon, KEY))
    public = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    config = parse_config(
        {
            "device": {"id": "kiosk-2", "state_dir": str(tmp_path)},
            "coupons": {"store": 12, "issuer_keys": {"4": public}, "scan_source": str(clip), "scan_fps": 10},
        }
    )
    outcomes = []
    ScanService(config, parse_source(str(clip)), outcomes.append).run(threading.Event(), lambda: None)
    with CouponDesk.from_config(config) as desk:
        assert desk.db.execute("SELECT COUNT(*) FROM redemptions").fetchone() == (0,)
    assert [o.result.value for o in outcomes] == ["wrong_store"]
