"""Per-bed state: what the latest frames said, and preallocated ring buffers of recent history.

Sans-I/O: `BedState.apply(frame, now)` takes a decoded frame and the edge's monotonic time in
seconds; nothing here reads a port or a clock. Buffers are allocated once (vitals at start-up,
a waveform channel when its first frame tells the sample rate) so that steady-state operation
on a Raspberry Pi does not allocate per frame. Detectors read this state; they never change it.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Final

import numpy as np
import numpy.typing as npt

from edge.news2 import News2
from firmware_bridge.frames import (
    Frame,
    HelloFrame,
    PaceFrame,
    StatusFlag,
    StatusFrame,
    VitalsFrame,
    WaveformChannel,
    WaveformFrame,
)
from models.features import VITAL_NAMES

__all__ = ["VITAL_FIELDS", "BedState", "VitalsRing", "VitalsSample", "WaveformRing"]

_log = logging.getLogger(__name__)

VITAL_FIELDS: Final[tuple[str, ...]] = VITAL_NAMES
"""Vitals columns, in the feature pipeline's order, so a ring row is a feature input row."""
"""Vital signs in VitalsFrame order; also the JSON keys of published values (units in names)."""

_SAMPLE_COUNTER_MOD: Final = 1 << 32
_SAMPLE_COUNTER_HALF: Final = 1 << 31
PACE_PER_S: Final = 4
"""Pace pulses a ring keeps per second of its history (pacing above 240/min is not pacing)."""


class VitalsSample:
    """One vitals reading as received: edge time (monotonic s) and values, None = not valid."""

    __slots__ = ("time_s", "values")

    def __init__(self, time_s: float, values: dict[str, float | None]) -> None:
        self.time_s = time_s
        self.values = values

    def get(self, name: str) -> float | None:
        """Value of one vital in its unit (see VITAL_FIELDS), None when not valid."""
        return self.values.get(name)


class VitalsRing:
    """Fixed-size vitals history: column 0 is edge time (s), then VITAL_FIELDS; NaN = invalid."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._data: npt.NDArray[np.float64] = np.full(
            (capacity, 1 + len(VITAL_FIELDS)), np.nan, dtype=np.float64
        )
        self._next = 0
        self.count = 0

    def append(self, time_s: float, frame: VitalsFrame) -> None:
        """Store one reading, overwriting the oldest when full."""
        row = self._data[self._next]
        row[0] = time_s
        for i, name in enumerate(VITAL_FIELDS, start=1):
            value = getattr(frame, name)
            row[i] = np.nan if value is None else value
        self._next = (self._next + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def latest(self) -> VitalsSample | None:
        """The most recent reading, or None before the first one."""
        if self.count == 0:
            return None
        row = self._data[(self._next - 1) % self.capacity]
        values: dict[str, float | None] = {}
        for i, name in enumerate(VITAL_FIELDS, start=1):
            value = float(row[i])
            values[name] = None if math.isnan(value) else value
        return VitalsSample(float(row[0]), values)

    def copy(self) -> VitalsRing:
        """An independent copy (a model being loaded beside the running one warms up on it)."""
        out = VitalsRing(self.capacity)
        out._data[:] = self._data
        out._next, out.count = self._next, self.count
        return out

    def storage(self) -> tuple[npt.NDArray[np.float64], int, int]:
        """(storage, next write index, rows stored), without copying: for per-tick readers.

        `window` copies (an allocation per call); a reader on the hot path reads the ring in
        place instead and must never write to it.
        """
        return self._data, self._next, self.count

    def latest_valid(self) -> dict[str, tuple[float, float]]:
        """Each vital's most recent valid value and its edge time (s); vitals never valid are
        left out. Scans the ring (allocates): for once-a-minute readers such as NEWS2."""
        out: dict[str, tuple[float, float]] = {}
        rows = self.window()
        for i, name in enumerate(VITAL_FIELDS, start=1):
            valid = np.flatnonzero(~np.isnan(rows[:, i]))
            if valid.size:
                k = int(valid[-1])
                out[name] = (float(rows[k, i]), float(rows[k, 0]))
        return out

    def window(self, n: int | None = None) -> npt.NDArray[np.float64]:
        """Copy of the last ``n`` readings (all stored when None), oldest first, shape (n, 8)."""
        n = self.count if n is None else max(0, min(n, self.count))
        idx = (np.arange(self._next - n, self._next)) % self.capacity
        return self._data[idx].copy()


class WaveformRing:
    """Fixed-size history of one waveform channel in physical units (float32, NaN = lost).

    Gaps in the board's per-channel sample counter (``first_sample``) are filled with NaN so
    that positions in the buffer stay proportional to time; a backwards jump (board reset)
    simply restarts the counter tracking.

    Positions: sample k written since creation (NaN fill included) is position k; ``written``
    is the next one. Pace pulses (PACE frames, `mark_pace`) are kept as positions too, so a
    reader that knows which position its stream started at can tell which beats were paced.
    """

    def __init__(self, channel: WaveformChannel, rate_hz: int, seconds: int) -> None:
        if rate_hz <= 0 or seconds <= 0:
            raise ValueError("rate_hz and seconds must be > 0")
        self.channel = channel
        self.rate_hz = rate_hz
        self.capacity = rate_hz * seconds
        self._data: npt.NDArray[np.float32] = np.full(self.capacity, np.nan, dtype=np.float32)
        self._next = 0
        self.count = 0
        self._expected: int | None = None
        self.samples_missed = 0
        self.resets = 0
        self.written = 0
        """Samples written since creation, NaN gap fill included: a reader's position."""
        self.pace: deque[int] = deque(maxlen=PACE_PER_S * seconds)
        """Positions of the pace pulses the board reported, oldest first."""
        self.pace_dropped = 0
        """Pulses not kept: reported before any sample, or not after the previous one."""

    def append(self, frame: WaveformFrame) -> None:
        """Store a chunk of samples, converted with its gain and baseline."""
        if self._expected is not None and frame.first_sample != self._expected:
            ahead = (frame.first_sample - self._expected) % _SAMPLE_COUNTER_MOD
            if ahead < _SAMPLE_COUNTER_HALF:
                self.samples_missed += ahead
                self._write(np.full(min(ahead, self.capacity), np.nan, dtype=np.float32))
            else:
                self.resets += 1
        raw = np.asarray(frame.samples, dtype=np.float32)
        self._write((raw - np.float32(frame.baseline)) / np.float32(frame.gain))
        self._expected = (frame.first_sample + len(frame.samples)) % _SAMPLE_COUNTER_MOD

    def position_of(self, sample_index: int) -> int | None:
        """The position of the board's sample ``sample_index`` (u32 counter, wraps): the
        nearest one either side of the next expected sample; None before the first frame."""
        if self._expected is None:
            return None
        ahead = (sample_index - self._expected) % _SAMPLE_COUNTER_MOD
        if ahead >= _SAMPLE_COUNTER_HALF:
            ahead -= _SAMPLE_COUNTER_MOD
        return self.written + ahead

    def index_of(self, position: int) -> int | None:
        """The board's sample counter value (u32) of ``position``; None before the first
        frame. Exact back to the last counter reset (a board restart)."""
        if self._expected is None:
            return None
        return (self._expected - (self.written - position)) % _SAMPLE_COUNTER_MOD

    def between(self, start: int, n: int) -> npt.NDArray[np.float32]:
        """Copy of the samples at positions ``start`` to ``start + n - 1``; NaN where a
        position is no longer stored or not written yet."""
        out = np.full(n, np.nan, dtype=np.float32)
        lo = max(start, self.written - self.count)
        hi = min(start + n, self.written)
        if hi > lo:
            idx = (np.arange(lo, hi) - self.written + self._next) % self.capacity
            out[lo - start:hi - start] = self._data[idx]
        return out

    def mark_pace(self, frame: PaceFrame) -> None:
        """Keep the frame's pace pulses. A board sends PACE after the chunk that holds the
        pulses, so a pulse before the first sample or not after the last one kept is counted
        in ``pace_dropped`` and dropped (a late or repeated frame never reorders them)."""
        for index in frame.samples:
            pos = self.position_of(index)
            if pos is None or (self.pace and pos <= self.pace[-1]):
                self.pace_dropped += 1
                continue
            self.pace.append(pos)

    def paced(self, positions: npt.NDArray[np.int64], before: int, after: int
              ) -> npt.NDArray[np.bool_]:
        """For each position, whether a pace pulse lies from ``before`` samples ahead of it to
        ``after`` samples behind it (both inclusive)."""
        pulses = np.fromiter(self.pace, dtype=np.int64, count=len(self.pace))
        lo = np.searchsorted(pulses, positions - before, side="left")
        hi = np.searchsorted(pulses, positions + after, side="right")
        return np.asarray(hi > lo)

    def _write(self, values: npt.NDArray[np.float32]) -> None:
        n = len(values)
        self.written += n
        if n >= self.capacity:
            self._data[:] = values[-self.capacity :]
            self._next = 0
            self.count = self.capacity
            return
        end = self._next + n
        if end <= self.capacity:
            self._data[self._next : end] = values
        else:
            split = self.capacity - self._next
            self._data[self._next :] = values[:split]
            self._data[: n - split] = values[split:]
        self._next = end % self.capacity
        self.count = min(self.count + n, self.capacity)

    def since(self, position: int) -> tuple[npt.NDArray[np.float32], int]:
        """(copy of the samples written after ``position``, oldest first; the new position).
        More than the capacity behind: only what is still stored (the rest is lost)."""
        return self.latest(self.written - position), self.written

    def latest(self, n: int | None = None) -> npt.NDArray[np.float32]:
        """Copy of the last ``n`` samples (all stored when None), oldest first."""
        n = self.count if n is None else max(0, min(n, self.count))
        return self.between(self.written - n, n)


class BedState:
    """Everything the edge knows about one bed, updated frame by frame.

    ``created_s``, ``last_frame_s`` and ``last_vitals_s`` are edge monotonic seconds; detectors
    compare them with ``now`` to decide whether data is fresh.
    """

    def __init__(
        self, bed_id: str, *, now: float, vitals_history_s: int, waveform_history_s: int
    ) -> None:
        self.bed_id = bed_id
        self.created_s = now
        self.vitals = VitalsRing(vitals_history_s)
        self.waveform_history_s = waveform_history_s
        self.waveforms: dict[WaveformChannel, WaveformRing] = {}
        self.hello: HelloFrame | None = None
        self.status: StatusFrame | None = None
        self.last_frame_s: float | None = None
        self.last_vitals_s: float | None = None
        self.link_up = False
        self.frames = 0
        # Manual readings (edge/commands.py `reading`): field -> (value, edge time s).
        self.manual: dict[str, tuple[float | bool | str, float]] = {}
        # The latest NEWS2 of the bed and when it was scored (edge time s).
        self.news2: tuple[News2, float] | None = None

    def vitals_snapshot(self) -> BedState:
        """A bed with a copy of this one's vitals history and manual readings, nothing else:
        what a new model warms up on while the running one keeps scoring (edge/runtime.py)."""
        out = BedState(self.bed_id, now=self.created_s, vitals_history_s=self.vitals.capacity,
                       waveform_history_s=self.waveform_history_s)
        out.vitals = self.vitals.copy()
        out.manual = dict(self.manual)
        out.last_vitals_s = self.last_vitals_s
        return out

    @property
    def status_flags(self) -> StatusFlag:
        """Flags of the latest STATUS frame (none before the first)."""
        return self.status.flags if self.status is not None else StatusFlag(0)

    def apply(self, frame: Frame, now: float) -> None:
        """Update the state with one decoded frame received at edge time ``now`` (s)."""
        self.frames += 1
        self.last_frame_s = now
        if isinstance(frame, VitalsFrame):
            self.vitals.append(now, frame)
            self.last_vitals_s = now
        elif isinstance(frame, WaveformFrame):
            ring = self.waveforms.get(frame.channel)
            if ring is None or ring.rate_hz != frame.rate_hz:
                if ring is not None:
                    _log.info(
                        "bed %s: %s rate changed %d -> %d Hz; buffer reallocated",
                        self.bed_id, frame.channel.name, ring.rate_hz, frame.rate_hz,
                    )
                ring = WaveformRing(frame.channel, frame.rate_hz, self.waveform_history_s)
                self.waveforms[frame.channel] = ring
            ring.append(frame)
        elif isinstance(frame, PaceFrame):
            ring = self.waveforms.get(frame.channel)
            if ring is None:
                _log.debug("bed %s: PACE for %s before any of its samples; dropped",
                           self.bed_id, frame.channel.name)
            else:
                ring.mark_pace(frame)
        elif isinstance(frame, StatusFrame):
            self.status = frame
        elif isinstance(frame, HelloFrame):
            if self.hello is not None:
                _log.info("bed %s: board sent HELLO again (restart?)", self.bed_id)
            self.hello = frame

    def fresh_vitals(self, now: float, max_age_s: float) -> VitalsSample | None:
        """The latest vitals if received within ``max_age_s`` seconds of ``now``, else None."""
        sample = self.vitals.latest()
        if sample is None or now - sample.time_s > max_age_s:
            return None
        return sample
