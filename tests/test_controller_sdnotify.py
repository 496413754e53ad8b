"""sd_notify over a real unix datagram socket, as systemd's $NOTIFY_SOCKET receives it."""

import os
import socket
import uuid

import pytest

from inspector.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_ready_status_watchdog_and_stopping_reach_the_socket(notify_socket):
    path, sock = notify_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.enabled and notifier.watchdog_interval_s == 4.0
    assert notifier.ready("line1 running")
    assert sock.recv(4096) == b"READY=1\nSTATUS=line1 running"
    assert notifier.watchdog(now=100.0)
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert not notifier.watchdog(now=101.0)  # within half the interval: no ping
    assert notifier.watchdog(now=102.0)
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_socket():
    name = f"inspector-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier(env={"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert sock.recv(4096) == b"STATUS=hello"


def test_without_systemd_everything_is_a_no_op():
    notifier = Notifier(env={})
    assert not notifier.enabled
    assert (notifier.ready(), notifier.watchdog(), notifier.stopping()) == (False, False, False)


def test_watchdog_meant_for_another_process_is_ignored(notify_socket):
    path, _ = notify_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval_s is None and not notifier.watchdog()


def test_a_vanished_socket_is_logged_not_raised(tmp_path, caplog):
    notifier = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.ready() is False
    assert "sd_notify" in caplog.text
