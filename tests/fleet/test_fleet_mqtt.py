"""End to end over a real Mosquitto: the operator tool signs and sends, the device runs the job and reports."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import device_toml
from sqlite_utils import Database
from sync_broker import Broker, wait_until

from agent.config import load_config
from agent.runtime.fleet import register_fleet
from agent.runtime.syncing import topics_of
from agent.storage.audit import entries
from agent.storage.database import fetch_all, open_database
from agent.sync.dispatch import Dispatcher
from agent.sync.mqtt import PahoTransport
from agent.sync.service import SyncService
from provisioning import cli
from provisioning.fleet import build_command, command_topic, send_command, sign

pytestmark = pytest.mark.integration


@pytest.fixture
def running_device(tmp_path: Path, fleet_broker: Broker) -> Iterator[Path]:
    """A device syncing with the broker, fleet wired as the runtime wires it; yields the key folder."""
    keys = tmp_path / "keys"
    assert cli.main(["fleet", "keygen", "--out", str(keys)]) == 0
    public = (keys / "fleet.toml").read_text().split('"')[1]
    path = tmp_path / "agent.toml"
    text = device_toml(tmp_path / "state", mqtt=fleet_broker.mqtt_section(), groups='["north"]')
    path.write_text(text.replace(text.split('public_key = "')[1].split('"')[0], public), encoding="utf-8")
    config = load_config(path)
    dispatcher = Dispatcher()
    stop = threading.Event()
    assert register_fleet(dispatcher, config, config_path=path) is not None
    service = SyncService(config, config.database_path, topics_of(config), PahoTransport, stop, dispatcher=dispatcher)
    service.start()
    try:
        assert wait_until(lambda: service.connected)
        yield keys
    finally:
        stop.set()
        service.join(10)


def test_the_operator_sends_a_ping_and_sees_the_job_succeed(running_device: Path, fleet_broker: Broker) -> None:
    cmd = build_command(tenant="acme", target="device:till-1", command_type="ping", body="{}", command_id="ping-7")
    topic = command_topic(cmd, store="store-042")
    statuses = send_command(
        sign(cmd, running_device / "fleet.key"),
        topic,
        host=fleet_broker.host,
        port=fleet_broker.port,
        wait_job=("acme", "ping-7"),
        timeout_s=20,
    )
    assert [s["state"] for s in statuses][-1] == "SUCCEEDED"
    assert [s["version"] for s in statuses] == sorted(s["version"] for s in statuses)
    assert all(s["device"] == "till-1" for s in statuses)


def test_a_group_command_from_the_cli_revokes_a_campaign(
    running_device: Path, fleet_broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "fleet", "send", "--key", str(running_device / "fleet.key"), "--tenant", "acme",
            "--target", "group:north", "--type", "revoke", "--body", '{"campaigns": [77]}',
            "--broker", f"{fleet_broker.host}:{fleet_broker.port}", "--id", "revoke-77", "--wait", "--timeout", "20",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "till-1: SUCCEEDED" in out
    db = open_database(tmp_path / "state" / "agent.db")
    try:
        assert [e.subject for e in entries(db, action="revoke")] == ["campaign:77"]
    finally:
        db.close()


def test_a_command_signed_with_another_key_is_refused_over_mqtt(
    running_device: Path, fleet_broker: Broker, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    assert cli.main(["fleet", "keygen", "--out", str(other)]) == 0
    cmd = build_command(tenant="acme", target="device:till-1", command_type="ping", body="{}", command_id="forged")
    send_command(sign(cmd, other / "fleet.key"), command_topic(cmd, store="store-042"),
                 host=fleet_broker.host, port=fleet_broker.port)  # fmt: skip
    db = open_database(tmp_path / "state" / "agent.db")
    try:
        assert wait_until(lambda: any(e.detail.get("reason") == "bad_signature" for e in entries(db)))
        assert fetch_jobs(db) == 0
    finally:
        db.close()


def fetch_jobs(db: Database) -> int:
    return int(fetch_all(db, "SELECT COUNT(*) FROM fleet_jobs")[0][0])


def test_send_refuses_bad_operator_input_with_a_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = cli.main(
        ["fleet", "send", "--key", str(tmp_path / "none.key"), "--tenant", "acme", "--target", "device:till-1",
         "--type", "ping", "--broker", "localhost:1", "--store", "s", "--body", "[1]"]
    )  # fmt: skip
    assert code == 2
    assert "--body must be a JSON object" in capsys.readouterr().err
