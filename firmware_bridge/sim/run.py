"""The only loop with a clock: moves simulated time forward and bytes between board and port.

``simulated ms = (clock now - start) * speed * 1000``. Each tick the board is advanced to that
time (stopping at every link change on the way, so a short unplug is not skipped at high speed),
its bytes are written, the port is opened or closed as the board's ``link_up`` says, and any
bytes from the Pi are handed to the board. The clock is injected: tests pass a `ManualClock`
and run minutes of board time without sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Final, Protocol

from firmware_bridge.sim.board import Board
from firmware_bridge.sim.transport import Transport

__all__ = ["Clock", "ManualClock", "RunResult", "SimRunner", "SystemClock"]

_log = logging.getLogger(__name__)

DEFAULT_TICK_S: Final = 0.02
_MS_PER_S: Final = 1000


class Clock(Protocol):
    """Monotonic time in seconds and a way to wait."""

    def monotonic(self) -> float:
        """Seconds, monotonic, arbitrary origin."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait (or pretend to)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """time.sleep()."""
        time.sleep(seconds)


class ManualClock:
    """A clock that only moves when slept on: a run takes no wall time beyond the work."""

    def __init__(self, start: float = 0.0) -> None:
        """Start at ``start`` seconds."""
        self._now = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """Current fake time."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance fake time by ``seconds`` at once."""
        with self._lock:
            self._now += max(seconds, 0.0)


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended."""

    reason: str  # "duration", "stopped" or "finished" (replay ran out)
    sim_ms: int
    bytes_written: int
    link_opens: int


class SimRunner:
    """Drive a `Board` over a `Transport` in (scaled) real time until stopped or done."""

    def __init__(
        self,
        board: Board,
        transport: Transport,
        *,
        speed: float = 1.0,
        duration_s: float | None = None,
        clock: Clock | None = None,
        tick_s: float = DEFAULT_TICK_S,
    ) -> None:
        """``speed``: simulated seconds per wall second; ``duration_s``: simulated seconds."""
        if not speed > 0:
            raise ValueError(f"speed={speed} must be > 0")
        if duration_s is not None and not duration_s >= 0:
            raise ValueError(f"duration_s={duration_s} must be >= 0")
        self.board = board
        self.transport = transport
        self.speed = speed
        self.duration_ms = None if duration_s is None else round(duration_s * _MS_PER_S)
        self.clock: Clock = clock or SystemClock()
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._bytes = 0
        self._opens = 0
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        """Ask the loop to end (thread-safe, signal-safe); it returns within one tick."""
        self._stop.set()

    def start(self) -> threading.Thread:
        """Run in a background thread (for tests and embedding); join it after ``stop()``."""
        self._thread = threading.Thread(target=self.run, name="vigil-sim", daemon=True)
        self._thread.start()
        return self._thread

    def _step(self, t_ms: int) -> None:
        data = self.board.advance(t_ms)
        if not self.transport.is_open and self.board.link_up:
            self.transport.open()
            self._opens += 1
        if self.transport.is_open:
            self._bytes += self.transport.write(data)
            if not self.board.link_up:
                self.transport.close()
            else:
                rx = self.transport.read()
                if rx:
                    self.board.receive(rx)

    def run(self) -> RunResult:
        """Blocking loop; closes the transport (not shutdown) when it ends."""
        start = self.clock.monotonic()
        reason = "stopped"
        try:
            while not self._stop.is_set():
                target = int((self.clock.monotonic() - start) * self.speed * _MS_PER_S)
                if self.duration_ms is not None:
                    target = min(target, self.duration_ms)
                target = max(target, self.board.now_ms)
                while True:  # bounded: each pass reaches a link change or the target
                    change = self.board.next_link_change_ms()
                    step = target if change is None or change > target else change
                    self._step(step)
                    if step >= target:
                        break
                if self.board.finished:
                    reason = "finished"
                    break
                if self.duration_ms is not None and target >= self.duration_ms:
                    reason = "duration"
                    break
                self.clock.sleep(self.tick_s)
        finally:
            self.transport.close()
        _log.info("simulation ended (%s) at %.3f s", reason, self.board.now_ms / _MS_PER_S)
        return RunResult(reason, self.board.now_ms, self._bytes, self._opens)
