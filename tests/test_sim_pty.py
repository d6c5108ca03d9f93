"""The simulator on real pseudo-terminals: decode from the slave side like the edge would."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from pathlib import Path

import pytest

from firmware_bridge.codec import Decoder, encode
from firmware_bridge.frames import (
    AckFrame,
    Frame,
    HelloFrame,
    PingFrame,
    VitalsFrame,
    WaveformFrame,
)
from firmware_bridge.ports import set_raw
from firmware_bridge.sim.events import parse_event
from firmware_bridge.sim.run import ManualClock, SimRunner
from firmware_bridge.sim.scenario import SimConfig, build_board
from firmware_bridge.sim.transport import PtyTransport

_WAIT_S = 20.0  # upper bound for any wait; never asserted on


def _open_raw(path: str | Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    set_raw(fd)
    return fd


def _read_until_eof(fd: int, dec: Decoder, out: list[Frame], stop_when=None) -> bool:
    """Read and decode until the pty goes away (True) or ``stop_when(out)`` (False)."""
    deadline = time.monotonic() + _WAIT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        except OSError as exc:
            if exc.errno == errno.EIO:  # master closed: the port vanished
                return True
            raise
        if not data:
            return True
        out += dec.feed(data)
        if stop_when is not None and stop_when(out):
            return False
    raise AssertionError("pty neither closed nor produced what was expected in time")


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "vigil-board"


def test_frames_over_a_real_pty(link: Path, tmp_path: Path):
    board = build_board(SimConfig(seed=3, events=(parse_event("probe_off@5:2"),)))
    # The drain bound too: at the end the runner closes the pty, and Linux discards whatever
    # this thread had not read by then (slow to be scheduled on a loaded machine).
    transport = PtyTransport(link=link, path_file=tmp_path / "path.txt", write_timeout_s=5.0,
                             drain_timeout_s=_WAIT_S)
    transport.open()
    assert transport.path is not None
    assert os.readlink(link) == transport.path
    assert (tmp_path / "path.txt").read_text().strip() == transport.path
    fd = _open_raw(link)
    runner = SimRunner(board, transport, speed=1.0, duration_s=30.0, clock=ManualClock())
    thread = runner.start()
    frames: list[Frame] = []
    dec = Decoder()
    try:
        assert _read_until_eof(fd, dec, frames)
    finally:
        os.close(fd)
        runner.stop()
        thread.join(_WAIT_S)
    assert not thread.is_alive()
    assert dec.stats.errors == 0
    assert dec.stats.seq_gaps == 0
    assert dec.stats.bytes_dropped == 0
    assert transport.bytes_dropped == 0
    assert isinstance(frames[0], HelloFrame)
    assert frames[0].seq == 0
    vitals = [f for f in frames if isinstance(f, VitalsFrame)]
    assert len(vitals) == 30
    assert any(v.spo2_pct is None for v in vitals)
    assert sum(isinstance(f, WaveformFrame) for f in frames) == 2 * 30 * 5
    transport.shutdown()
    assert not link.exists()
    assert not (tmp_path / "path.txt").exists()


def test_ping_over_the_pty_is_acked(link: Path):
    board = build_board(SimConfig(seed=1))
    transport = PtyTransport(link=link, write_timeout_s=5.0)
    transport.open()
    fd = _open_raw(link)
    clock = ManualClock()
    runner = SimRunner(board, transport, speed=1.0, duration_s=600.0, clock=clock, tick_s=0.02)
    thread = runner.start()
    frames: list[Frame] = []
    dec = Decoder()
    try:
        _read_until_eof(fd, dec, frames, stop_when=lambda fs: len(fs) > 20)
        os.write(fd, encode(PingFrame(seq=0, nonce=424242)))
        done = _read_until_eof(
            fd, dec, frames, stop_when=lambda fs: any(isinstance(f, AckFrame) for f in fs)
        )
        assert not done, "simulation ended before the ACK"
    finally:
        runner.stop()
        thread.join(_WAIT_S)
        os.close(fd)
        transport.shutdown()
    acks = [f for f in frames if isinstance(f, AckFrame)]
    assert acks[0].nonce == 424242
    assert acks[0].acked_seq == 0
    assert dec.stats.errors == 0


def test_cable_unplug_makes_the_port_vanish_and_the_link_comes_back(link: Path):
    board = build_board(SimConfig(seed=2, events=(parse_event("cable_unplug@5:3"),)))
    opened: list[str] = []
    transport = PtyTransport(link=link, on_open=opened.append, write_timeout_s=5.0,
                             drain_timeout_s=_WAIT_S)
    transport.open()
    fd = _open_raw(link)
    # Long enough that the new pty's first bytes wait in its buffer until we reconnect.
    runner = SimRunner(board, transport, speed=1.0, duration_s=600.0, clock=ManualClock())
    pause = threading.Event()
    frames_before: list[Frame] = []
    frames_after: list[Frame] = []
    dec1, dec2 = Decoder(), Decoder()
    thread = runner.start()
    fd2 = -1
    try:
        assert _read_until_eof(fd, dec1, frames_before)  # the port vanished
        # The link is gone while unplugged, then points at the new pty: reconnect through it,
        # retrying like a real reader would while the device comes back.
        deadline = time.monotonic() + _WAIT_S
        while fd2 < 0 and time.monotonic() < deadline:
            if transport.opens >= 2:
                with contextlib.suppress(FileNotFoundError):
                    fd2 = _open_raw(link)
            pause.wait(0.005)
        assert fd2 >= 0, "the link did not come back"
        ended = _read_until_eof(fd2, dec2, frames_after, stop_when=lambda fs: len(fs) > 50)
        assert not ended
    finally:
        os.close(fd)
        runner.stop()
        thread.join(_WAIT_S)
        if fd2 >= 0:
            os.close(fd2)
        transport.shutdown()
    assert not thread.is_alive()
    assert len(opened) >= 2
    assert frames_before[-1].timestamp_ms <= 5_000
    assert dec1.stats.errors == 0
    hello = frames_after[0]
    assert isinstance(hello, HelloFrame)
    assert hello.seq == 0
    assert hello.timestamp_ms == 0
    assert [f.seq for f in frames_after] == list(range(len(frames_after)))
    assert dec2.stats.errors == 0
    assert board.stats.boots == 2


def test_serial_transport_on_a_pty_slave():
    """--port path: pyserial writes to a device; here the device is a pty slave we read."""
    pytest.importorskip("serial")
    from firmware_bridge.ports import open_raw_pty  # noqa: PLC0415
    from firmware_bridge.sim.transport import SerialTransport  # noqa: PLC0415

    master, slave, path = open_raw_pty()
    board = build_board(SimConfig(seed=5))
    transport = SerialTransport(path, 115200, write_timeout_s=5.0)
    runner = SimRunner(board, transport, speed=1.0, duration_s=10.0, clock=ManualClock())
    dec = Decoder()
    frames: list[Frame] = []
    thread = runner.start()
    try:
        deadline = time.monotonic() + _WAIT_S
        while time.monotonic() < deadline and not (
            frames and isinstance(frames[-1], VitalsFrame) and frames[-1].timestamp_ms == 10_000
        ):
            if select.select([master], [], [], 0.1)[0]:
                frames += dec.feed(os.read(master, 65536))
    finally:
        runner.stop()
        thread.join(_WAIT_S)
        os.close(master)
        os.close(slave)
    assert isinstance(frames[0], HelloFrame)
    assert sum(isinstance(f, VitalsFrame) for f in frames) == 10
    assert dec.stats.errors == 0
    assert not transport.is_open
