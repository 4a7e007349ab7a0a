"""The model job's steps on a real SQLite database and real files, with a scripted model host.

The host stands in for the running pipeline (frames, rate, swaps); what is checked is the job's
logic: the rate rule, rollback, expiry and what a restart does at each step. The end-to-end runs
with real models and a real broker are in test_model_delivery.py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fleet_helpers import NOW, command, device_toml, signed

from agent.config import AgentConfig, load_config
from agent.contract.payloads import JobState
from agent.fleet import jobs
from agent.fleet.active_model import ActiveModel, model_path, write_active
from agent.fleet.service import FleetAgent
from agent.sync.transport import MessageHandler

TOPIC = "retail/v1/acme/store-042/till-1/cmd/model"
CHUNK = 1024


class ScriptedHost:
    """Counts frames at ``fps`` of a fake clock; ``fps_after`` once the candidate is in."""

    def __init__(self, clock: list[float], fps: float = 10.0, fps_after: float = 10.0) -> None:
        self.clock = clock
        self.fps, self.fps_after = fps, fps_after
        self.current = "0" * 64
        self.candidate: str | None = None
        self.swapped_at: float | None = None
        self.events: list[str] = []
        self.slower: float | None = 1.0  # the candidate's inference time over the previous model's

    def is_listed(self, sha256: str) -> bool:
        return False

    def current_sha256(self) -> str:
        return self.current

    def load_candidate(self, path: Path, name: str, family: str | None, licence: str | None) -> None:
        self.candidate = hashlib.sha256(path.read_bytes()).hexdigest()
        self.events.append("load")

    def swap_to_candidate(self) -> None:
        self.swapped_at = self.clock[0]
        self.events.append("swap")

    def check_reference(self) -> str | None:
        return None

    def frames_counted(self) -> int:
        if self.swapped_at is None:
            return int(self.clock[0] * self.fps)
        return int(self.swapped_at * self.fps + (self.clock[0] - self.swapped_at) * self.fps_after)

    def frame_rate(self) -> float:
        return self.fps

    def inference_ratio(self) -> float | None:
        return self.slower if self.swapped_at is not None else None

    def roll_back(self) -> None:
        self.swapped_at = None
        self.events.append("roll_back")

    def keep_candidate(self, job_id: str) -> None:
        assert self.candidate is not None
        self.current = self.candidate
        self.events.append("keep")


class Subscriptions:
    def __init__(self) -> None:
        self.handlers: dict[str, MessageHandler] = {}

    def on(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        self.handlers[topic_filter] = handler

    def off(self, topic_filter: str) -> None:
        self.handlers.pop(topic_filter, None)


def setup(tmp_path: Path, host: ScriptedHost, clock: list[float]) -> tuple[FleetAgent, AgentConfig, Subscriptions]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "agent.toml"
    path.write_text(device_toml(tmp_path / "state").replace("groups = []", "groups = []\nmodel_check_s = 5"))
    config = load_config(path)
    subs = Subscriptions()
    agent = FleetAgent(lambda: config, config_path=path, models=host, subscriber=subs)
    agent.models._clock = lambda: clock[0]
    return agent, config, subs


def model_command(data: bytes, job_id: str, ttl: int = 3600) -> bytes:
    body = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "chunks": -(-len(data) // CHUNK),
        "chunk_size": CHUNK,
        "family": "ssd",
        "licence": "MIT",
    }
    return signed(command("model", body, command_id=job_id, ttl=ttl))


def deliver(subs: Subscriptions, data: bytes, indexes: range | None = None) -> None:
    [(topic_filter, handler)] = subs.handlers.items()
    for index in indexes if indexes is not None else range(-(-len(data) // CHUNK)):
        handler(topic_filter.replace("+", str(index)), data[index * CHUNK : (index + 1) * CHUNK])


def state_of(agent: FleetAgent, job_id: str) -> jobs.Job:
    job = jobs.get(agent._database(), job_id)
    assert job is not None
    return job


def test_a_model_that_slows_the_pipeline_is_rolled_back_after_the_check_period(tmp_path: Path) -> None:
    clock = [100.0]
    host = ScriptedHost(clock, fps=10.0, fps_after=3.0)
    agent, _config, subs = setup(tmp_path, host, clock)
    data = os.urandom(5 * CHUNK)
    agent.process(TOPIC, model_command(data, "slow"), NOW)
    deliver(subs, data)
    agent(NOW)
    assert state_of(agent, "slow").step == "health_check" and host.events == ["load", "swap"]
    clock[0] += 4.0
    agent(NOW + 4)
    assert state_of(agent, "slow").state is JobState.IN_PROGRESS  # still within model_check_s
    clock[0] += 2.0
    agent(NOW + 6)
    job = state_of(agent, "slow")
    assert job.state is JobState.ROLLED_BACK and job.reason == "rate_dropped"
    assert job.details["fps_before_x100"] == 1000 and job.details["fps_x100"] == 300
    assert host.events[-1] == "roll_back" and host.current == "0" * 64


def test_a_model_that_keeps_the_rate_is_kept(tmp_path: Path) -> None:
    clock = [100.0]
    host = ScriptedHost(clock, fps=10.0, fps_after=9.0)
    agent, config, subs = setup(tmp_path, host, clock)
    data = os.urandom(3 * CHUNK + 5)
    agent.process(TOPIC, model_command(data, "fine"), NOW)
    deliver(subs, data)
    agent(NOW)
    clock[0] += 6.0
    agent(NOW + 6)
    job = state_of(agent, "fine")
    assert job.state is JobState.SUCCEEDED and job.details["frames"] == 54
    assert host.current == hashlib.sha256(data).hexdigest()
    assert model_path(config.device.state_dir, host.current).read_bytes() == data
    assert subs.handlers == {}  # no longer subscribed to the chunks


def test_a_model_slow_per_inference_is_rolled_back_though_the_gated_frame_rate_held(tmp_path: Path) -> None:
    clock = [100.0]
    host = ScriptedHost(clock, fps=10.0, fps_after=10.0)  # a still scene: the gate keeps the frame rate
    host.slower = 10.0
    agent, _config, subs = setup(tmp_path, host, clock)
    data = os.urandom(2 * CHUNK)
    agent.process(TOPIC, model_command(data, "heavy"), NOW)
    deliver(subs, data)
    agent(NOW)
    clock[0] += 6.0
    agent(NOW + 6)
    job = state_of(agent, "heavy")
    assert job.state is JobState.ROLLED_BACK and job.reason == "inference_slower"
    assert job.details["inference_ratio_x100"] == 1000 and job.details["fps_x100"] == 1000
    assert host.events[-1] == "roll_back" and host.current == "0" * 64


def test_a_model_a_little_slower_per_inference_is_kept(tmp_path: Path) -> None:
    clock = [100.0]
    host = ScriptedHost(clock)
    host.slower = 1.2  # within 1 / model_min_rate_ratio (0.8)
    agent, _config, subs = setup(tmp_path, host, clock)
    data = os.urandom(2 * CHUNK)
    agent.process(TOPIC, model_command(data, "light"), NOW)
    deliver(subs, data)
    agent(NOW)
    clock[0] += 6.0
    agent(NOW + 6)
    job = state_of(agent, "light")
    assert job.state is JobState.SUCCEEDED and job.details["inference_ratio_x100"] == 120


def test_a_download_that_does_not_finish_before_the_job_expires_times_out(tmp_path: Path) -> None:
    clock = [0.0]
    host = ScriptedHost(clock)
    agent, config, subs = setup(tmp_path, host, clock)
    data = os.urandom(4 * CHUNK)
    agent.process(TOPIC, model_command(data, "late", ttl=60), NOW)
    deliver(subs, data, range(2))
    agent(NOW + 1)
    assert state_of(agent, "late").state is JobState.IN_PROGRESS
    agent(NOW + 3600)
    job = state_of(agent, "late")
    assert job.state is JobState.TIMED_OUT and job.details["received"] == 2
    assert subs.handlers == {} and list((config.device.state_dir / "artifacts").iterdir()) == []


def test_a_restart_during_the_health_check_leaves_the_previous_model_and_rolls_back(tmp_path: Path) -> None:
    clock = [100.0]
    host = ScriptedHost(clock)
    agent, _config, subs = setup(tmp_path, host, clock)
    data = os.urandom(2 * CHUNK)
    agent.process(TOPIC, model_command(data, "cut"), NOW)
    deliver(subs, data)
    agent(NOW)
    assert state_of(agent, "cut").step == "health_check"
    agent.close()

    again = ScriptedHost(clock)
    restarted, _config, _subs = setup(tmp_path, again, clock)
    restarted(NOW + 1)
    job = state_of(restarted, "cut")
    assert job.state is JobState.ROLLED_BACK and job.reason == "interrupted"
    assert again.current == "0" * 64 and again.events == []


def test_a_download_that_expired_while_the_agent_was_down_leaves_no_staging_files(tmp_path: Path) -> None:
    clock = [0.0]
    host = ScriptedHost(clock)
    agent, config, subs = setup(tmp_path, host, clock)
    data = os.urandom(4 * CHUNK)
    agent.process(TOPIC, model_command(data, "gone", ttl=60), NOW)
    deliver(subs, data, range(2))
    staging = config.device.state_dir / "artifacts"
    assert sorted(path.suffix for path in staging.iterdir()) == [".idx", ".part"]
    agent.close()

    restarted, _config, _subs = setup(tmp_path, ScriptedHost(clock), clock)
    restarted(NOW + 3600)
    job = state_of(restarted, "gone")
    assert job.state is JobState.FAILED and job.reason == "interrupted"
    assert list(staging.iterdir()) == []


def test_a_restart_mid_download_keeps_the_staging_files_of_the_job_it_resumes(tmp_path: Path) -> None:
    clock = [0.0]
    host = ScriptedHost(clock)
    agent, config, subs = setup(tmp_path, host, clock)
    data = os.urandom(4 * CHUNK)
    agent.process(TOPIC, model_command(data, "resumed"), NOW)
    deliver(subs, data, range(2))
    agent.close()

    restarted, _config, subs_again = setup(tmp_path, ScriptedHost(clock), clock)
    restarted(NOW + 1)
    job = state_of(restarted, "resumed")
    assert job.state is JobState.IN_PROGRESS and job.details["received"] == 2
    assert len(list((config.device.state_dir / "artifacts").iterdir())) == 2
    deliver(subs_again, data, range(2, 4))
    clock[0] += 1.0
    restarted(NOW + 2)
    assert state_of(restarted, "resumed").step == "health_check"


def test_a_restart_after_the_model_was_recorded_active_ends_the_job_succeeded(tmp_path: Path) -> None:
    clock = [100.0]
    host = ScriptedHost(clock)
    agent, config, subs = setup(tmp_path, host, clock)
    data = os.urandom(2 * CHUNK)
    agent.process(TOPIC, model_command(data, "kept"), NOW)
    deliver(subs, data)
    agent(NOW)
    assert state_of(agent, "kept").step == "health_check"
    sha = hashlib.sha256(data).hexdigest()
    # The check passed and active.json was written; the agent stopped before the job's last status.
    record = ActiveModel(sha, "model-x", "ssd", "MIT", "kept", NOW, None)
    write_active(config.device.state_dir, record)
    agent.close()

    restarted, _config, _subs = setup(tmp_path, ScriptedHost(clock), clock)
    restarted(NOW + 1)
    job = state_of(restarted, "kept")
    assert job.state is JobState.SUCCEEDED and job.details == {"recovered": True}


def test_a_restart_with_an_older_job_recorded_active_still_rolls_back(tmp_path: Path) -> None:
    clock = [100.0]
    host = ScriptedHost(clock)
    agent, config, subs = setup(tmp_path, host, clock)
    data = os.urandom(2 * CHUNK)
    agent.process(TOPIC, model_command(data, "newer"), NOW)
    deliver(subs, data)
    agent(NOW)
    write_active(config.device.state_dir, ActiveModel("a" * 64, "older", "ssd", "MIT", "older-job", NOW - 99, None))
    agent.close()

    restarted, _config, _subs = setup(tmp_path, ScriptedHost(clock), clock)
    restarted(NOW + 1)
    job = state_of(restarted, "newer")
    assert job.state is JobState.ROLLED_BACK and job.reason == "interrupted"


class BrokenHost(ScriptedHost):
    def __init__(self, clock: list[float], breaks: str) -> None:
        super().__init__(clock)
        self.breaks = breaks

    def load_candidate(self, path: Path, name: str, family: str | None, licence: str | None) -> None:
        if self.breaks == "load":
            raise RuntimeError("the runtime broke while loading")
        super().load_candidate(path, name, family, licence)

    def check_reference(self) -> str | None:
        if self.breaks == "check":
            raise RuntimeError("the runtime broke while checking")
        return None


def test_an_unexpected_error_ends_the_job_and_puts_the_previous_model_back_once_swapped(tmp_path: Path) -> None:
    clock = [100.0]
    for breaks, state, events in (
        ("load", JobState.FAILED, []),
        ("check", JobState.ROLLED_BACK, ["load", "swap", "roll_back"]),
    ):
        host = BrokenHost(clock, breaks)
        agent, _config, subs = setup(tmp_path / breaks, host, clock)
        data = os.urandom(2 * CHUNK)
        agent.process(TOPIC, model_command(data, f"broken-{breaks}"), NOW)
        deliver(subs, data)
        agent(NOW)
        job = state_of(agent, f"broken-{breaks}")
        assert job.state is state and job.reason == "device_error"
        assert host.events == events
        agent(NOW + 1)  # nothing left running
        assert not agent.models.busy


def test_a_model_job_canceled_during_the_download_stops_and_drops_it(tmp_path: Path) -> None:
    clock = [0.0]
    host = ScriptedHost(clock)
    agent, config, subs = setup(tmp_path, host, clock)
    data = os.urandom(4 * CHUNK)
    agent.process(TOPIC, model_command(data, "halt"), NOW)
    deliver(subs, data, range(2))
    agent(NOW + 1)
    agent.handle(TOPIC.replace("/model", "/cancel"), signed(command("cancel", {"job_id": "halt"}, command_id="c1")))
    agent(NOW + 2)
    assert state_of(agent, "halt").state is JobState.CANCELED
    assert state_of(agent, "c1").state is JobState.SUCCEEDED
    assert not agent.models.busy and subs.handlers == {}
    assert list((config.device.state_dir / "artifacts").iterdir()) == []
    agent(NOW + 3)  # nothing left to advance, nothing raised
    assert host.events == []


def test_a_model_job_canceled_during_the_health_check_puts_the_previous_model_back(tmp_path: Path) -> None:
    clock = [100.0]
    host = ScriptedHost(clock)
    agent, _config, subs = setup(tmp_path, host, clock)
    data = os.urandom(3 * CHUNK)
    agent.process(TOPIC, model_command(data, "undo"), NOW)
    deliver(subs, data)
    agent(NOW)
    assert host.events == ["load", "swap"]
    agent.handle(TOPIC.replace("/model", "/cancel"), signed(command("cancel", {"job_id": "undo"}, command_id="c2")))
    clock[0] += 10.0
    agent(NOW + 10)
    assert state_of(agent, "undo").state is JobState.CANCELED
    assert host.events == ["load", "swap", "roll_back"] and host.current == "0" * 64
