"""The C1 coupon token: its byte layout, its text form and offline verification.

A token is ``"C1:" + base45(payload || signature)``. The payload is 34 bytes, big-endian::

    version u8 (=1) | key_id u8 | campaign u32 | serial 16 bytes |
    not_before u32 | expires u32 | offer u16 | store u16 (0 = any store)

and the signature is Ed25519 by the issuer key ``key_id`` over ``b"C1" + payload`` (64 bytes).

Reading the text: surrounding whitespace (a scanner's trailing newline, pasted spaces) is stripped,
which is safe because a valid token's last character is never a space. ASCII letters are folded to
upper case before decoding: base45 has no lower-case letters, so ``c1:abc`` can only mean ``C1:ABC``
(keyboard-wedge scanners with caps lock on send the letters inverted). Any other character, inside
or outside ASCII, makes the text malformed.

A coupon is valid from ``not_before`` inclusive until ``expires`` exclusive, in unix seconds:
``not_before <= now < expires``.
"""

from __future__ import annotations

import logging
import secrets
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.coupons import base45

logger = logging.getLogger(__name__)

PREFIX = "C1:"
"""What every C1 token text starts with."""
TOKEN_VERSION = 1
SIGNING_CONTEXT = b"C1"
"""Signed before the payload, so a C1 signature cannot be replayed as another message type."""

_LAYOUT = struct.Struct(">BBI16sIIHH")
PAYLOAD_SIZE = _LAYOUT.size
SIGNATURE_SIZE = 64
TOKEN_SIZE = PAYLOAD_SIZE + SIGNATURE_SIZE
SERIAL_SIZE = 16

_U8, _U16, _U32 = 0xFF, 0xFFFF, 0xFFFF_FFFF


class VerifyResult(StrEnum):
    """The outcome of checking a coupon; the values are the words staff see."""

    VALID = "valid"
    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    WRONG_STORE = "wrong_store"
    REVOKED = "revoked"
    ALREADY_REDEEMED = "already_redeemed"

    @property
    def message(self) -> str:
        """A short sentence for staff."""
        return _MESSAGES[self]


_MESSAGES = {
    VerifyResult.VALID: "This coupon is valid.",
    VerifyResult.MALFORMED: "This is not a readable coupon code.",
    VerifyResult.UNKNOWN_KEY: "This coupon comes from an issuer this device does not know.",
    VerifyResult.BAD_SIGNATURE: "This coupon failed the authenticity check. Do not accept it.",
    VerifyResult.NOT_YET_VALID: "This coupon is not valid yet.",
    VerifyResult.EXPIRED: "This coupon has expired.",
    VerifyResult.WRONG_STORE: "This coupon is for a different store.",
    VerifyResult.REVOKED: "This coupon has been withdrawn.",
    VerifyResult.ALREADY_REDEEMED: "This coupon has already been used.",
}


class MalformedToken(ValueError):
    """The text is not a well-formed C1 token."""


@dataclass(frozen=True)
class Coupon:
    """The 34-byte payload of a C1 token, decoded; fields are checked on construction."""

    version: int
    key_id: int
    campaign: int
    serial: bytes
    not_before: int
    expires: int
    offer: int
    store: int

    def __post_init__(self) -> None:
        if self.version != TOKEN_VERSION:
            raise ValueError(f"version must be {TOKEN_VERSION}, got {self.version}")
        for name, limit in (
            ("key_id", _U8),
            ("campaign", _U32),
            ("not_before", _U32),
            ("expires", _U32),
            ("offer", _U16),
            ("store", _U16),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise ValueError(f"{name} must be a whole number from 0 to {limit}, got {value!r}")
        if not isinstance(self.serial, bytes) or len(self.serial) != SERIAL_SIZE:
            raise ValueError(f"serial must be {SERIAL_SIZE} bytes")
        if self.not_before > self.expires:
            raise ValueError(f"not_before {self.not_before} is after expires {self.expires}")

    @property
    def serial_hex(self) -> str:
        """The serial as 32 lower-case hex digits (the form used in config and records)."""
        return self.serial.hex()

    def payload(self) -> bytes:
        """The 34 bytes that are signed."""
        return _LAYOUT.pack(
            self.version,
            self.key_id,
            self.campaign,
            self.serial,
            self.not_before,
            self.expires,
            self.offer,
            self.store,
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> Coupon:
        """Decode 34 payload bytes; raise MalformedToken if they do not describe a coupon."""
        if len(payload) != PAYLOAD_SIZE:
            raise MalformedToken(f"a payload is {PAYLOAD_SIZE} bytes, got {len(payload)}")
        try:
            return cls(*_LAYOUT.unpack(payload))
        except ValueError as error:
            raise MalformedToken(str(error)) from None


@dataclass(frozen=True)
class Verification:
    """What verify_token found; ``coupon`` is None when the text was malformed."""

    result: VerifyResult
    coupon: Coupon | None


def new_serial() -> bytes:
    """A fresh random 16-byte coupon serial."""
    return secrets.token_bytes(SERIAL_SIZE)


def issue_token(coupon: Coupon, private_key: Ed25519PrivateKey) -> str:
    """Sign a coupon and return its token text."""
    payload = coupon.payload()
    signature = private_key.sign(SIGNING_CONTEXT + payload)
    return PREFIX + base45.encode(payload + signature)


def decode_token(text: str) -> tuple[Coupon, bytes]:
    """Split token text into its coupon and signature without checking the signature.

    Raises MalformedToken for anything that is not a well-formed C1 token.
    """
    cleaned = text.strip()
    if not cleaned.isascii():
        raise MalformedToken("a coupon token is plain ASCII")
    cleaned = cleaned.upper()
    if not cleaned.startswith(PREFIX):
        raise MalformedToken(f"a coupon token starts with {PREFIX!r}")
    try:
        raw = base45.decode(cleaned[len(PREFIX) :])
    except base45.Base45Error as error:
        raise MalformedToken(str(error)) from None
    if len(raw) != TOKEN_SIZE:
        raise MalformedToken(f"a token holds {TOKEN_SIZE} bytes, got {len(raw)}")
    return Coupon.from_payload(raw[:PAYLOAD_SIZE]), raw[PAYLOAD_SIZE:]


def verify_token(
    text: str,
    keys: Mapping[int, bytes],
    store: int,
    revoked: Collection[bytes],
    now: float,
    *,
    revoked_campaigns: Collection[int] = (),
) -> Verification:
    """Check a token offline; never raises.

    ``keys`` maps key id to a raw 32-byte Ed25519 public key, ``store`` is this device's store,
    ``revoked`` holds revoked serials, ``revoked_campaigns`` withdrawn campaigns and ``now`` is unix
    time. The checks run in this order and the first failure is the result: malformed, unknown_key,
    bad_signature, revoked, not_yet_valid, expired, wrong_store. Nothing is trusted before the
    signature holds, and a withdrawn coupon is
    reported as withdrawn even when it has also expired.
    """
    try:
        coupon, signature = decode_token(text)
    except MalformedToken as error:
        logger.debug("malformed coupon token: %s", error)
        return Verification(VerifyResult.MALFORMED, None)

    raw_key = keys.get(coupon.key_id)
    public_key = _public_key(bytes(raw_key)) if raw_key is not None else None
    if public_key is None:
        return Verification(VerifyResult.UNKNOWN_KEY, coupon)
    try:
        public_key.verify(signature, SIGNING_CONTEXT + coupon.payload())
    except InvalidSignature:
        return Verification(VerifyResult.BAD_SIGNATURE, coupon)

    if coupon.serial in revoked or coupon.campaign in revoked_campaigns:
        result = VerifyResult.REVOKED
    elif now < coupon.not_before:
        result = VerifyResult.NOT_YET_VALID
    elif now >= coupon.expires:
        result = VerifyResult.EXPIRED
    elif coupon.store not in (0, store):
        result = VerifyResult.WRONG_STORE
    else:
        result = VerifyResult.VALID
    return Verification(result, coupon)


@lru_cache(maxsize=64)
def _public_key(raw: bytes) -> Ed25519PublicKey | None:
    """Load a raw public key once; None (and an error in the log) if it is not a usable key."""
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        logger.error("an issuer key of %d bytes is not a usable Ed25519 public key", len(raw))
        return None
