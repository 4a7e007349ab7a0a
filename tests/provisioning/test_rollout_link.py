"""The rollout tool's broker connection on a real Mosquitto: newest status by version, and a broker restart."""

from __future__ import annotations

import json

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sync_broker import Broker, wait_until

from provisioning.fleet import FleetToolError
from provisioning.rollout.link import BrokerLink, parse_broker

pytestmark = pytest.mark.integration

TOPIC = "retail/v1/acme/s1/till-1/jobs/cfg-1"


def publish_status(broker: Broker, state: str, version: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"device-{version}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    status = {"job_id": "cfg-1", "device": "till-1", "state": state, "version": version}
    client.publish(TOPIC, json.dumps(status).encode(), qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_the_newest_status_wins_and_retained_ones_arrive_at_once(broker: Broker) -> None:
    publish_status(broker, "IN_PROGRESS", 2)
    with BrokerLink(broker.host, broker.port) as link:
        link.subscribe([TOPIC])
        assert link.jobs()["cfg-1"].state == "IN_PROGRESS"
        publish_status(broker, "SUCCEEDED", 4)
        assert wait_until(lambda: link.jobs()["cfg-1"].version == 4)
        publish_status(broker, "QUEUED", 1)  # a late, older delivery changes nothing
        link.settle()
        assert link.jobs()["cfg-1"].state == "SUCCEEDED"


def test_statuses_keep_coming_after_the_broker_restarts(broker: Broker) -> None:
    with BrokerLink(broker.host, broker.port) as link:
        link.subscribe([TOPIC])
        broker.restart()
        publish_status(broker, "SUCCEEDED", 3)
        assert wait_until(lambda: "cfg-1" in link.jobs(), timeout=20)


def test_an_unreachable_broker_is_named() -> None:
    with pytest.raises(FleetToolError, match=r"cannot reach the broker at 127\.0\.0\.1:1"):
        BrokerLink("127.0.0.1", 1).__enter__()


@pytest.mark.parametrize("text", ["nohost", "host:", ":1883", "host:99999", "host:x"])
def test_a_bad_broker_address_names_the_option(text: str) -> None:
    with pytest.raises(FleetToolError, match="--broker"):
        parse_broker(text)
