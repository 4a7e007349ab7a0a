"""The C1 token: layout, issuing, every verification outcome, forgery and fuzzing of the parser."""

from __future__ import annotations

import dataclasses

import pytest
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.coupons import base45
from agent.coupons.token import (
    PAYLOAD_SIZE,
    TOKEN_SIZE,
    Coupon,
    MalformedToken,
    Verification,
    VerifyResult,
    decode_token,
    issue_token,
    new_serial,
    verify_token,
)

KEY_ID = 7
STORE = 42
NOT_BEFORE = 1_750_000_000
EXPIRES = NOT_BEFORE + 30 * 86400
NOW = NOT_BEFORE + 86400
SERIAL = bytes(range(16))

# Outcomes an altered or random token may legitimately get; VALID is never one of them.
REJECTIONS = {VerifyResult.MALFORMED, VerifyResult.UNKNOWN_KEY, VerifyResult.BAD_SIGNATURE}


def raw_public(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


PRIVATE = Ed25519PrivateKey.generate()
OTHER_PRIVATE = Ed25519PrivateKey.generate()
KEYS = {KEY_ID: raw_public(PRIVATE)}
EVERY_ID_KEYS = {key_id: raw_public(PRIVATE) for key_id in range(256)}


def make_coupon(**changes: object) -> Coupon:
    fields: dict[str, object] = {
        "version": 1,
        "key_id": KEY_ID,
        "campaign": 123456,
        "serial": SERIAL,
        "not_before": NOT_BEFORE,
        "expires": EXPIRES,
        "offer": 9,
        "store": STORE,
    }
    fields.update(changes)
    return Coupon(**fields)  # type: ignore[arg-type]


def check(text: str, *, keys: dict[int, bytes] = KEYS, store: int = STORE, revoked=(), now=NOW) -> Verification:
    return verify_token(text, keys, store, revoked, now)


def signed_raw(payload: bytes, key: Ed25519PrivateKey = PRIVATE) -> str:
    """A token text from arbitrary payload bytes, properly signed."""
    return "C1:" + base45.encode(payload + key.sign(b"C1" + payload))


@pytest.fixture(scope="module")
def token() -> str:
    return issue_token(make_coupon(), PRIVATE)


# --- layout and issuing ---------------------------------------------------------------------------


def test_payload_layout_is_34_big_endian_bytes_in_the_documented_order() -> None:
    coupon = make_coupon(campaign=0x01020304, not_before=0x0A0B0C0D, expires=0x0A0B0C0E, offer=0xBEEF)
    expected = (
        b"\x01"  # version
        + b"\x07"  # key_id
        + b"\x01\x02\x03\x04"  # campaign
        + SERIAL
        + b"\x0a\x0b\x0c\x0d"  # not_before
        + b"\x0a\x0b\x0c\x0e"  # expires
        + b"\xbe\xef"  # offer
        + b"\x00\x2a"  # store 42
    )
    assert coupon.payload() == expected
    assert PAYLOAD_SIZE == 34
    assert Coupon.from_payload(expected) == coupon


def test_issued_token_is_prefix_plus_base45_of_payload_and_signature_over_c1_context(token: str) -> None:
    assert token.startswith("C1:")
    raw = base45.decode(token[3:])
    assert len(raw) == TOKEN_SIZE == 98
    payload, signature = raw[:34], raw[34:]
    assert payload == make_coupon().payload()
    PRIVATE.public_key().verify(signature, b"C1" + payload)  # raises if the signed message differs


def test_valid_token_verifies_and_returns_its_coupon(token: str) -> None:
    assert check(token) == Verification(VerifyResult.VALID, make_coupon())


def test_signature_over_the_bare_payload_is_rejected() -> None:
    payload = make_coupon().payload()
    text = "C1:" + base45.encode(payload + PRIVATE.sign(payload))
    assert check(text).result is VerifyResult.BAD_SIGNATURE


@pytest.mark.parametrize(
    "coupon",
    [
        make_coupon(),
        make_coupon(
            key_id=255,
            campaign=2**32 - 1,
            serial=b"\xff" * 16,
            not_before=2**32 - 1,
            expires=2**32 - 1,
            offer=65535,
            store=65535,
        ),
        make_coupon(key_id=0, campaign=0, serial=b"\x00" * 16, not_before=0, expires=0, offer=0, store=0),
    ],
)
def test_token_fits_a_version_6_qr_at_error_correction_m_in_alphanumeric_mode(coupon: Coupon) -> None:
    text = issue_token(coupon, PRIVATE)
    qr = segno.make(text, error="m", mode="alphanumeric", micro=False, boost_error=False)
    assert qr.version <= 6
    assert qr.error == "M"
    assert qr.mode == "alphanumeric"


def test_new_serials_are_16_random_bytes() -> None:
    serials = {new_serial() for _ in range(100)}
    assert len(serials) == 100
    assert all(len(serial) == 16 for serial in serials)


def test_serial_hex_is_32_lower_case_digits() -> None:
    assert make_coupon(serial=b"\xab" * 16).serial_hex == "ab" * 16


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2},
        {"key_id": 256},
        {"key_id": -1},
        {"campaign": 2**32},
        {"serial": b"\x00" * 15},
        {"not_before": -1},
        {"expires": 2**32},
        {"offer": 65536},
        {"store": 65536},
        {"store": True},
        {"offer": 1.0},
        {"not_before": EXPIRES + 1},
    ],
)
def test_coupon_refuses_values_the_layout_cannot_hold(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_coupon(**changes)


def test_every_result_has_a_distinct_sentence_for_staff() -> None:
    messages = [result.message for result in VerifyResult]
    assert len(set(messages)) == len(VerifyResult)
    assert all(message.endswith(".") and message[0].isupper() for message in messages)
    assert VerifyResult.EXPIRED.message == "This coupon has expired."
    assert str(VerifyResult.WRONG_STORE) == "wrong_store"


# --- outcomes and their order ---------------------------------------------------------------------


def test_unknown_key_id() -> None:
    assert check(issue_token(make_coupon(key_id=8), PRIVATE)).result is VerifyResult.UNKNOWN_KEY


def test_signed_with_the_wrong_key_for_its_key_id_is_bad_signature() -> None:
    result = check(issue_token(make_coupon(), OTHER_PRIVATE))
    assert result.result is VerifyResult.BAD_SIGNATURE
    assert result.coupon == make_coupon()


def test_an_unusable_configured_key_counts_as_unknown(token: str) -> None:
    assert check(token, keys={KEY_ID: b"\x01" * 31}).result is VerifyResult.UNKNOWN_KEY


def test_expired() -> None:
    assert check(issue_token(make_coupon(), PRIVATE), now=EXPIRES + 3600).result is VerifyResult.EXPIRED


def test_not_yet_valid() -> None:
    assert check(issue_token(make_coupon(), PRIVATE), now=NOT_BEFORE - 3600).result is VerifyResult.NOT_YET_VALID


def test_wrong_store() -> None:
    assert check(issue_token(make_coupon(store=STORE + 1), PRIVATE)).result is VerifyResult.WRONG_STORE


@pytest.mark.parametrize("device_store", [0, 1, STORE, 65535])
def test_store_zero_coupon_is_accepted_at_any_store(device_store: int) -> None:
    text = issue_token(make_coupon(store=0), PRIVATE)
    assert check(text, store=device_store).result is VerifyResult.VALID


def test_revoked(token: str) -> None:
    assert check(token, revoked=frozenset({SERIAL})).result is VerifyResult.REVOKED
    assert check(token, revoked=frozenset({b"\x00" * 16})).result is VerifyResult.VALID


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (NOT_BEFORE - 0.001, VerifyResult.NOT_YET_VALID),
        (NOT_BEFORE, VerifyResult.VALID),  # not_before is inclusive
        (EXPIRES - 0.001, VerifyResult.VALID),
        (EXPIRES, VerifyResult.EXPIRED),  # expires is exclusive
    ],
)
def test_validity_is_not_before_inclusive_until_expires_exclusive(now: float, expected: VerifyResult) -> None:
    assert check(issue_token(make_coupon(), PRIVATE), now=now).result is expected


def test_checks_run_in_the_documented_order() -> None:
    # Every check would fail; each step removes the first failure and the next one shows.
    late_elsewhere = make_coupon(key_id=9, store=STORE + 1)
    revoked = frozenset({SERIAL})
    after = EXPIRES + 1
    assert check(issue_token(late_elsewhere, OTHER_PRIVATE), revoked=revoked, now=after).result is (
        VerifyResult.UNKNOWN_KEY
    )
    keys = {9: raw_public(PRIVATE)}
    steps = [
        (OTHER_PRIVATE, revoked, after, VerifyResult.BAD_SIGNATURE),
        (PRIVATE, revoked, after, VerifyResult.REVOKED),
        (PRIVATE, (), NOT_BEFORE - 1, VerifyResult.NOT_YET_VALID),
        (PRIVATE, (), after, VerifyResult.EXPIRED),
        (PRIVATE, (), NOW, VerifyResult.WRONG_STORE),
    ]
    for key, revoked_now, now, expected in steps:
        text = issue_token(late_elsewhere, key)
        assert check(text, keys=keys, revoked=revoked_now, now=now).result is expected


def test_verify_never_reports_already_redeemed(token: str) -> None:
    assert check(token).result is not VerifyResult.ALREADY_REDEEMED


# --- text handling --------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", [" {} ", "{}\n", "\t{}\r\n", "\n\n{}"])
def test_surrounding_whitespace_is_stripped(token: str, wrap: str) -> None:
    assert check(wrap.format(token)).result is VerifyResult.VALID


def test_lower_case_letters_are_folded_to_upper_case(token: str) -> None:
    assert check(token.lower()).result is VerifyResult.VALID
    assert check(token.swapcase()).result is VerifyResult.VALID


def test_non_ascii_letters_that_upper_case_to_ascii_are_not_folded() -> None:
    # "ﬀ".upper() == "FF": case folding must not turn other text into a valid token.
    for number in range(2000):
        text = issue_token(make_coupon(campaign=number), PRIVATE)
        if "FF" in text[3:]:
            break
    else:
        pytest.fail("no token with 'FF' found")
    assert check(text).result is VerifyResult.VALID
    assert check(text[:3] + text[3:].replace("FF", "\ufb00", 1)).result is VerifyResult.MALFORMED


@pytest.mark.parametrize("insert", ["\n", "\t", "x!", "  "])
def test_anything_inside_the_token_is_malformed(token: str, insert: str) -> None:
    text = token[:40] + insert + token[40:]
    assert check(text).result is VerifyResult.MALFORMED


def test_decode_token_raises_malformed_token_for_garbage() -> None:
    with pytest.raises(MalformedToken):
        decode_token("C1:ZZZ")


# --- forgery --------------------------------------------------------------------------------------


def test_every_single_bit_flip_of_the_decoded_bytes_is_rejected(token: str) -> None:
    raw = base45.decode(token[3:])
    results = set()
    for index in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[index // 8] ^= 0x80 >> (index % 8)
        # Every key id maps to the signing key, so a changed key id must fail on the signature too.
        outcome = check("C1:" + base45.encode(bytes(flipped)), keys=EVERY_ID_KEYS).result
        assert outcome in {VerifyResult.MALFORMED, VerifyResult.BAD_SIGNATURE}, (index, outcome)
        results.add(outcome)
    assert VerifyResult.BAD_SIGNATURE in results


def test_every_character_replacement_in_the_text_is_rejected(token: str) -> None:
    for position in range(len(token)):
        for char in base45.ALPHABET:
            if char == token[position]:
                continue
            text = token[:position] + char + token[position + 1 :]
            outcome = check(text, keys=EVERY_ID_KEYS).result
            assert outcome in REJECTIONS, (position, char, outcome)


def test_every_prefix_of_a_token_is_malformed(token: str) -> None:
    for end in range(len(token)):
        assert check(token[:end]).result is VerifyResult.MALFORMED, end


@pytest.mark.parametrize("suffix", ["0", "00", "000", "C1:"])
def test_extra_characters_after_a_token_are_malformed(token: str, suffix: str) -> None:
    assert check(token + suffix).result is VerifyResult.MALFORMED


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "C1:",
        "C1",
        "C2:" + "0" * 147,
        "C1:" + base45.encode(b"\x01" * 97),
        "C1:" + base45.encode(b"\x01" * 99),
        "https://example.com/coupon?id=1",
        "4006381333931",
        "C1:" + "\x00" * 147,
        "C1:" + "é" * 147,
    ],
)
def test_garbage_is_malformed(text: str) -> None:
    assert check(text) == Verification(VerifyResult.MALFORMED, None)


def test_a_signed_payload_with_an_unknown_version_is_malformed() -> None:
    payload = b"\x02" + make_coupon().payload()[1:]
    assert check(signed_raw(payload)).result is VerifyResult.MALFORMED


def test_a_signed_payload_that_expires_before_it_starts_is_malformed() -> None:
    good = make_coupon().payload()
    payload = good[:22] + EXPIRES.to_bytes(4, "big") + NOT_BEFORE.to_bytes(4, "big") + good[30:]
    assert check(signed_raw(payload)).result is VerifyResult.MALFORMED


def test_a_coupon_that_starts_and_ends_at_once_is_never_valid() -> None:
    text = issue_token(make_coupon(not_before=NOW, expires=NOW), PRIVATE)
    assert check(text, now=NOW).result is VerifyResult.EXPIRED


# --- fuzzing --------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_arbitrary_text_is_malformed_and_never_raises(text: str) -> None:
    assert check(text) == Verification(VerifyResult.MALFORMED, None)


@settings(max_examples=300)
@given(st.text(alphabet=base45.ALPHABET, max_size=160))
def test_arbitrary_alphanumeric_after_the_prefix_is_rejected_without_raising(body: str) -> None:
    assert check("C1:" + body, keys=EVERY_ID_KEYS).result in REJECTIONS


@settings(max_examples=300)
@given(st.one_of(st.binary(min_size=TOKEN_SIZE, max_size=TOKEN_SIZE), st.binary(max_size=120)))
def test_arbitrary_bytes_in_base45_are_rejected_without_raising(raw: bytes) -> None:
    verification = check("C1:" + base45.encode(raw), keys=EVERY_ID_KEYS)
    assert verification.result in REJECTIONS
    assert (verification.coupon is None) == (verification.result is VerifyResult.MALFORMED)


@settings(max_examples=100)
@given(
    key_id=st.integers(0, 255),
    campaign=st.integers(0, 2**32 - 1),
    serial=st.binary(min_size=16, max_size=16),
    times=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(sorted),
    offer=st.integers(0, 65535),
    store=st.integers(0, 65535),
)
def test_any_coupon_round_trips_through_its_token(
    key_id: int, campaign: int, serial: bytes, times: list[int], offer: int, store: int
) -> None:
    coupon = Coupon(1, key_id, campaign, serial, times[0], times[1], offer, store)
    text = issue_token(coupon, PRIVATE)
    assert decode_token(text)[0] == coupon
    assert len(text) == 150
    verification = check(text, keys=EVERY_ID_KEYS, store=store, now=times[0])
    expected = VerifyResult.VALID if times[0] < times[1] else VerifyResult.EXPIRED
    assert verification == Verification(expected, coupon)


def test_coupon_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_coupon().store = 1  # type: ignore[misc]
