"""The signed ``cancel`` command on a real SQLite database: unfinished jobs end CANCELED, finished ones stay."""

from __future__ import annotations

from pathlib import Path

from fleet_helpers import NOW, command, device_toml, signed

from agent.config import AgentConfig, load_config
from agent.contract.payloads import JobState
from agent.fleet import jobs, replay
from agent.fleet.service import FleetAgent
from agent.storage.audit import entries
from agent.storage.database import fetch_all, transaction

TOPIC = "retail/v1/acme/store-042/till-1/cmd/cancel"


class Device:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "agent.toml"
        self.path.write_text(device_toml(tmp_path / "state"), encoding="utf-8")
        self.config: AgentConfig = load_config(self.path)
        self.fleet = FleetAgent(lambda: self.config, config_path=self.path)
        self.db = self.fleet._database()

    def send(self, payload: bytes, now: float = NOW) -> jobs.Job | None:
        return self.fleet.process(TOPIC, payload, now)

    def job(self, job_id: str) -> jobs.Job:
        found = jobs.get(self.db, job_id)
        assert found is not None
        return found


def start_long_job(device: Device, job_id: str, state: JobState = JobState.IN_PROGRESS) -> None:
    """A job still running (as a model download is, across many sync ticks)."""
    with transaction(device.db):
        jobs.create(device.db, "till-1", job_id, "model", {"id": job_id}, NOW + 3600, now=NOW)
        if state is JobState.IN_PROGRESS:
            jobs.transition(device.db, "till-1", job_id, state, step="downloading", now=NOW)


def test_a_job_in_progress_is_canceled(tmp_path: Path) -> None:
    device = Device(tmp_path)
    start_long_job(device, "model-1")
    done = device.send(signed(command("cancel", {"job_id": "model-1"}, command_id="cancel-1")))
    assert done is not None and done.state is JobState.SUCCEEDED
    canceled = device.job("model-1")
    assert canceled.state is JobState.CANCELED
    assert canceled.details == {"by": "cancel-1"}
    assert canceled.version == 3
    assert done.version == 3


def test_a_queued_job_is_canceled(tmp_path: Path) -> None:
    device = Device(tmp_path)
    start_long_job(device, "model-2", JobState.QUEUED)
    device.send(signed(command("cancel", {"job_id": "model-2"}, command_id="cancel-2")))
    assert device.job("model-2").state is JobState.CANCELED


def test_a_finished_job_is_unaffected_and_the_refusal_is_reported(tmp_path: Path) -> None:
    device = Device(tmp_path)
    ping = device.send(signed(command("ping", command_id="ping-1")))
    assert ping is not None and ping.state is JobState.SUCCEEDED
    refused = device.send(signed(command("cancel", {"job_id": "ping-1"}, command_id="cancel-3")))
    assert refused is not None
    assert refused.state is JobState.REJECTED
    assert refused.reason == "already_finished"
    assert refused.details == {"job_state": "SUCCEEDED"}
    assert device.job("ping-1").state is JobState.SUCCEEDED
    assert device.job("ping-1").version == ping.version


def test_a_job_canceled_before_it_arrives_is_refused_when_it_comes(tmp_path: Path) -> None:
    device = Device(tmp_path)
    done = device.send(signed(command("cancel", {"job_id": "ping-late"}, command_id="cancel-4")))
    assert done is not None and done.state is JobState.SUCCEEDED
    assert done.details == {"job_state": "CANCELED", "before_arrival": True}
    assert device.job("ping-late").state is JobState.CANCELED
    assert device.send(signed(command("ping", command_id="ping-late"))) is None
    assert device.job("ping-late").state is JobState.CANCELED
    refused = [e for e in entries(device.db, action="fleet_command") if e.subject == "cmd:ping-late"]
    assert [e.detail.get("reason") for e in refused] == ["replayed"]


def test_a_cancel_naming_itself_is_rejected(tmp_path: Path) -> None:
    device = Device(tmp_path)
    refused = device.send(signed(command("cancel", {"job_id": "cancel-5"}, command_id="cancel-5")))
    assert refused is not None and refused.state is JobState.REJECTED and refused.reason == "cancels_itself"


def test_a_cancel_without_a_job_id_is_rejected_naming_the_field(tmp_path: Path) -> None:
    device = Device(tmp_path)
    refused = device.send(signed(command("cancel", {}, command_id="cancel-6")))
    assert refused is not None and refused.state is JobState.REJECTED and refused.reason == "bad_body"


def test_job_statuses_are_retained_so_a_late_operator_reads_them(tmp_path: Path) -> None:
    device = Device(tmp_path)
    device.send(signed(command("ping", command_id="ping-9")))
    rows = fetch_all(device.db, "SELECT retain FROM outbox WHERE kind = 'jobs' AND route = 'ping-9'")
    assert rows and all(row[0] == 1 for row in rows)


def test_a_job_and_its_cancel_waiting_together_never_run_the_job(tmp_path: Path) -> None:
    device = Device(tmp_path)
    desired = device_toml(device.config.device.state_dir, extra="\n[camera]\ntarget_fps = 3.0\n")
    before = device.path.read_bytes()
    device.fleet.handle(
        "retail/v1/acme/store-042/till-1/cmd/config",
        signed(command("config", {"version": 9, "toml": desired}, command_id="cfg-9")),
    )
    device.fleet.handle(TOPIC, signed(command("cancel", {"job_id": "cfg-9"}, command_id="cancel-9")))
    device.fleet(NOW)
    assert device.job("cfg-9").state is JobState.CANCELED
    assert device.job("cancel-9").state is JobState.SUCCEEDED
    assert device.path.read_bytes() == before


def test_a_long_lived_job_canceled_before_it_arrives_is_refused_after_the_cancel_is_forgotten(tmp_path: Path) -> None:
    device = Device(tmp_path)
    done = device.send(signed(command("cancel", {"job_id": "model-late"}, command_id="cancel-7", ttl=600)))
    assert done is not None and done.state is JobState.SUCCEEDED
    later = NOW + 20 * 86_400  # the cancel expired long ago, the 30-day job is still valid
    with transaction(device.db):
        replay.forget_expired(device.db, later)
    late = signed(command("ping", command_id="model-late", ttl=30 * 86_400))
    assert device.send(late, now=later) is None
    assert device.job("model-late").state is JobState.CANCELED
    refused = [e for e in entries(device.db, action="fleet_command") if e.subject == "cmd:model-late"]
    assert [e.detail.get("reason") for e in refused] == ["replayed"]


def test_an_id_that_already_has_a_job_is_refused_as_a_replay_even_when_its_seen_id_is_gone(tmp_path: Path) -> None:
    device = Device(tmp_path)
    device.send(signed(command("cancel", {"job_id": "ping-gone"}, command_id="cancel-8")))
    with transaction(device.db):
        device.db.execute("DELETE FROM fleet_commands_seen WHERE id = 'ping-gone'")
    assert device.send(signed(command("ping", command_id="ping-gone"))) is None
    assert device.job("ping-gone").state is JobState.CANCELED
    refused = [e for e in entries(device.db, action="fleet_command") if e.subject == "cmd:ping-gone"]
    assert [e.detail.get("reason") for e in refused] == ["replayed"]
