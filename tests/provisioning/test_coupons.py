"""Operator coupon tools: issuer keys, coupon batches and their QR images, through the command line."""

from __future__ import annotations

import base64
import csv
import os
import stat
import time
import tomllib
from pathlib import Path

import cv2
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
)

from agent.config import CouponsConfig
from agent.coupons.token import VerifyResult, decode_token, verify_token
from provisioning.cli import main
from provisioning.coupons import (
    CouponToolError,
    IssueRequest,
    OutputExists,
    generate_issuer_key,
    issue_coupons,
    load_private_key,
    parse_time,
)

VALID_FROM = 1_767_225_600  # 2026-01-01T00:00:00Z


def keygen(tmp_path: Path, key_id: int = 3) -> Path:
    assert main(["coupons", "keygen", "--out", str(tmp_path / "keys"), "--key-id", str(key_id)]) == 0
    return tmp_path / "keys"


def issue_args(key: Path, out: Path, **overrides: str) -> list[str]:
    options = {
        "--key": str(key),
        "--key-id": "3",
        "--campaign": "4242",
        "--offer": "17",
        "--store": "12",
        "--valid-from": "2026-01-01",
        "--valid-days": "30",
        "--count": "5",
        "--out": str(out),
    }
    options.update(overrides)
    args = ["coupons", "issue"]
    for option, value in options.items():
        if value:
            args += [option, value]
    return args


def device_keys(keys_dir: Path, key_id: int = 3) -> dict[int, bytes]:
    """The public keys a device would load from the pasted snippet."""
    snippet = tomllib.loads((keys_dir / f"issuer-{key_id}.toml").read_text(encoding="utf-8"))
    return CouponsConfig(**snippet["coupons"]).public_keys()


# --- keygen ---------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_with_mode_0600_from_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("the key must be created 0600, not changed afterwards")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    old_umask = os.umask(0)  # nothing masks the mode the file is created with
    try:
        files = generate_issuer_key(tmp_path, key_id=5)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(files.private_key.stat().st_mode) == 0o600
    assert files.private_key.name == "issuer-5.pem"
    assert b"BEGIN PRIVATE KEY" in files.private_key.read_bytes()  # PKCS8
    assert isinstance(load_private_key(files.private_key), Ed25519PrivateKey)


def test_keygen_snippet_is_agent_config_holding_the_matching_public_key(tmp_path: Path) -> None:
    keys_dir = keygen(tmp_path, key_id=9)
    private = load_private_key(keys_dir / "issuer-9.pem")
    public = device_keys(keys_dir, key_id=9)
    assert list(public) == [9]
    assert public[9] == private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    snippet = tomllib.loads((keys_dir / "issuer-9.toml").read_text(encoding="utf-8"))
    assert base64.b64decode(snippet["coupons"]["issuer_keys"]["9"], validate=True) == public[9]


def test_keygen_refuses_to_overwrite_an_existing_key(tmp_path: Path) -> None:
    keys_dir = keygen(tmp_path)
    before = (keys_dir / "issuer-3.pem").read_bytes()
    assert main(["coupons", "keygen", "--out", str(keys_dir), "--key-id", "3"]) == 1
    assert (keys_dir / "issuer-3.pem").read_bytes() == before
    with pytest.raises(OutputExists):
        generate_issuer_key(keys_dir, key_id=3)


def test_keygen_refuses_when_only_the_snippet_exists(tmp_path: Path) -> None:
    (tmp_path / "issuer-0.toml").write_text("# someone's notes\n")
    with pytest.raises(OutputExists):
        generate_issuer_key(tmp_path)
    assert not (tmp_path / "issuer-0.pem").exists()


def test_keygen_writes_a_different_key_per_key_id(tmp_path: Path) -> None:
    keygen(tmp_path, key_id=1)
    keygen(tmp_path, key_id=2)
    assert (tmp_path / "keys" / "issuer-1.pem").read_bytes() != (tmp_path / "keys" / "issuer-2.pem").read_bytes()


@pytest.mark.parametrize("key_id", ["256", "-1"])
def test_keygen_rejects_key_ids_outside_a_byte(tmp_path: Path, key_id: str) -> None:
    assert main(["coupons", "keygen", "--out", str(tmp_path), "--key-id", key_id]) == 2
    assert list(tmp_path.iterdir()) == []


# --- issue ----------------------------------------------------------------------------------------


def test_issue_writes_five_coupons_that_verify_with_the_generated_public_key(tmp_path: Path) -> None:
    keys_dir = keygen(tmp_path)
    out = tmp_path / "batch"
    assert main(issue_args(keys_dir / "issuer-3.pem", out)) == 0

    tokens = (out / "tokens.txt").read_text(encoding="ascii").splitlines()
    assert len(tokens) == len(set(tokens)) == 5
    keys = device_keys(keys_dir)
    for token in tokens:
        verification = verify_token(token, keys, store=12, revoked=frozenset(), now=VALID_FROM + 3600)
        assert verification.result is VerifyResult.VALID
        coupon = verification.coupon
        assert coupon is not None
        assert (coupon.key_id, coupon.campaign, coupon.offer, coupon.store) == (3, 4242, 17, 12)
        assert (coupon.not_before, coupon.expires) == (VALID_FROM, VALID_FROM + 30 * 86400)
        assert (out / f"{coupon.serial_hex}.png").is_file()
        assert verify_token(token, keys, 13, frozenset(), VALID_FROM + 3600).result is VerifyResult.WRONG_STORE


def test_manifest_lists_every_coupon_of_the_batch(tmp_path: Path) -> None:
    keys_dir = keygen(tmp_path)
    out = tmp_path / "batch"
    assert main(issue_args(keys_dir / "issuer-3.pem", out)) == 0
    with (out / "manifest.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["serial", "campaign", "offer", "store", "not_before", "expires"]
    serials = {decode_token(token)[0].serial_hex for token in (out / "tokens.txt").read_text().splitlines()}
    assert {row["serial"] for row in rows} == serials
    assert {(r["campaign"], r["offer"], r["store"], r["not_before"], r["expires"]) for r in rows} == {
        ("4242", "17", "12", str(VALID_FROM), str(VALID_FROM + 30 * 86400))
    }


def test_qr_image_decodes_back_to_the_same_token(tmp_path: Path) -> None:
    keys_dir = keygen(tmp_path)
    out = tmp_path / "batch"
    assert main(issue_args(keys_dir / "issuer-3.pem", out, **{"--count": "2"})) == 0
    token = (out / "tokens.txt").read_text().splitlines()[0]
    image_path = out / f"{decode_token(token)[0].serial_hex}.png"
    image = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
    results = zxingcpp.read_barcodes(image)
    assert [result.text for result in results] == [token]
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
    # 8 px per module and a 4-module quiet zone: a version-6 code (41 modules) is 392 px square.
    assert image.shape == (392, 392)


def test_issue_refuses_to_overwrite_a_previous_batch(tmp_path: Path) -> None:
    keys_dir = keygen(tmp_path)
    out = tmp_path / "batch"
    assert main(issue_args(keys_dir / "issuer-3.pem", out)) == 0
    before = (out / "tokens.txt").read_text()
    assert main(issue_args(keys_dir / "issuer-3.pem", out)) == 1
    assert (out / "tokens.txt").read_text() == before
    assert len(list(out.glob("*.png"))) == 5


@pytest.mark.parametrize(
    "overrides",
    [
        {"--key-id": "256"},
        {"--campaign": "4294967296"},
        {"--offer": "65536"},
        {"--store": "-1"},
        {"--valid-days": "0"},
        {"--count": "0"},
        {"--count": "1000001"},
        {"--valid-from": "next tuesday"},
        {"--valid-from": "2106-02-07", "--valid-days": "1"},
        {"--campaign": "many"},
        {"--count": ""},
    ],
)
def test_issue_rejects_bad_arguments_with_exit_2_and_writes_nothing(
    tmp_path: Path, overrides: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir = keygen(tmp_path)
    capsys.readouterr()
    out = tmp_path / "batch"
    assert main(issue_args(keys_dir / "issuer-3.pem", out, **overrides)) == 2
    assert not out.exists()
    assert capsys.readouterr().err.strip()


def test_issue_rejects_a_missing_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(issue_args(tmp_path / "nope.pem", tmp_path / "batch")) == 2
    assert "cannot read key" in capsys.readouterr().err


def test_issue_rejects_a_key_that_is_not_ed25519(tmp_path: Path) -> None:
    keys_dir = keygen(tmp_path)
    assert main(issue_args(keys_dir / "issuer-3.toml", tmp_path / "batch")) == 2
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")
    )
    (tmp_path / "locked.pem").write_bytes(encrypted)
    with pytest.raises(CouponToolError):
        load_private_key(tmp_path / "locked.pem")


def test_issue_request_defaults_to_any_store(tmp_path: Path) -> None:
    request = IssueRequest(key_id=0, campaign=1, offer=2, valid_from=VALID_FROM, valid_days=1, count=1)
    issued = issue_coupons(Ed25519PrivateKey.generate(), request, tmp_path)
    assert issued[0].coupon.store == 0
    assert issued[0].image.is_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1767225600", VALID_FROM),
        ("2026-01-01", VALID_FROM),
        ("2026-01-01T00:00:00", VALID_FROM),
        ("2026-01-01T00:00:00Z", VALID_FROM),
        ("2026-01-01T01:00:00+01:00", VALID_FROM),
        ("0", 0),
    ],
)
def test_valid_from_accepts_unix_seconds_and_iso_8601_taking_naive_times_as_utc(text: str, expected: int) -> None:
    assert parse_time(text) == expected


def test_issue_without_valid_from_starts_now(tmp_path: Path) -> None:
    keys_dir = keygen(tmp_path)
    out = tmp_path / "batch"
    assert main(issue_args(keys_dir / "issuer-3.pem", out, **{"--valid-from": "", "--count": "1"})) == 0
    token = (out / "tokens.txt").read_text().strip()
    assert abs(decode_token(token)[0].not_before - time.time()) < 60


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coupons", "issue", "--help"]) == 0
    assert "--valid-days" in capsys.readouterr().out
