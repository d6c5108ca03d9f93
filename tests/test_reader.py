"""The threaded serial reader against real pseudo-terminals."""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cobs import cobs

from firmware_bridge.codec import SYNC, Decoder, encode
from firmware_bridge.frames import AckFrame, Frame, PingFrame, VitalsFrame
from firmware_bridge.ports import open_raw_pty
from firmware_bridge.reader import SerialReader

_WAIT_S = 10.0


class _Board:
    """A pty that stands in for a USB serial board; ``unplug`` makes its path vanish."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave, self.path = open_raw_pty()
        link.unlink(missing_ok=True)
        link.symlink_to(self.path)
        self.seq = 0

    def send(self, *frames: Frame, prefix: bytes = b"") -> None:
        os.write(self.master, prefix + b"".join(encode(f) for f in frames))

    def vitals(self, n: int, hr_bpm: float = 70.0) -> list[VitalsFrame]:
        frames = []
        for _ in range(n):
            frames.append(VitalsFrame(seq=self.seq, timestamp_ms=self.seq * 1000, hr_bpm=hr_bpm))
            self.seq += 1
        self.send(*frames)
        return frames

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        os.close(self.master)
        os.close(self.slave)


class _Sink:
    def __init__(self) -> None:
        self.frames: queue.Queue[Frame] = queue.Queue()
        self.links: queue.Queue[bool] = queue.Queue()

    def take(self, n: int) -> list[Frame]:
        return [self.frames.get(timeout=_WAIT_S) for _ in range(n)]


@pytest.fixture
def sink() -> _Sink:
    return _Sink()


@pytest.fixture
def reader_factory(sink: _Sink) -> Iterator[type[SerialReader]]:
    readers: list[SerialReader] = []

    def make(port: str | Path, **kw: float) -> SerialReader:
        r = SerialReader(
            str(port),
            sink.frames.put,
            on_link=sink.links.put,
            backoff_initial_s=0.05,
            backoff_max_s=0.2,
            **kw,
        )
        readers.append(r)
        r.start()
        return r

    yield make  # type: ignore[misc]
    for r in readers:
        r.stop()


def test_frames_flow_from_a_pty(tmp_path: Path, sink: _Sink, reader_factory) -> None:
    board = _Board(tmp_path / "ttyVIGIL")
    reader = reader_factory(board.link)
    assert sink.links.get(timeout=_WAIT_S) is True
    board.send(prefix=SYNC)
    sent = board.vitals(50)
    assert sink.take(50) == sent
    assert reader.stats.frames == 50
    assert reader.stats.errors == 0
    board.unplug()


def test_unplug_and_replug_reconnects(tmp_path: Path, sink: _Sink, reader_factory) -> None:
    link = tmp_path / "ttyVIGIL"
    board = _Board(link)
    reader = reader_factory(link)
    assert sink.links.get(timeout=_WAIT_S) is True
    board.send(prefix=SYNC)
    sent = board.vitals(3)
    assert sink.take(3) == sent

    board.unplug()
    assert sink.links.get(timeout=_WAIT_S) is False
    board = _Board(link)  # the cable comes back: a new device node behind the same name
    assert sink.links.get(timeout=_WAIT_S) is True
    board.send(prefix=SYNC)
    sent = board.vitals(5, hr_bpm=90.0)
    assert sink.take(5) == sent
    assert reader.connects == 2
    assert reader.disconnects == 1
    board.unplug()


def test_missing_port_is_reported_once_and_retried(
    tmp_path: Path, sink: _Sink, reader_factory, caplog: pytest.LogCaptureFixture
) -> None:
    link = tmp_path / "ttyNOTYET"
    caplog.set_level(logging.DEBUG, logger="firmware_bridge.reader")
    reader = reader_factory(link)
    # Wait until it has failed a few times, then plug the board in.
    deadline = time.monotonic() + _WAIT_S
    while sum("still not available" in r.getMessage() for r in list(caplog.records)) < 2:
        assert time.monotonic() < deadline, "the reader did not retry the missing port"
        time.sleep(0.05)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert str(link) in errors[0].getMessage()
    assert "retrying" in errors[0].getMessage()
    assert not reader.connected

    board = _Board(link)
    assert sink.links.get(timeout=_WAIT_S) is True
    board.send(prefix=SYNC)
    sent = board.vitals(2)
    assert sink.take(2) == sent
    board.unplug()


def test_malformed_frames_are_counted_logged_and_skipped(
    tmp_path: Path, sink: _Sink, reader_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="firmware_bridge.reader")
    board = _Board(tmp_path / "ttyVIGIL")
    reader = reader_factory(board.link)
    assert sink.links.get(timeout=_WAIT_S) is True
    board.send(prefix=SYNC)
    expected = []
    for i in range(20):
        good = VitalsFrame(seq=i, hr_bpm=60.0 + i)
        body = bytearray(cobs.decode(encode(VitalsFrame(seq=i, hr_bpm=1.0))[:-1]))
        body[10] ^= 0x55  # inside the payload: a CRC error, never a stray delimiter
        board.send(prefix=cobs.encode(bytes(body)) + SYNC)
        board.send(good)
        expected.append(good)
    assert sink.take(20) == expected
    assert reader.stats.crc_errors == 20
    assert reader.stats.errors == 20
    mine = [r.getMessage() for r in caplog.records if str(board.link) in r.getMessage()]
    warnings = [m for m in mine if "bad frames" in m]
    assert 1 <= len(warnings) <= 2  # rate-limited: not one line per bad frame
    board.unplug()


def test_callback_errors_do_not_stop_the_reader(tmp_path: Path, sink: _Sink) -> None:
    board = _Board(tmp_path / "ttyVIGIL")
    seen: list[Frame] = []

    def handler(frame: Frame) -> None:
        seen.append(frame)
        if len(seen) == 1:
            raise RuntimeError("handler bug")
        sink.frames.put(frame)

    linked: queue.Queue[bool] = queue.Queue()
    reader = SerialReader(str(board.link), handler, on_link=linked.put, backoff_initial_s=0.05)
    reader.start()
    try:
        assert linked.get(timeout=_WAIT_S) is True
        board.send(prefix=SYNC)
        sent = board.vitals(3)
        assert sink.take(2) == sent[1:]
        assert reader.callback_errors == 1
    finally:
        reader.stop()
        board.unplug()


def test_send_stamps_commands_with_the_links_own_sequence(
    tmp_path: Path, sink: _Sink, reader_factory
) -> None:
    board = _Board(tmp_path / "ttyVIGIL")
    reader = reader_factory(board.link)
    assert sink.links.get(timeout=_WAIT_S) is True
    assert reader.send(PingFrame(nonce=42))
    assert reader.send(PingFrame(nonce=43))
    dec = Decoder(synced=True)
    got: list[Frame] = []
    for _ in range(50):
        got += dec.feed(os.read(board.master, 4096))
        if len(got) == 2:
            break
    assert [(f.seq, f.nonce) for f in got if isinstance(f, PingFrame)] == [(0, 42), (1, 43)]
    board.send(AckFrame(acked_seq=0, nonce=42), prefix=SYNC)
    assert sink.take(1) == [AckFrame(acked_seq=0, nonce=42)]
    board.unplug()


def test_stop_is_prompt_while_port_is_missing(tmp_path: Path) -> None:
    reader = SerialReader(str(tmp_path / "nothing"), lambda f: None, backoff_initial_s=5.0,
                          backoff_max_s=5.0)
    reader.start()
    reader.stop(timeout=3.0)
    assert not reader._thread.is_alive()
