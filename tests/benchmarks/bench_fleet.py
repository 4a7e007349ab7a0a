"""A rollout to a fleet of simulated devices beside a plain MQTT round trip to the same processes, in one run.

    python tests/benchmarks/bench_fleet.py [--devices 200] [--procs 4] [--job config] [--waves 100%]

Starts its own Mosquitto on a free 127.0.0.1 port (never 1883, config in a temporary folder), then
``--procs`` worker processes, each running ``--devices / --procs`` devices: every device is the
real device code (its own config file, SQLite database and persistent MQTT session: the sync
service with the fleet agent wired in as the runtime wires it, minus the camera). Each worker
also runs as many plain paho echo clients. Then, in the same run:

- baseline: the operator publishes one QoS 1 message to each echo client, which answers with one
  QoS 1 message; the time until every answer is back is the floor of a round trip through this
  broker to that many clients in those processes (nothing signed, checked or stored);
- rollout: the rollout tool (``provisioning.rollout``) sends the job kind ``--job`` to every
  device in ``--waves`` and waits for every job to end; signed command, checks, job records,
  the job itself and the retained statuses through each device's outbox.

Prints both times, their ratio, the broker's resident memory (VmRSS and peak VmHWM from /proc)
after each phase, the bytes the operator published and the bytes the broker sent and received
(its $SYS counters), and the devices verified (each device's config file read back afterwards).
Job kinds are in ``JOB_KINDS``: a kind builds the job (and publishes what it needs first) and
checks one device afterwards. ``config``: a desired config, read back from each device's file.
``model``: a 12 MB model published as retained chunks (within the measured time), then the model
job; each device downloads, verifies and stages it with the real fleet code and keeps it after
``fleet.model_check_s`` = 1 s; a stand-in detector takes the place of ONNX Runtime and the camera
(200 detectors do not fit one machine), and the check reads each staged file's sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import load_config
from agent.runtime.fleet import register_fleet
from agent.runtime.syncing import topics_of
from agent.sync.dispatch import Dispatcher
from agent.sync.mqtt import PahoTransport
from agent.sync.service import SyncService
from provisioning.coupons import load_private_key
from provisioning.fleet import generate_fleet_key
from provisioning.rollout.jobs import JobSpec, command_publisher, config_job, model_job
from provisioning.rollout.link import BrokerLink
from provisioning.rollout.runner import Runner, new_rollout
from provisioning.rollout.table import render
from provisioning.rollout.targets import DeviceRef
from provisioning.rollout.waves import parse_waves

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
TENANT = "bench"
TARGET_FPS = 4.0
MODEL_BYTES = 12 * 1024 * 1024
MODEL_CHECK_S = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker(folder: Path, port: int) -> subprocess.Popen[bytes]:
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "max_queued_messages 10000",
        "sys_interval 1",
        "log_type error",
    ]
    if os.geteuid() == 0:
        lines.insert(0, "user root")
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"mosquitto did not start on port {port}")


def broker_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of the broker in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


class SysCounters:
    """The broker's $SYS byte counters (published every second with ``sys_interval 1``)."""

    def __init__(self, port: int) -> None:
        self.values: dict[str, int] = {}
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sys")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("$SYS/broker/bytes/sent", 0), ("$SYS/broker/bytes/received", 0)])
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.values[message.topic.rsplit("/", 1)[-1]] = int(message.payload)

    def read(self) -> tuple[int, int]:
        """(sent, received) after the next update."""
        with self._lock:
            self.values.clear()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.values) == 2:
                    return self.values["sent"], self.values["received"]
            time.sleep(0.05)
        return -1, -1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# -- the worker process: devices and echo clients -------------------------------------------------


def device_config(folder: Path, index: int, public_key: str, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "agent.toml"
    path.write_text(
        f'[device]\nid = "dev-{index:04d}"\ntenant = "{TENANT}"\nstore = "store-{index // 20:03d}"\n'
        f'state_dir = "{folder / "state"}"\n\n[fleet]\npublic_key = "{public_key}"\ngroups = []\n'
        f"model_check_s = {MODEL_CHECK_S}\n\n" + mqtt_section(port),
        encoding="utf-8",
    )
    return path


def mqtt_section(port: int) -> str:
    return (
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nkeepalive_s = 60\n'
        "reconnect_min_s = 0.5\nreconnect_max_s = 5.0\n\n[sync]\nhealth_interval_s = 3600\n"
    )


class StandInDetector:
    """The model host of a simulated device: the fleet code downloads, verifies and stages for real;
    loading, the reference inference and the frame rate are stood in for (no camera, no ONNX here)."""

    def __init__(self) -> None:
        self.current = "0" * 64
        self.candidate: str | None = None
        self.started = time.monotonic()

    def is_listed(self, sha256: str) -> bool:
        return False

    def current_sha256(self) -> str:
        return self.current

    def load_candidate(self, path: Path, name: str, family: str | None, licence: str | None) -> None:
        self.candidate = path.stem

    def swap_to_candidate(self) -> None:
        pass

    def check_reference(self) -> str | None:
        return None

    def frames_counted(self) -> int:
        return int((time.monotonic() - self.started) * 10)

    def frame_rate(self) -> float:
        return 10.0

    def inference_ratio(self) -> float | None:
        return None  # no inference here: the rate check alone decides

    def roll_back(self) -> None:
        self.candidate = None

    def keep_candidate(self, job_id: str) -> None:
        assert self.candidate is not None
        self.current = self.candidate
        (self.path_hint / "model.sha256").write_text(self.current)

    path_hint: Path = Path()


def run_worker(root: Path, first: int, count: int, public_key: str, port: int) -> int:
    """Start ``count`` devices and echo clients, say ``ready``, run until stdin closes."""

    stop = threading.Event()
    services = []
    for index in range(first, first + count):
        path = device_config(root / f"dev-{index:04d}", index, public_key, port)
        config = load_config(path)
        dispatcher = Dispatcher()
        host = StandInDetector()
        host.path_hint = path.parent
        register_fleet(dispatcher, config, config_path=path, models=host)
        service = SyncService(
            config, config.database_path, topics_of(config), PahoTransport, stop, dispatcher=dispatcher
        )
        service.start()
        services.append(service)
    echoes = []
    for index in range(first, first + count):
        echo = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"echo-{index:04d}")
        topic = f"bench/echo/{index:04d}"

        def answer(client: paho.Client, _u: object, message: paho.MQTTMessage, reply: str = topic + "/back") -> None:
            client.publish(reply, message.payload, qos=1)

        echo.on_message = answer
        echo.connect("127.0.0.1", port)
        echo.subscribe(topic, qos=1)
        echo.loop_start()
        echoes.append(echo)
    deadline = time.monotonic() + 120
    while not all(service.connected for service in services) and time.monotonic() < deadline:
        time.sleep(0.1)
    print("ready" if all(service.connected for service in services) else "not-ready", flush=True)
    sys.stdin.read()  # until the parent closes it
    stop.set()
    for service in services:
        service.join(10)
    for echo in echoes:
        echo.loop_stop()
        echo.disconnect()
    return 0


# -- the phases -----------------------------------------------------------------------------------


def baseline_round_trip(port: int, devices: int) -> float:
    """Seconds until every echo client answered one QoS 1 message."""
    back: set[str] = set()
    lock = threading.Lock()
    done = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline")

    def on_message(_c: object, _u: object, message: paho.MQTTMessage) -> None:
        with lock:
            back.add(message.topic)
            if len(back) == devices:
                done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe("bench/echo/+/back", qos=1)
    time.sleep(0.5)  # the subscription is in place
    payload = json.dumps({"schema": "ping.v1", "padding": "x" * 300}).encode()
    start = time.perf_counter()
    for index in range(devices):
        client.publish(f"bench/echo/{index:04d}", payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    if len(back) != devices:
        raise SystemExit(f"baseline: only {len(back)} of {devices} echo clients answered")
    return elapsed


@dataclass(frozen=True)
class JobKind:
    """How the bench builds a job and checks that one device runs it afterwards."""

    build: Callable[[Path, int], JobSpec]
    verify: Callable[[Path], bool]


def _config_job(root: Path, port: int) -> JobSpec:

    desired = root / "desired.toml"
    desired.write_text(f"[camera]\ntarget_fps = {TARGET_FPS}\n\n" + mqtt_section(port), encoding="utf-8")
    return config_job(desired, 1)


def _config_applied(device_folder: Path) -> bool:

    return load_config(device_folder / "agent.toml").camera.target_fps == TARGET_FPS


def _model_job(root: Path, port: int) -> JobSpec:
    model = root / "bench-model.onnx"
    model.write_bytes(os.urandom(MODEL_BYTES))
    return model_job(model, tenant=TENANT, host="127.0.0.1", port=port, family="yolox", licence="Apache-2.0")


def _model_kept(device_folder: Path) -> bool:
    expected = hashlib.sha256((device_folder.parent / "bench-model.onnx").read_bytes()).hexdigest()
    kept = device_folder / "model.sha256"
    staged = device_folder / "state" / "models" / f"{expected}.onnx"
    return kept.is_file() and kept.read_text() == expected and file_sha256(staged) == expected


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


JOB_KINDS: dict[str, JobKind] = {
    "config": JobKind(_config_job, _config_applied),
    "model": JobKind(_model_job, _model_kept),
}


def rollout(root: Path, port: int, devices: int, kind: JobKind, waves: str, key_path: Path) -> tuple[float, int, str]:
    """(seconds to the end of the rollout, bytes the operator published, the final status table)."""

    start = time.perf_counter()  # a model's chunks are published within the measured time
    job = kind.build(root, port)
    artifact = sum(p.stat().st_size for p in root.glob("bench-model.onnx")) if job.type == "model" else 0
    targets = [DeviceRef(f"store-{i // 20:03d}", f"dev-{i:04d}") for i in range(devices)]
    state = new_rollout(
        "bench",
        tenant=TENANT,
        broker=f"127.0.0.1:{port}",
        job=job,
        targets=targets,
        marks=parse_waves(waves),
        max_failure_rate=0.0,
        wave_timeout_s=600,
        soak_s=0,
        ttl_s=3600,
    )
    key = load_private_key(key_path)
    with BrokerLink("127.0.0.1", port) as link:
        runner = Runner(
            state, root / "rollout.json", link, command_publisher(link, key, TENANT, job, 3600), lambda _t: None
        )
        runner.poll_s = 0.05
        final = runner.run()
        elapsed = time.perf_counter() - start
        return elapsed, link.bytes_sent + artifact, render(final)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--job", choices=sorted(JOB_KINDS), default="config")
    parser.add_argument("--waves", default="100%", help="rollout waves (default 100%%: all at once)")
    parser.add_argument("--worker", nargs=5, metavar=("ROOT", "FIRST", "COUNT", "KEY", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        root, first, count, key, port = args.worker
        return run_worker(Path(root), int(first), int(count), key, int(port))
    if not Path(MOSQUITTO).is_file():
        print(f"mosquitto not found at {MOSQUITTO}")
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        keys = generate_fleet_key(root / "keys")
        port = free_port()
        broker = start_broker(root, port)
        workers: list[subprocess.Popen[str]] = []
        try:
            counters = SysCounters(port)
            idle_rss, _ = broker_memory(broker.pid)
            per = -(-args.devices // args.procs)
            started = time.perf_counter()
            for first in range(0, args.devices, per):
                count = min(per, args.devices - first)
                workers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "--worker",
                            str(root),
                            str(first),
                            str(count),
                            keys.public_key,
                            str(port),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            for worker in workers:
                assert worker.stdout is not None
                if worker.stdout.readline().strip() != "ready":
                    raise SystemExit("a worker's devices did not all connect")
            print(
                f"{args.devices} devices in {len(workers)} processes connected in {time.perf_counter() - started:.1f} s"
            )
            time.sleep(2)
            rss_connected, _ = broker_memory(broker.pid)
            sent0, received0 = counters.read()
            base = baseline_round_trip(port, args.devices)
            sent1, received1 = counters.read()
            rss_base, _ = broker_memory(broker.pid)
            elapsed, published, table = rollout(
                root, port, args.devices, JOB_KINDS[args.job], args.waves, keys.private_key
            )
            sent2, received2 = counters.read()
            rss_rollout, hwm = broker_memory(broker.pid)
            verified = sum(JOB_KINDS[args.job].verify(root / f"dev-{i:04d}") for i in range(args.devices))
            print(table)
            print()
            print(f"baseline  plain QoS 1 round trip to {args.devices} clients: {base:7.2f} s")
            print(
                f"rollout   {args.job} job to {args.devices} devices, waves {args.waves}: {elapsed:7.2f} s to the end"
            )
            print(f"ratio     rollout / baseline: {elapsed / base:.1f}")
            print(f"verified  {verified} of {args.devices} devices run the new {args.job}")
            print(
                f"broker    RSS idle {idle_rss} KiB, connected {rss_connected} KiB, after baseline {rss_base} KiB, "
                f"after rollout {rss_rollout} KiB (peak {hwm} KiB)"
            )
            print(f"bytes     operator published {published} B in the rollout")
            print(
                f"          broker sent/received: baseline {sent1 - sent0}/{received1 - received0} B, "
                f"rollout {sent2 - sent1}/{received2 - received1} B"
            )
            counters.close()
            return 0 if verified == args.devices else 1
        finally:
            for worker in workers:
                if worker.stdin is not None:
                    worker.stdin.close()
            for worker in workers:
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    worker.kill()
            os.killpg(broker.pid, signal.SIGTERM)
            broker.wait(10)


if __name__ == "__main__":
    sys.exit(main())
