"""Base45 against the RFC 9285 examples, its invalid inputs, and a round-trip property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.coupons.base45 import ALPHABET, Base45Error, decode, encode

RFC_EXAMPLES = [
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
]


@pytest.mark.parametrize(("data", "text"), RFC_EXAMPLES)
def test_rfc_examples_encode(data: bytes, text: str) -> None:
    assert encode(data) == text


@pytest.mark.parametrize(("data", "text"), RFC_EXAMPLES)
def test_rfc_examples_decode(data: bytes, text: str) -> None:
    assert decode(text) == data


def test_alphabet_is_the_rfc_table_in_value_order() -> None:
    assert len(ALPHABET) == 45
    assert ALPHABET[0] == "0" and ALPHABET[10] == "A" and ALPHABET[36] == " " and ALPHABET[44] == ":"


def test_empty_input_is_empty_output() -> None:
    assert encode(b"") == ""
    assert decode("") == b""


def test_group_edges_encode_to_their_extremes() -> None:
    assert encode(b"\x00\x00") == "000"
    assert encode(b"\xff\xff") == "FGW"
    assert encode(b"\x00") == "00"
    assert encode(b"\xff") == "U5"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("GGW", "triple worth 65536"),
        ("ZZZ", "triple worth 72485"),
        ("ZZZZ", "lone final character"),
        ("Z", "lone single character"),
        ("ZZ", "final pair worth 1610"),
        ("V5", "final pair worth 256"),
        ("QED8WEX", "seven characters leave a lone one"),
        ("qed8wex0", "lower case is not in the alphabet"),
        ("QED8WEX!", "'!' is not in the alphabet"),
        ("BB8\n", "a newline is not in the alphabet"),
        ("BBÄ", "non-ASCII character"),
    ],
)
def test_invalid_text_raises_base45_error(text: str, why: str) -> None:
    with pytest.raises(Base45Error):
        decode(text)


def test_base45_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode("GGW")


@given(st.binary(max_size=300))
def test_any_bytes_round_trip(data: bytes) -> None:
    text = encode(data)
    assert set(text) <= set(ALPHABET)
    assert len(text) == len(data) // 2 * 3 + len(data) % 2 * 2
    assert decode(text) == data


@given(st.text(max_size=60))
def test_decoding_arbitrary_text_returns_bytes_or_raises_base45_error(text: str) -> None:
    try:
        data = decode(text)
    except Base45Error:
        return
    assert encode(data) == text
