"""Outbox drain rate beside raw paho QoS 1 publishing of the same payloads, in one run.

    python tests/benchmarks/bench_outbox.py [--n 100000] [--inflight 20] [--batch 100] [--blocks 2]

Starts its own Mosquitto on a free 127.0.0.1 port (never 1883) with a config in a temporary
folder, fills an outbox with N ledger messages, then alternates in blocks (raw, sender, sender,
raw, ...) so drift on a noisy machine hits both alike:

- raw: one paho client (MQTT 5, max inflight = --inflight, unlimited queue) publishes the rows'
  payload texts at QoS 1 as fast as it can and waits for every PUBACK;
- sender: OutboxSender over PahoTransport (max inflight = --inflight, --batch publishes awaiting
  acknowledgement) drains the same rows and marks each delivered on its PUBACK.

A ``mosquitto_sub`` process (QoS 1) subscribed to both topics counts what arrived. Prints both
rates, the ratio sender / raw (target >= 0.8) and the number lost per method (target 0): by broker
acknowledgement and, when mosquitto_sub is installed, by distinct msg_ids the subscriber received.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttConfig
from agent.contract.kinds import MessageKind
from agent.contract.payloads import LedgerRecord
from agent.contract.topics import Topics
from agent.storage.database import open_database, transaction
from agent.storage.outbox import enqueue
from agent.sync.mqtt import PahoDelivery, PahoTransport
from agent.sync.sender import OutboxSender

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
SENDER_TOPICS = Topics("bench", "store-1", "till-1")
RAW_TOPIC = "retail/v1/bench/store-1/raw/ledger"
WINDOWED_TOPIC = "retail/v1/bench/store-1/windowed/ledger"
TRANSPORT_TOPIC = "retail/v1/bench/store-1/transport/ledger"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker(folder: Path, port: int) -> subprocess.Popen[bytes]:
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", "log_type error"]
    if os.geteuid() == 0:
        lines.insert(0, "user root")
    config = folder / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    broker = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return broker
        except OSError:
            time.sleep(0.05)
    broker.kill()
    raise SystemExit(f"mosquitto did not start on port {port}")


def fill_outbox(db_path: Path, count: int) -> list[str]:
    """Queue ``count`` ledger records; returns their payload texts in id order."""
    db = open_database(db_path)
    now = time.time()
    with transaction(db):
        for index in range(count):
            record = LedgerRecord(
                device=SENDER_TOPICS.device,
                serial=f"{index:032x}",
                campaign=1001,
                offer=15,
                store=0,
                window_start=int(now // 900 * 900),
            )
            enqueue(db, MessageKind.LEDGER, record, qos=1, now=now)
    payloads = [row[0] for row in db.execute("SELECT payload FROM outbox ORDER BY id").fetchall()]
    db.close()
    return payloads


class RawPublisher:
    """Plain paho QoS 1 publishing: everything handed over at once, PUBACKs counted."""

    def __init__(self, port: int, inflight: int) -> None:
        self.acked = 0
        self._done = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=paho.MQTTv5)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _on_publish(self, *_args: object) -> None:
        with self._done:
            self.acked += 1
            self._done.notify_all()

    def run(self, payloads: list[str]) -> float:
        """Publish all; return the seconds until the last PUBACK."""
        target = self.acked + len(payloads)
        started = time.perf_counter()
        for text in payloads:
            self.client.publish(RAW_TOPIC, text.encode("utf-8"), qos=1)
        with self._done:
            self._done.wait_for(lambda: self.acked >= target, timeout=300)
        return time.perf_counter() - started

    def run_windowed(self, payloads: list[str], window: int) -> float:
        """Publish with at most ``window`` unacknowledged, refilling at half (as the sender does)."""
        started = time.perf_counter()
        pending: deque[paho.MQTTMessageInfo] = deque()
        for text in payloads:
            if len(pending) >= window:
                pending[len(pending) // 2].wait_for_publish(60)
                while pending and pending[0].is_published():
                    pending.popleft()
            pending.append(self.client.publish(WINDOWED_TOPIC, text.encode("utf-8"), qos=1))
        for info in pending:
            info.wait_for_publish(60)
        return time.perf_counter() - started

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_transport_windowed(transport: PahoTransport, payloads: list[str], window: int) -> float:
    """The sender's publishing pattern through PahoTransport, without the outbox: the transport's share."""
    started = time.perf_counter()
    pending: deque[PahoDelivery] = deque()
    for text in payloads:
        if len(pending) >= window:
            pending[len(pending) // 2].wait(60)
            while pending and pending[0].done():
                pending.popleft()
        pending.append(transport.publish(TRANSPORT_TOPIC, text.encode("utf-8"), qos=1))
    for delivery in pending:
        delivery.wait(60)
    return time.perf_counter() - started


def drain(sender: OutboxSender, count: int) -> tuple[int, float]:
    """Drain until at least ``count`` more rows are delivered (or none is left); (delivered, seconds)."""
    started = time.perf_counter()
    delivered = 0
    deadline = time.monotonic() + 300
    while delivered < count and time.monotonic() < deadline:
        delivered += sender.drain_once(timeout=0.05)
        if sender.idle:
            break
    return delivered, time.perf_counter() - started


def count_received(path: Path) -> dict[str, set[str]]:
    """Distinct msg_ids the subscriber saw, by topic."""
    seen: dict[str, set[str]] = {
        RAW_TOPIC: set(),
        WINDOWED_TOPIC: set(),
        TRANSPORT_TOPIC: set(),
        SENDER_TOPICS.ledger: set(),
    }
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            topic, _, payload = line.partition(" ")
            try:
                seen.setdefault(topic, set()).add(json.loads(payload)["msg_id"])
            except (ValueError, KeyError):
                continue
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="outbox rows (and raw publishes)")
    parser.add_argument("--inflight", type=int, default=20, help="paho max inflight, both methods")
    parser.add_argument("--batch", type=int, default=100, help="sender publishes awaiting acknowledgement")
    parser.add_argument("--blocks", type=int, default=2, help="alternating blocks per method")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    port = free_port()
    broker = start_broker(folder, port)
    sub: subprocess.Popen[bytes] | None = None
    received_path = folder / "received.txt"
    try:
        sub_binary = shutil.which("mosquitto_sub")
        if sub_binary:
            with received_path.open("wb") as out:
                sub = subprocess.Popen(
                    [
                        sub_binary,
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-q",
                        "1",
                        "-v",
                        "-i",
                        "bench-sub",
                        "-t",
                        RAW_TOPIC,
                        "-t",
                        WINDOWED_TOPIC,
                        "-t",
                        TRANSPORT_TOPIC,
                        "-t",
                        SENDER_TOPICS.ledger,
                    ],
                    stdout=out,
                )
            time.sleep(0.5)

        db_path = folder / "agent.db"
        filled = time.perf_counter()
        payloads = fill_outbox(db_path, args.n)
        print(f"outbox filled with {args.n} rows in {time.perf_counter() - filled:.1f} s")

        raw = RawPublisher(port, args.inflight)
        config = MqttConfig(host="127.0.0.1", port=port, tls=False)
        transport = PahoTransport(config, "bench-sender", max_inflight=args.inflight).start()
        deadline = time.monotonic() + 10
        while not transport.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        db = open_database(db_path)
        sender = OutboxSender(db, transport, batch_size=args.batch, topics=SENDER_TOPICS)

        size = args.n // args.blocks
        raw_s = windowed_s = transport_s = sender_s = 0.0
        raw_sent = windowed_sent = transport_sent = sender_done = 0
        for block in range(args.blocks):
            chunk = payloads[block * size : (block + 1) * size if block < args.blocks - 1 else args.n]
            order = ("raw", "windowed", "transport", "sender")
            if block % 2:
                order = order[::-1]
            for method in order:
                if method == "raw":
                    raw_s += raw.run(chunk)
                    raw_sent += len(chunk)
                elif method == "transport":
                    transport_s += run_transport_windowed(transport, chunk, args.batch)
                    transport_sent += len(chunk)
                elif method == "windowed":
                    windowed_s += raw.run_windowed(chunk, args.batch)
                    windowed_sent += len(chunk)
                else:
                    last = block == args.blocks - 1
                    delivered_now, seconds = drain(sender, args.n if last else len(chunk))
                    sender_s += seconds
                    sender_done += delivered_now
        sender.drain_once(timeout=5.0)  # collect the last acknowledgements
        delivered = int(db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NOT NULL").fetchone()[0])
        raw_acked = raw.acked
        db.close()
        raw.close()
        transport.stop()

        raw_rate = raw_sent / raw_s
        windowed_rate = windowed_sent / windowed_s
        transport_rate = transport_sent / transport_s
        sender_rate = sender_done / sender_s
        print(f"raw paho QoS 1:   {raw_sent} msgs in {raw_s:.2f} s = {raw_rate:,.0f} msg/s (inflight {args.inflight})")
        print(
            f"raw paho, windowed: {windowed_sent} msgs in {windowed_s:.2f} s = {windowed_rate:,.0f} msg/s"
            f" (at most {args.batch} unacknowledged, refilled at half)"
        )
        print(
            f"PahoTransport, windowed: {transport_sent} msgs in {transport_s:.2f} s"
            f" = {transport_rate:,.0f} msg/s (same pattern, no outbox)"
        )
        print(
            f"outbox sender:    {sender_done} msgs in {sender_s:.2f} s = {sender_rate:,.0f} msg/s"
            f" (inflight {args.inflight}, batch {args.batch})"
        )
        print(f"ratio sender / raw: {sender_rate / raw_rate:.2f} (target >= 0.80)")
        print(
            f"ratio PahoTransport windowed / raw windowed: {transport_rate / windowed_rate:.2f} (the transport's share)"
        )
        print(f"ratio sender / PahoTransport windowed: {sender_rate / transport_rate:.2f} (the outbox's share)")
        print(
            f"lost by broker acknowledgement: raw {raw_sent + windowed_sent - raw_acked}, sender {args.n - delivered}"
        )
        if sub is not None:
            expected = {json.loads(text)["msg_id"] for text in payloads}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                seen = count_received(received_path)
                if all(len(ids) >= args.n for ids in seen.values()):
                    break
                time.sleep(0.5)
            seen = count_received(received_path)
            print(
                "lost at the subscriber:"
                f" raw {len(expected - seen[RAW_TOPIC])},"
                f" raw windowed {len(expected - seen[WINDOWED_TOPIC])},"
                f" transport windowed {len(expected - seen[TRANSPORT_TOPIC])},"
                f" sender {len(expected - seen[SENDER_TOPICS.ledger])}"
            )
    finally:
        if sub is not None:
            sub.terminate()
            sub.wait(10)
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
