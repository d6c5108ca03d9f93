"""Threaded serial reader: the thin I/O adapter around the sans-I/O Decoder.

One reader per board. It opens the port, feeds every byte to a Decoder and hands decoded frames
to a callback, from its own thread. When the port is missing or disappears (USB unplugged,
simulator restarted) it says so once, clearly, and keeps retrying with exponential backoff until
the port comes back or it is stopped. Nothing that arrives on the wire can stop it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import serial

from firmware_bridge.codec import SYNC, Decoder, DecoderStats, encode
from firmware_bridge.frames import Frame

__all__ = ["SerialReader"]

_log = logging.getLogger(__name__)

_ERROR_LOG_INTERVAL_S = 10.0
"""At most one warning per this many seconds about bad frames, so a noisy link cannot flood logs."""

_READ_CHUNK = 4096


class SerialReader:
    """Reads frames from a serial port in a background thread, reconnecting forever.

    ``on_frame`` is called from the reader thread for every valid frame, in arrival order;
    ``on_link(True/False)`` when the port opens or is lost. An exception raised by a callback is
    logged with its traceback and counted in ``callback_errors``; reading goes on.
    """

    def __init__(
        self,
        port: str,
        on_frame: Callable[[Frame], None],
        *,
        baudrate: int = 115200,
        on_link: Callable[[bool], None] | None = None,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        read_timeout_s: float = 0.1,
        name: str | None = None,
    ) -> None:
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self.port = port
        self.baudrate = baudrate
        self._on_frame = on_frame
        self._on_link = on_link
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._read_timeout_s = read_timeout_s
        self._decoder = Decoder()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._serial: serial.Serial | None = None
        self._thread = threading.Thread(
            target=self._run, name=name or f"serial-reader:{port}", daemon=True
        )
        self._tx_seq = 0
        self.connects = 0
        self.disconnects = 0
        self.callback_errors = 0
        self.last_frame_monotonic: float | None = None
        self._last_error_log = -_ERROR_LOG_INTERVAL_S
        self._errors_logged = 0

    @property
    def stats(self) -> DecoderStats:
        """Decoder counters for this link (frames, CRC errors, gaps, ...)."""
        return self._decoder.stats

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self._serial is not None

    def start(self) -> None:
        """Start the reader thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading, close the port and wait for the thread to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            _log.warning("reader for %s did not stop within %.1f s", self.port, timeout)

    def send(self, frame: Frame) -> bool:
        """Send a command frame to the board with this link's own sequence number.

        Returns False when the port is not open (the caller decides whether to retry).
        """
        with self._lock:
            port = self._serial
            if port is None:
                return False
            stamped = dataclasses.replace(
                frame,
                seq=self._tx_seq,
                timestamp_ms=int(time.monotonic() * 1000) & 0xFFFFFFFF,
            )
            self._tx_seq = (self._tx_seq + 1) & 0xFFFF
            try:
                # A leading delimiter closes whatever partial input the board holds (it may
                # just have booted, unsynced), so the command is not lost to a retry.
                port.write(SYNC + encode(stamped))
            except (serial.SerialException, OSError) as exc:
                _log.warning("write to %s failed: %s", self.port, exc)
                return False
        return True

    def _run(self) -> None:
        backoff = self._backoff_initial_s
        failures = 0
        while not self._stop.is_set():
            try:
                port = serial.Serial(
                    self.port, self.baudrate, timeout=self._read_timeout_s, exclusive=True
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                if failures == 0:
                    _log.error(
                        "serial port %s is not available (%s); retrying with backoff up to %.1f s",
                        self.port,
                        exc,
                        self._backoff_max_s,
                    )
                else:
                    _log.debug("serial port %s still not available: %s", self.port, exc)
                failures += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max_s)
                continue
            if failures:
                _log.info("serial port %s is back after %d failed attempts", self.port, failures)
            failures = 0
            backoff = self._backoff_initial_s
            self._read_until_lost(port)

    def _read_until_lost(self, port: serial.Serial) -> None:
        self._decoder.reset()
        with self._lock:
            self._serial = port
        self.connects += 1
        _log.info("connected to %s at %d baud", self.port, self.baudrate)
        self._notify_link(up=True)
        try:
            while not self._stop.is_set():
                data = port.read(max(1, min(port.in_waiting, _READ_CHUNK)))
                if data:
                    self._deliver(data)
        except (serial.SerialException, OSError) as exc:
            self.disconnects += 1
            _log.warning("lost serial port %s: %s", self.port, exc)
        finally:
            with self._lock:
                self._serial = None
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                _log.debug("closing %s: %s", self.port, exc)
            self._notify_link(up=False)

    def _deliver(self, data: bytes) -> None:
        frames = self._decoder.feed(data)
        # Reported before the chunk's good frames go out, so the log keeps stream order and
        # whoever sees a later frame also sees the warning about the bad ones before it.
        self._maybe_log_errors()
        if frames:
            self.last_frame_monotonic = time.monotonic()
        for frame in frames:
            try:
                self._on_frame(frame)
            except Exception:
                self.callback_errors += 1
                _log.exception("frame handler failed on %s", type(frame).__name__)

    def _maybe_log_errors(self) -> None:
        stats = self._decoder.stats
        errors = stats.errors
        if errors == self._errors_logged:
            return
        now = time.monotonic()
        if now - self._last_error_log < _ERROR_LOG_INTERVAL_S:
            return
        _log.warning(
            "%s: %d bad frames since last report (crc %d, malformed %d, oversize %d in total); "
            "last: %s",
            self.port,
            errors - self._errors_logged,
            stats.crc_errors,
            stats.malformed,
            stats.oversize,
            self._decoder.last_error,
        )
        self._errors_logged = errors
        self._last_error_log = now

    def _notify_link(self, *, up: bool) -> None:
        if self._on_link is None:
            return
        try:
            self._on_link(up)
        except Exception:
            self.callback_errors += 1
            _log.exception("link handler failed")
