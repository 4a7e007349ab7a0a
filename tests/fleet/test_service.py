"""The fleet agent on a real SQLite database: refusals are audited and change nothing; commands act."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fleet_helpers import FLEET_KEY, NOW, command, device_toml, public_b64, signed

from agent.config import AgentConfig, load_config
from agent.contract.payloads import JobState
from agent.coupons.desk import CouponDesk
from agent.coupons.token import Coupon, VerifyResult, issue_token, new_serial
from agent.fleet import jobs
from agent.fleet.commands import MAX_COMMAND_BYTES
from agent.fleet.service import FleetAgent
from agent.storage.audit import entries
from agent.storage.database import fetch_all

TOPIC = "retail/v1/acme/store-042/till-1/cmd/x"


class Device:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "agent.toml"
        self.path.write_text(device_toml(tmp_path / "state"), encoding="utf-8")
        self.config: AgentConfig = load_config(self.path)
        self.reloads = 0
        self.fleet = FleetAgent(lambda: self.config, config_path=self.path, request_reload=self._reload)

    def _reload(self) -> None:
        self.reloads += 1

    def send(self, payload: bytes, now: float = NOW) -> jobs.Job | None:
        return self.fleet.process(TOPIC, payload, now)

    @property
    def db(self):  # type: ignore[no-untyped-def]
        return self.fleet._database()

    def refusals(self) -> list[str]:
        return [
            str(e.detail.get("reason"))
            for e in entries(self.db, action="fleet_command")
            if e.outcome == "refused" and e.role == "fleet"
        ]

    def job_count(self) -> int:
        return int(fetch_all(self.db, "SELECT COUNT(*) FROM fleet_jobs")[0][0])

    def outbox(self, kind: str) -> list[dict[str, object]]:
        rows = fetch_all(self.db, "SELECT payload, retain FROM outbox WHERE kind = ? ORDER BY id", [kind])
        return [json.loads(row[0]) | {"_retain": bool(row[1])} for row in rows]


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    made = Device(tmp_path)
    yield made
    made.fleet.close()


SERIAL = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (signed(command("revoke", {"serials": [SERIAL]}), Ed25519PrivateKey.generate()), "bad_signature"),
        (json.dumps(command("revoke", {"serials": [SERIAL]}).document()).encode(), "unsigned"),
        (signed(command("revoke", {"serials": [SERIAL]}, issued_at=NOW - 7200)), "expired"),
        (signed(command("revoke", {"serials": [SERIAL]}, issued_at=NOW + 3600)), "not_yet_valid"),
        (signed(command("revoke", {"serials": [SERIAL]}, target="device:till-2")), "wrong_target"),
        (signed(command("revoke", {"serials": [SERIAL]}, target="store:store-043")), "wrong_target"),
        (signed(command("revoke", {"serials": [SERIAL]}, target="group:north")), "wrong_target"),
        (signed(command("revoke", {"serials": [SERIAL]}, tenant="other")), "wrong_tenant"),
        (b"{not json", "malformed"),
        (b'{"schema": "fleet_command.v1", "id": "a", "id": "b"}', "malformed"),
        (b" " * (MAX_COMMAND_BYTES + 1), "oversized"),
    ],
    ids=[
        "forged",
        "unsigned",
        "expired",
        "not-yet-valid",
        "other-device",
        "other-store",
        "other-group",
        "other-tenant",
        "not-json",
        "duplicate-key",
        "oversized",
    ],
)
def test_a_refused_command_is_audited_with_its_reason_and_changes_nothing(
    device: Device, payload: bytes, reason: str
) -> None:
    assert device.send(payload) is None
    assert device.refusals() == [reason]
    assert device.job_count() == 0
    assert fetch_all(device.db, "SELECT COUNT(*) FROM revoked_serials")[0][0] == 0
    assert fetch_all(device.db, "SELECT COUNT(*) FROM fleet_commands_seen")[0][0] == 0


def test_a_tampered_body_fails_the_signature(device: Device) -> None:
    wire = json.loads(signed(command("revoke", {"serials": [SERIAL]})))
    wire["body"]["serials"] = ["f" * 32]
    assert device.send(json.dumps(wire).encode()) is None
    assert device.refusals() == ["bad_signature"]


def test_a_replayed_command_is_refused_and_runs_once(device: Device) -> None:
    payload = signed(command("revoke", {"campaigns": [7]}))
    first = device.send(payload)
    assert first is not None and first.state is JobState.SUCCEEDED
    assert device.send(payload, now=NOW + 5) is None
    assert device.refusals() == ["replayed"]
    assert [j["state"] for j in device.outbox("jobs")] == ["QUEUED", "IN_PROGRESS", "SUCCEEDED"]


def test_a_revocation_reaches_the_desk_and_that_coupon_is_refused(device: Device) -> None:
    issuer = Ed25519PrivateKey.generate()
    raw = issuer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    coupon = Coupon(1, 4, 1001, new_serial(), int(NOW) - 60, int(NOW) + 86_400, 15, 0)
    token = issue_token(coupon, issuer)
    added = device.send(
        signed(command("issuer_keys", {"action": "add", "key_id": 4, "public_key": public_b64(issuer)}, command_id="k"))
    )
    assert added is not None and added.state is JobState.SUCCEEDED
    with CouponDesk.from_config(device.config) as desk:
        assert desk.issuer_keys()[4] == raw
        assert desk.verify(token, now=NOW).result is VerifyResult.VALID  # a key added by command verifies

    job = device.send(signed(command("revoke", {"serials": [coupon.serial_hex]}, command_id="r")))
    assert job is not None and job.state is JobState.SUCCEEDED and job.details == {"serials": 1, "campaigns": 0}
    with CouponDesk.from_config(device.config) as desk:
        assert desk.verify(token, now=NOW).result is VerifyResult.REVOKED
    revokes = [e for e in entries(device.db, action="revoke")]
    assert revokes and revokes[0].role == "fleet" and revokes[0].actor_id == "r"


def test_an_unknown_type_or_bad_body_becomes_a_rejected_job(device: Device) -> None:
    bad = device.send(signed(command("revoke", {"serials": ["xyz"]}, command_id="bad")))
    unknown = device.send(signed(command("reboot", {}, command_id="unknown")))
    assert bad is not None and bad.state is JobState.REJECTED and bad.reason == "bad_body"
    assert unknown is not None and unknown.state is JobState.REJECTED and unknown.reason == "unknown_type"
    assert sorted(device.refusals()) == ["bad_body", "unknown_type"]


def test_ping_is_answered_with_a_job_status(device: Device) -> None:
    job = device.send(signed(command("ping", command_id="ping-1")))
    assert job is not None and job.state is JobState.SUCCEEDED
    statuses = device.outbox("jobs")
    assert [s["version"] for s in statuses] == [1, 2, 3]
    assert statuses[-1]["details"]["agent_version"]


def test_a_rotated_fleet_key_wins_over_the_config(device: Device) -> None:
    new_key = Ed25519PrivateKey.generate()
    rotated = device.send(signed(command("fleet_key", {"public_key": public_b64(new_key)}, command_id="rot")))
    assert rotated is not None and rotated.state is JobState.SUCCEEDED
    # The old key no longer works; the new one does, also for a fresh fleet agent (after a restart).
    assert device.send(signed(command("ping", command_id="old"))) is None
    assert device.refusals() == ["bad_signature"]
    device.fleet.close()
    device.fleet = FleetAgent(lambda: device.config, config_path=device.path)
    job = device.send(signed(command("ping", command_id="new"), new_key))
    assert job is not None and job.state is JobState.SUCCEEDED
    assert [e.action for e in entries(device.db, action="fleet_key_rotate")] == ["fleet_key_rotate"]


def test_an_invalid_desired_config_is_rejected_with_key_paths_and_the_file_stays(device: Device) -> None:
    before = device.path.read_bytes()
    desired = device_toml(device.config.device.state_dir, extra="\n[camera]\ntarget_fps = -1\nbogus = 1\n")
    job = device.send(signed(command("config", {"version": 2, "toml": desired}, command_id="cfg-bad")))
    assert job is not None and job.state is JobState.REJECTED and job.reason == "invalid_config"
    assert device.path.read_bytes() == before
    assert device.reloads == 0
    [report] = device.outbox("config_reported")
    assert report["applied"] is False and report["_retain"] is True
    assert sorted(report["problems"]) == ["camera.bogus", "camera.target_fps"]
    assert list(device.path.parent.glob(".*.tmp")) == []


def test_a_valid_desired_config_is_written_atomically_reported_and_reloaded(device: Device) -> None:
    desired = {
        "device": {
            "id": "till-1",
            "tenant": "acme",
            "store": "store-042",
            "state_dir": str(device.config.device.state_dir),
        },
        "fleet": {"public_key": public_b64(FLEET_KEY), "groups": []},
        "camera": {"target_fps": 5.0, "lines": {"door": {"a": [0.1, 0.5], "b": [0.9, 0.5]}}},
    }
    job = device.send(signed(command("config", {"version": 3, "config": desired}, command_id="cfg-ok")))
    assert job is not None and job.state is JobState.SUCCEEDED
    written = load_config(device.path)
    assert written.camera.target_fps == 5.0 and "door" in written.camera.lines
    assert device.reloads == 1
    [report] = device.outbox("config_reported")
    assert report["applied"] is True and report["desired_version"] == 3 and report["_retain"] is True
    # An older version afterwards is refused as stale, and the file stays.
    after = device.path.read_bytes()
    stale = device.send(signed(command("config", {"version": 2, "config": desired}, command_id="cfg-old")))
    assert stale is not None and stale.reason == "stale_version"
    assert device.path.read_bytes() == after


def test_a_desired_config_cannot_move_the_device(device: Device) -> None:
    before = device.path.read_bytes()
    desired = device_toml(device.config.device.state_dir).replace('id = "till-1"', 'id = "till-9"')
    job = device.send(signed(command("config", {"version": 1, "toml": desired}, command_id="cfg-move")))
    assert job is not None and job.state is JobState.REJECTED
    assert device.path.read_bytes() == before
    assert device.outbox("config_reported")[0]["problems"] == ["device"]


def test_a_desired_config_cannot_drop_the_fleet_section(device: Device) -> None:
    desired = device_toml(device.config.device.state_dir).split("[fleet]")[0]
    job = device.send(signed(command("config", {"version": 1, "toml": desired}, command_id="cfg-nofleet")))
    assert job is not None and job.state is JobState.SUCCEEDED
    # Left out, the section is kept: the device still takes fleet commands with the same key.
    assert load_config(device.path).fleet == device.config.fleet


def test_a_command_failing_on_a_locked_database_is_kept_with_those_after_it(device: Device) -> None:
    first = signed(command("revoke", {"campaigns": [1]}, command_id="first"))
    second = signed(command("revoke", {"campaigns": [2]}, command_id="second"))
    third = signed(command("revoke", {"campaigns": [3]}, command_id="third"))
    fleet = FleetAgent(lambda: device.config, config_path=device.path)
    fleet._database()  # recovery and migrations before the lock
    fleet(NOW)
    for name, payload in (("first", first), ("second", second), ("third", third)):
        fleet.handle(f"retail/v1/acme/store-042/till-1/cmd/{name}", payload)
    # Another writer holds the database past the busy timeout: the first command cannot be recorded.
    fleet._database().conn.execute("PRAGMA busy_timeout = 50")
    blocker = sqlite3.connect(device.config.database_path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        fleet(NOW)
    finally:
        blocker.rollback()
        blocker.close()
    assert fleet.pending() == 3
    fleet(NOW + 1)
    assert fleet.pending() == 0
    states = {job_id: jobs.get(device.db, job_id) for job_id in ("first", "second", "third")}
    assert all(job is not None and job.state is JobState.SUCCEEDED for job in states.values()), states
    fleet.close()


def test_a_job_recorded_before_the_database_failed_runs_on_the_next_tick(
    device: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = FleetAgent(lambda: device.config, config_path=device.path)
    fleet(NOW)
    real_transition = jobs.transition
    failures = [sqlite3.OperationalError("database or disk is full")]

    def transition(db, device_id, job_id, state, **kwargs):  # type: ignore[no-untyped-def]
        if state is JobState.IN_PROGRESS and failures:
            raise failures.pop()  # the job is recorded QUEUED, then the disk fills up
        return real_transition(db, device_id, job_id, state, **kwargs)

    monkeypatch.setattr(jobs, "transition", transition)
    fleet.handle(TOPIC, signed(command("revoke", {"campaigns": [5]}, command_id="half")))
    fleet(NOW)
    queued = jobs.get(device.db, "half")
    assert queued is not None and queued.state is JobState.QUEUED and fleet.pending() == 1
    fleet(NOW + 1)
    done = jobs.get(device.db, "half")
    assert done is not None and done.state is JobState.SUCCEEDED and fleet.pending() == 0
    assert device.refusals() == []  # its requeued copy is no replay
    fleet.close()
