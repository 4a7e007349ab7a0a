"""The command format: canonical encoding, signature, targets, validity, and the TOML writer."""

from __future__ import annotations

import json
import tomllib

import pytest
from fleet_helpers import FLEET_KEY, command, signed

from agent.fleet.commands import (
    CLOCK_SKEW_S,
    CommandRejected,
    Reason,
    Target,
    canonical_bytes,
    check_time,
    decode,
    verify_signature,
)
from agent.fleet.toml_text import to_toml

PUBLIC = FLEET_KEY.public_key().public_bytes_raw()


def test_the_canonical_form_sorts_keys_drops_whitespace_and_the_signature() -> None:
    doc = {"b": {"z": 1, "a": "é"}, "a": [1, 2], "signature": "x"}
    assert canonical_bytes(doc) == '{"a":[1,2],"b":{"a":"é","z":1}}'.encode()


def test_a_signed_command_decodes_and_verifies_whatever_the_field_order() -> None:
    wire = json.loads(signed(command("ping")))
    reordered = json.dumps(dict(reversed(list(wire.items()))), indent=2).encode()
    cmd, signature, document = decode(reordered)
    verify_signature(document, signature, PUBLIC, cmd)
    assert cmd.id == "cmd-1" and cmd.target == Target("device", "till-1")


def test_an_unknown_field_is_malformed() -> None:
    wire = json.loads(signed(command("ping")))
    wire["extra"] = 1
    with pytest.raises(CommandRejected) as refused:
        decode(json.dumps(wire).encode())
    assert refused.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-CLOCK_SKEW_S - 5, Reason.NOT_YET_VALID), (3600, Reason.EXPIRED), (-CLOCK_SKEW_S + 5, None), (3599, None)],
)
def test_validity_allows_a_little_clock_skew(offset: int, reason: Reason | None) -> None:
    cmd = command("ping", issued_at=1_000_000, ttl=3600)
    if reason is None:
        check_time(cmd, 1_000_000 + offset)
        return
    with pytest.raises(CommandRejected) as refused:
        check_time(cmd, 1_000_000 + offset)
    assert refused.value.reason is reason


@pytest.mark.parametrize("text", ["devices:a", "device:", "group:a/b", "x"])
def test_a_bad_target_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="target"):
        Target.parse(text)


def test_a_json_config_object_is_written_as_toml_that_reads_back_the_same() -> None:
    doc = {
        "device": {"id": "till-1", "state_dir": "/var/lib/x"},
        "camera": {"source": 0, "target_fps": 5.5, "lines": {"door way": {"a": [0.1, 0.5], "b": [0.9, 0.5]}}},
        "sync": {"coupon_offers": [[1, 2], [3, 4]]},
        "mqtt": {"host": 'b"roker', "tls": False},
    }
    assert tomllib.loads(to_toml(doc)) == doc
