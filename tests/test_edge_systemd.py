"""sd_notify with the standard library: READY, WATCHDOG from the runtime loop, STOPPING, on a
real unix datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.runtime import Runtime
from edge.systemd import Notifier
from firmware_bridge.frames import Frame

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def _drain(sock: socket.socket, until: Callable[[list[str]], bool], timeout_s: float = 10.0
           ) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(got):
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return got


def test_notifier_is_silent_outside_systemd_and_reads_the_watchdog() -> None:
    off = Notifier({})
    assert (off.enabled, off.notify("READY=1"), off.watchdog_interval_s) == (False, False, None)
    on = Notifier({"NOTIFY_SOCKET": "@abstract-name", "WATCHDOG_USEC": "30000000"})
    assert on.enabled
    assert on.watchdog_interval_s == 15.0
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None  # the watchdog is some other process's
    assert not Notifier({"NOTIFY_SOCKET": "/no/such/socket"}).notify("READY=1")


class _Reader:
    def __init__(self, port: str, on_frame: Callable[[Frame], None], **kw: object) -> None:
        self.stats = type("S", (), {"as_dict": lambda self: {}})()
        self.connected = True

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


def test_runtime_says_ready_pings_the_watchdog_from_its_loop_and_says_stopping(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    config = parse_config({"mqtt": {"port": 1}, "beds": [{"id": "b", "serial": "/x"}]})
    runtime = Runtime(config, reader_factory=_Reader,
                      notifier=Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}))
    stop = threading.Event()
    thread = threading.Thread(target=runtime.run, args=(stop,))
    thread.start()
    try:
        got = _drain(sock, lambda g: sum(m == "WATCHDOG=1" for m in g) >= 3)
    finally:
        stop.set()
        thread.join(10)
    assert got[0].startswith("READY=1\nSTATUS=monitoring 1 bed(s)")
    assert sum(m == "WATCHDOG=1" for m in got) >= 3
    assert "STOPPING=1" in _drain(sock, lambda g: "STOPPING=1" in g, timeout_s=5)


def test_a_reload_tells_systemd_it_is_reloading_then_ready(
    notify_socket: tuple[str, socket.socket], tmp_path: Path,
) -> None:
    """Type=notify with ExecReload: systemd waits for READY=1 after RELOADING=1 (sd_notify(3))."""
    path, sock = notify_socket
    config = parse_config({"mqtt": {"port": 1}, "beds": [{"id": "b", "serial": "/x"}]})
    runtime = Runtime(config, reader_factory=_Reader, notifier=Notifier({"NOTIFY_SOCKET": path}),
                      reload_config=lambda: config)
    assert runtime.reload() == (True, "no changes")
    got = _drain(sock, lambda g: len(g) >= 2)
    assert got[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert int(got[0].split("MONOTONIC_USEC=")[1]) > 0
    assert got[1].startswith("READY=1")


def test_the_unit_file_runs_the_edge_as_a_notify_service_with_a_watchdog() -> None:
    unit = (REPO / "deploy" / "vigil-edge.service").read_text()
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "KillSignal=SIGTERM",
                 "SupplementaryGroups=dialout", "StateDirectory=vigil",
                 "ExecReload=/bin/kill -HUP $MAINPID",
                 "ExecStart=/opt/vigil/.venv/bin/vigil-edge run --config /etc/vigil/edge.toml"):
        assert f"\n{line}\n" in unit, line
