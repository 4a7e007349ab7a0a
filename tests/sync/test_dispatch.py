"""The dispatcher: inbound topics reach their handlers, periodic tasks run when due, failures stay contained."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sync_broker import Broker, wait_until

from agent.config import MqttConfig
from agent.sync.dispatch import Dispatcher
from agent.sync.mqtt import PahoTransport


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class RecordingTransport:
    """Only what subscribe_all needs: which filters were subscribed, with which handler and QoS."""

    connected = True

    def __init__(self) -> None:
        self.subscriptions: dict[str, tuple[Callable[[str, bytes], None], int]] = {}

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None], qos: int = 1) -> None:
        self.subscriptions[topic_filter] = (handler, qos)


def test_every_registered_filter_is_subscribed_and_a_failing_handler_is_counted_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = Dispatcher()
    got: list[tuple[str, bytes]] = []
    dispatcher.on("retail/v1/acme/s1/_store/redeemed", lambda topic, payload: got.append((topic, payload)))

    def broken(topic: str, payload: bytes) -> None:
        raise ValueError("not a signed command")

    dispatcher.on("retail/v1/acme/s1/till-1/cmd/#", broken, qos=1)
    transport = RecordingTransport()
    dispatcher.subscribe_all(transport)  # type: ignore[arg-type]
    assert set(transport.subscriptions) == {"retail/v1/acme/s1/_store/redeemed", "retail/v1/acme/s1/till-1/cmd/#"}

    store_handler, _ = transport.subscriptions["retail/v1/acme/s1/_store/redeemed"]
    store_handler("retail/v1/acme/s1/_store/redeemed", b"{}")
    cmd_handler, qos = transport.subscriptions["retail/v1/acme/s1/till-1/cmd/#"]
    with caplog.at_level(logging.ERROR):
        cmd_handler("retail/v1/acme/s1/till-1/cmd/ping", b"\xff garbage")  # must not raise
    assert qos == 1
    assert got == [("retail/v1/acme/s1/_store/redeemed", b"{}")]
    assert dispatcher.counters.handled == {"retail/v1/acme/s1/_store/redeemed": 1}
    assert dispatcher.counters.failed == {"retail/v1/acme/s1/till-1/cmd/#": 1}
    assert "failed on a message of 9 bytes" in caplog.text


def test_a_filter_or_task_name_is_registered_once() -> None:
    dispatcher = Dispatcher()
    dispatcher.on("a/b", lambda t, p: None)
    with pytest.raises(ValueError):
        dispatcher.on("a/b", lambda t, p: None)
    dispatcher.every("store sharing", 1.0, lambda now: None)
    with pytest.raises(ValueError):
        dispatcher.every("store sharing", 1.0, lambda now: None)
    with pytest.raises(ValueError):
        dispatcher.every("never", 0, lambda now: None)


def test_tasks_run_when_due_and_a_failing_one_runs_again_next_time() -> None:
    clock = FakeClock()
    dispatcher = Dispatcher(clock)
    calls: list[tuple[str, float]] = []
    failures = [True]

    def flaky(now: float) -> None:
        calls.append(("flaky", now))
        if failures.pop(0) if failures else False:
            raise OSError("database locked")

    closed: list[str] = []
    dispatcher.every("fast", 1.0, lambda now: calls.append(("fast", now)), close=lambda: closed.append("fast"))
    dispatcher.every("flaky", 10.0, flaky)
    assert dispatcher.run_due(5000.0) is False  # both ran; flaky failed
    clock.t += 0.5
    assert dispatcher.run_due(5000.5) is True  # nothing due
    clock.t += 0.6
    assert dispatcher.run_due(5001.1) is True  # fast only
    clock.t += 10
    assert dispatcher.run_due(5011.1) is True  # both again; flaky works now
    assert calls == [
        ("fast", 5000.0),
        ("flaky", 5000.0),
        ("fast", 5001.1),
        ("fast", 5011.1),
        ("flaky", 5011.1),
    ]
    assert dispatcher.counters.failed == {"flaky": 1}
    dispatcher.close()
    assert closed == ["fast"]


@pytest.mark.integration
def test_messages_from_a_real_broker_reach_the_registered_handler(mosquitto: Broker) -> None:
    dispatcher = Dispatcher()
    got: list[str] = []
    dispatcher.on("retail/v1/acme/s1/till-1/cmd/#", lambda topic, payload: got.append(topic))
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port, tls=False)
    receiver = PahoTransport(config, "till-1").start()
    sender = PahoTransport(config, "operator").start()
    try:
        dispatcher.subscribe_all(receiver)
        assert wait_until(lambda: receiver.connected and sender.connected)
        assert wait_until(lambda: _published(sender, got), timeout=10)
    finally:
        receiver.stop()
        sender.stop()
    assert "retail/v1/acme/s1/till-1/cmd/ping" in got


def _published(sender: PahoTransport, got: list[str]) -> bool:
    sender.publish("retail/v1/acme/s1/till-1/cmd/ping", b"{}", qos=1).wait(2)
    return bool(got)
