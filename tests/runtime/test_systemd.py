from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.runtime.systemd import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_and_stopping_reach_a_real_socket(notify_socket) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("counting")
    assert received(sock) == "READY=1\nSTATUS=counting"
    assert notifier.status("reconnecting camera")
    assert received(sock) == "STATUS=reconnecting camera"
    assert notifier.stopping()
    assert received(sock) == "STOPPING=1"


def test_abstract_socket_address_is_supported() -> None:
    name = f"retail-agent-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == "READY=1"
    finally:
        sock.close()


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()


def test_watchdog_pings_at_half_the_interval(notify_socket) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_interval_s == 10
    assert notifier.watchdog(now=100.0)
    assert received(sock) == "WATCHDOG=1"
    assert not notifier.watchdog(now=104.0)
    assert notifier.watchdog(now=105.5)
    assert received(sock) == "WATCHDOG=1"


def test_watchdog_meant_for_another_process_is_ignored(notify_socket) -> None:
    _, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval_s is None
    assert not notifier.watchdog(now=100.0)


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.ready()
