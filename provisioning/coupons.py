"""Issuing coupons: issuer key pairs, and batches of signed C1 tokens with printable QR codes."""

from __future__ import annotations

import base64
import csv
import io
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from agent.coupons.token import TOKEN_VERSION, Coupon, VerifyResult, issue_token, new_serial, verify_token

logger = logging.getLogger(__name__)

QR_SCALE = 8
"""Pixels per QR module: a version-6 code is 392 px wide with its quiet zone, 3.3 cm at 300 dpi."""
QR_BORDER = 4
"""Quiet zone in modules, the minimum the QR standard asks for."""
MAX_COUNT = 100_000
MANIFEST_FIELDS = ("serial", "campaign", "offer", "store", "not_before", "expires")
_U8, _U16, _U32 = 0xFF, 0xFFFF, 0xFFFF_FFFF
_DAY = 86400


class CouponToolError(ValueError):
    """An argument or input file the coupon tools cannot use."""


class OutputExists(FileExistsError):
    """The tool refuses to overwrite a file that is already there."""


@dataclass(frozen=True)
class IssuerKeyFiles:
    """What keygen wrote: the private key, the config snippet, and the public key it holds."""

    private_key: Path
    config_snippet: Path
    public_key: str
    """Raw 32-byte Ed25519 public key, standard base64, as the agent config expects."""


@dataclass(frozen=True)
class IssueRequest:
    """One batch of coupons to issue; checked on construction, messages name the option."""

    key_id: int
    campaign: int
    offer: int
    valid_from: int
    valid_days: int
    count: int
    store: int = 0

    def __post_init__(self) -> None:
        for option, value, low, high in (
            ("--key-id", self.key_id, 0, _U8),
            ("--campaign", self.campaign, 0, _U32),
            ("--offer", self.offer, 0, _U16),
            ("--store", self.store, 0, _U16),
            ("--valid-from", self.valid_from, 0, _U32),
            ("--valid-days", self.valid_days, 1, _U32 // _DAY),
            ("--count", self.count, 1, MAX_COUNT),
        ):
            if not low <= value <= high:
                raise CouponToolError(f"{option} must be from {low} to {high}, got {value}")
        if self.expires > _U32:
            raise CouponToolError(
                f"--valid-from plus --valid-days ends at {self.expires}, after the last time a token "
                f"can hold ({_U32}, in 2106)"
            )

    @property
    def expires(self) -> int:
        """Unix time the coupons stop being valid (exclusive)."""
        return self.valid_from + self.valid_days * _DAY


@dataclass(frozen=True)
class IssuedCoupon:
    """One coupon of a batch: its fields, its token text and its QR image."""

    coupon: Coupon
    token: str
    image: Path


def parse_time(text: str) -> int:
    """Unix seconds from ``1767225600`` or ISO 8601 (``2026-01-01``, ``2026-01-01T09:00+01:00``).

    ISO times without a zone are taken as UTC.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CouponToolError(f"{text!r} is neither unix seconds nor an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def public_key_base64(private_key: Ed25519PrivateKey) -> str:
    """The raw 32-byte public key in standard base64."""
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def config_snippet(key_id: int, public_key: str) -> str:
    """The TOML lines that add this issuer key to an agent config."""
    return (
        f"# Coupon issuer key {key_id}: add to the agent config (merge with an existing table).\n"
        f"[coupons.issuer_keys]\n"
        f'"{key_id}" = "{public_key}"\n'
    )


def key_paths(out_dir: Path, key_id: int) -> tuple[Path, Path]:
    """Where keygen puts the private key and the config snippet for a key id."""
    return out_dir / f"issuer-{key_id}.pem", out_dir / f"issuer-{key_id}.toml"


def generate_issuer_key(out_dir: Path, key_id: int = 0) -> IssuerKeyFiles:
    """Write a new issuer key pair; the private key file is created with mode 0600.

    Refuses (OutputExists) if either file for this key id is already there.
    """
    if not 0 <= key_id <= _U8:
        raise CouponToolError(f"--key-id must be from 0 to {_U8}, got {key_id}")
    private_path, snippet_path = key_paths(out_dir, key_id)
    for path in (private_path, snippet_path):
        if path.exists():
            raise OutputExists(f"{path} already exists; refusing to overwrite an issuer key")
    out_dir.mkdir(parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _write_new(private_path, pem, mode=0o600)
    public_key = public_key_base64(private_key)
    _write_new(snippet_path, config_snippet(key_id, public_key).encode(), mode=0o644)
    logger.info("wrote issuer key %d to %s", key_id, private_path)
    return IssuerKeyFiles(private_path, snippet_path, public_key)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an issuer private key (unencrypted PKCS8 PEM, as keygen writes it)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CouponToolError(f"cannot read key {path}: {error.strerror}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        reason = str(error).split(".")[0]
        raise CouponToolError(f"{path} is not an unencrypted PEM private key ({reason})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CouponToolError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def issue_coupons(private_key: Ed25519PrivateKey, request: IssueRequest, out_dir: Path) -> list[IssuedCoupon]:
    """Issue a batch into out_dir: tokens.txt, manifest.csv and one <serial>.png QR code per coupon.

    Refuses (OutputExists) if out_dir already holds a tokens.txt or manifest.csv. Each token is
    verified with the key's public half before anything is written.
    """
    tokens_path, manifest_path = out_dir / "tokens.txt", out_dir / "manifest.csv"
    for path in (tokens_path, manifest_path):
        if path.exists():
            raise OutputExists(f"{path} already exists; use a new folder for each batch")
    public_raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    batch: list[tuple[Coupon, str]] = []
    for _ in range(request.count):
        coupon = Coupon(
            version=TOKEN_VERSION,
            key_id=request.key_id,
            campaign=request.campaign,
            serial=new_serial(),
            not_before=request.valid_from,
            expires=request.expires,
            offer=request.offer,
            store=request.store,
        )
        token = issue_token(coupon, private_key)
        check = verify_token(token, {request.key_id: public_raw}, request.store, (), request.valid_from)
        if check.result is not VerifyResult.VALID:
            raise RuntimeError(f"an issued token failed its own check: {check.result}")
        batch.append((coupon, token))

    out_dir.mkdir(parents=True, exist_ok=True)
    issued = []
    for coupon, token in batch:
        image = out_dir / f"{coupon.serial_hex}.png"
        qr_code(token).save(str(image), kind="png", scale=QR_SCALE, border=QR_BORDER)
        issued.append(IssuedCoupon(coupon, token, image))
    _write_new(tokens_path, "".join(f"{item.token}\n" for item in issued).encode("ascii"))
    _write_new(manifest_path, _manifest(item.coupon for item in issued).encode("utf-8"))
    logger.info("issued %d coupons of campaign %d into %s", len(issued), request.campaign, out_dir)
    return issued


def qr_code(token: str) -> segno.QRCode:
    """The QR code for a token: error correction M, alphanumeric mode (version 6 at most)."""
    return segno.make_qr(token, error="m", mode="alphanumeric", boost_error=False)


def default_valid_from() -> int:
    """Now, in whole unix seconds."""
    return int(time.time())


def _manifest(coupons: Iterable[Coupon]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    for coupon in coupons:
        writer.writerow(
            [
                coupon.serial_hex,
                coupon.campaign,
                coupon.offer,
                coupon.store,
                coupon.not_before,
                coupon.expires,
            ]
        )
    return out.getvalue()


def _write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create a file that must not exist yet, with its permissions set at creation."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
