"""The simulated patient as the board sees it: a signal source plus injected events.

`PatientModel` is sans-I/O and deterministic. It answers three questions for any time of the
simulation (seconds since the simulation started, not since the board booted: a board reset
does not change the patient):

- ``vitals(t)``: the reading a monitor would report (NaN = not measured);
- ``waveform(channel, t_array)``: ECG (mV) / PPG (a.u.) samples at those times;
  ECG lead V (channel 5) only when a replayed recording has it, and always treated as lead II
  is: lead off and gaps in lead II flatten it too, noise bursts and motion reach it as well;
- ``status_flags(t)``: lead off / probe off as the board would flag them;
- ``pace_times(t0, t1)``: pacemaker pulses the board detects (a replayed paced recording).

Pipeline per second: source physiology -> clinical events (the patient changes) -> source
measurement (noise, artefacts) -> technical events (probe off, lead off, noise burst). Waveforms
of a synthetic source follow the event-modified heart and respiration rate; recorded waveforms
are replayed as recorded, and only technical events (flat line, noise) change them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray

from firmware_bridge.frames import Sensor, StatusFlag, WaveformChannel
from firmware_bridge.sim._noise import hashed_normal
from firmware_bridge.sim.events import (
    Event,
    apply_clinical_events,
    apply_technical_events,
    technical_state,
)
from firmware_bridge.sim.synth import ecg_lead_ii_mv, phase_at, ppg_au
from firmware_bridge.sim.vitals import Vital

__all__ = [
    "ECG_GAIN_COUNTS_PER_MV",
    "PPG_GAIN_COUNTS_PER_AU",
    "PatientModel",
    "Source",
]

_log = logging.getLogger(__name__)

# int16 scaling of synthesised waveforms: 1000 counts/mV keeps 1 uV resolution and +-32 mV range.
ECG_GAIN_COUNTS_PER_MV: Final = 1000.0
PPG_GAIN_COUNTS_PER_AU: Final = 10000.0

_HISTORY_S: Final = 600  # per-second state kept in memory
_SECONDS_PER_MINUTE: Final = 60.0

# Rates that drive synthesis when the source has none (e.g. a gap in a recording).
_DEFAULT_HR_BPM: Final = 75.0
_DEFAULT_RR_PER_MIN: Final = 15.0

# Waveform noise at noise level 1 (a typical motion artefact): white noise plus a baseline that
# jumps every quarter second, per channel unit.
_NOISE_WHITE: Final[dict[WaveformChannel, float]] = {
    WaveformChannel.ECG_II: 0.12,  # mV
    WaveformChannel.ECG_V: 0.12,  # mV
    WaveformChannel.PPG: 0.08,  # a.u.
    WaveformChannel.ABP: 3.0,  # mmHg: a flushed or knocked line
}
_NOISE_STEP: Final[dict[WaveformChannel, float]] = {
    WaveformChannel.ECG_II: 0.5,  # mV
    WaveformChannel.ECG_V: 0.5,  # mV
    WaveformChannel.PPG: 0.4,  # a.u.
    WaveformChannel.ABP: 10.0,  # mmHg
}
_NOISE_STEP_PER_S: Final = 4
_SENSOR_NOISE: Final[dict[WaveformChannel, float]] = {
    WaveformChannel.ECG_II: 0.01,  # mV, electrode and amplifier noise
    WaveformChannel.ECG_V: 0.01,  # mV
    WaveformChannel.PPG: 0.005,  # a.u.
    WaveformChannel.ABP: 0.2,  # mmHg, transducer noise
}
_US_PER_S: Final = 1_000_000
_S_WAVE_WHITE: Final = 40
_S_WAVE_STEP: Final = 50
_S_SENSOR: Final = 60
_SUPPORTED: Final = (
    WaveformChannel.ECG_II,
    WaveformChannel.ECG_V,
    WaveformChannel.PPG,
    WaveformChannel.ABP,
)
_ECG_CHANNELS: Final = frozenset({WaveformChannel.ECG_II, WaveformChannel.ECG_V})
_RECORDED_ONLY: Final = (WaveformChannel.ECG_V, WaveformChannel.ABP)
"""Channels sent only when the replayed recording has them (no synthetic lead V or arterial
line)."""


class Source(Protocol):
    """Where physiology comes from: `SyntheticPatient` or `RecordingSource`."""

    name: str
    sensors: Sensor
    end_s: float | None

    def physiology(self, second: int) -> NDArray[np.float64]:
        """True vitals at a whole second, before events (NaN = unknown)."""
        ...

    def measure(self, second: int, true_row: NDArray[np.float64]) -> NDArray[np.float64]:
        """The monitor's reading of a true row."""
        ...

    def motion_level(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Waveform motion-noise level at times t_s."""
        ...

    def native_rate(self, channel: WaveformChannel) -> int | None:
        """Recorded sample rate of the channel; None: synthesised."""
        ...

    def scale(self, channel: WaveformChannel) -> tuple[float, int] | None:
        """(gain, baseline) of a recorded channel; None: synthesised."""
        ...

    def recorded(
        self, channel: WaveformChannel, t_s: NDArray[np.float64]
    ) -> NDArray[np.float64] | None:
        """Recorded samples at t_s, or None if the channel is synthesised."""
        ...

    def pace_times(self, t0_s: float, t1_s: float) -> NDArray[np.float64]:
        """Pacemaker pulse times (s) in [t0_s, t1_s), increasing; empty: no pulses."""
        ...


class PatientModel:
    """Source + events -> readings, waveforms and status flags at any simulated time."""

    def __init__(self, source: Source, events: Sequence[Event] = (), *, seed: int = 0) -> None:
        """``seed`` drives every random number added here (event noise, waveform noise)."""
        self.source = source
        self.events = tuple(sorted(events, key=lambda e: e.onset_s))
        self.seed = seed
        # Per-second state from second self._k0 on (older seconds are dropped: a running board
        # only ever looks back one chunk).
        self._k0 = 0
        self._true: list[NDArray[np.float64]] = []
        self._hr: list[float] = []  # driving heart rate (bpm), NaN-free
        self._rr: list[float] = []  # driving respiration rate (/min), NaN-free
        self._cum_hr: list[float] = []  # beats since t = 0 at each whole second
        self._cum_rr: list[float] = []  # breaths since t = 0 at each whole second

    @property
    def sensors(self) -> Sensor:
        """Sensor set the board advertises."""
        return self.source.sensors

    @property
    def end_s(self) -> float | None:
        """Time at which the source runs out (None: never)."""
        return self.source.end_s

    def has_channel(self, channel: WaveformChannel) -> bool:
        """Whether the board sends this waveform channel at all."""
        if channel is WaveformChannel.ECG_II:
            return bool(self.sensors & Sensor.ECG)
        if channel is WaveformChannel.PPG:
            return bool(self.sensors & Sensor.PPG)
        if channel is WaveformChannel.ECG_V and not self.sensors & Sensor.ECG:
            return False
        if channel in _RECORDED_ONLY:
            return self.source.native_rate(channel) is not None
        return False

    def native_rate(self, channel: WaveformChannel) -> int | None:
        """Sample rate the recording has for this channel (None: synthesised, any rate)."""
        return self.source.native_rate(channel)

    def scale(self, channel: WaveformChannel) -> tuple[float, int]:
        """(gain counts/unit, baseline count) of the channel on the wire."""
        fitted = self.source.scale(channel)
        if fitted is not None:
            return fitted
        if channel in _ECG_CHANNELS:
            return ECG_GAIN_COUNTS_PER_MV, 0
        return PPG_GAIN_COUNTS_PER_AU, 0

    # ------------------------------------------------------------------------------ per second

    def _extend(self, second: int) -> None:
        """Compute true (event-modified) vitals up to ``second`` inclusive, in order."""
        for k in range(self._k0 + len(self._true), second + 1):
            base = self.source.physiology(k)
            row = apply_clinical_events(base, [float(k)], self.events)[0]
            self._true.append(row)
            for rates, cum, value, default in (
                (self._hr, self._cum_hr, row[Vital.HR], _DEFAULT_HR_BPM),
                (self._rr, self._cum_rr, row[Vital.RR], _DEFAULT_RR_PER_MIN),
            ):
                rate = float(value) if np.isfinite(value) else (rates[-1] if rates else default)
                # Trapezoid = exact integral of the rate taken as linear within each second.
                cum.append(cum[-1] + (rates[-1] + rate) / (2 * _SECONDS_PER_MINUTE) if cum else 0.0)
                rates.append(rate)
        if len(self._true) > 2 * _HISTORY_S:
            drop = len(self._true) - _HISTORY_S
            for buf in (self._true, self._hr, self._rr, self._cum_hr, self._cum_rr):
                del buf[:drop]
            self._k0 += drop

    def true_vitals(self, second: int) -> NDArray[np.float64]:
        """Physiology after clinical events at a whole second (what the patient really has)."""
        self._extend(second)
        if second < self._k0:
            raise IndexError(f"second {second} is older than the {_HISTORY_S} s kept")
        return self._true[second - self._k0].copy()

    def vitals(self, t_s: float) -> NDArray[np.float64]:
        """The reading at time ``t_s`` (s): held per whole second, NaN = not measured."""
        second = max(int(np.floor(t_s)), 0)
        reading = self.source.measure(second, self.true_vitals(second))
        out: NDArray[np.float64] = apply_technical_events(
            reading, [t_s], self.events, seed=self.seed
        )[0]
        return out

    # ------------------------------------------------------------------------------- waveforms

    def waveform(self, channel: WaveformChannel, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Samples of ``channel`` at times ``t_s`` (s, increasing), in the channel's unit.

        Lead off / probe off and recording gaps give a flat line at 0 units (the board's
        baseline); noise bursts and motion add noise. Vectorized over the whole chunk.
        ECG lead V gets what lead II gets at the same times: the same noise level (its own
        draws), a flat line during lead off and also wherever the recorded lead II has a gap.
        """
        if channel not in _SUPPORTED:
            raise ValueError(f"channel {channel!r} is not simulated")
        t = np.asarray(t_s, dtype=np.float64)
        if t.size == 0:
            return np.zeros(0)
        x = self.source.recorded(channel, t)
        if x is None and channel is WaveformChannel.ECG_V:
            raise ValueError("ECG lead V is only replayed, never synthesised")
        x = self._synthesise(channel, t) if x is None else np.array(x, dtype=np.float64)
        tech = technical_state(t, self.events)
        level = tech.noise + self.source.motion_level(t)
        us = np.round(t * _US_PER_S).astype(np.int64)
        ch = int(channel)
        x = x + _SENSOR_NOISE[channel] * hashed_normal(self.seed, _S_SENSOR + ch, us)
        if np.any(level > 0):
            step_key = np.floor(t * _NOISE_STEP_PER_S).astype(np.int64)
            white = hashed_normal(self.seed, _S_WAVE_WHITE + ch, us)
            step = hashed_normal(self.seed, _S_WAVE_STEP + ch, step_key)
            x = x + level * (_NOISE_WHITE[channel] * white + _NOISE_STEP[channel] * step)
        flat = ~np.isfinite(x)
        if channel in _ECG_CHANNELS:
            flat |= tech.lead_off
        if channel is WaveformChannel.ECG_V:  # a gap in lead II (electrodes off): both leads
            lead_ii = self.source.recorded(WaveformChannel.ECG_II, t)
            if lead_ii is not None:
                flat |= ~np.isfinite(lead_ii)
        elif channel is WaveformChannel.PPG:
            flat |= tech.probe_off
        x[flat] = 0.0
        return x

    def _synthesise(self, channel: WaveformChannel, t: NDArray[np.float64]) -> NDArray[np.float64]:
        self._extend(int(np.floor(t.max())) + 1)
        if t.min() < self._k0:
            raise IndexError(f"t={t.min()} s is older than the {_HISTORY_S} s kept")
        hr = np.asarray(self._hr)
        rr = np.asarray(self._rr)
        local_t = t - self._k0  # arrays start at second k0; cumulative counts are absolute
        beat = phase_at(hr, np.asarray(self._cum_hr), local_t)
        resp = phase_at(rr, np.asarray(self._cum_rr), local_t)
        hr_now = np.interp(local_t, np.arange(hr.shape[0], dtype=np.float64), hr)
        if channel is WaveformChannel.ECG_II:
            return ecg_lead_ii_mv(beat, hr_now, resp)
        return ppg_au(beat, hr_now, resp)

    def pace_times(self, t0_s: float, t1_s: float) -> NDArray[np.float64]:
        """Times (s, simulation clock like ``waveform``) of pacemaker pulses in [t0_s, t1_s).

        The source's pulses (a replayed recording loops them with its ECG), minus those the
        board cannot see: ECG lead off (an event) or a gap in the recorded ECG. Increasing.
        """
        if not self.has_channel(WaveformChannel.ECG_II):
            return np.empty(0)
        t = np.asarray(self.source.pace_times(t0_s, t1_s), dtype=np.float64)
        if t.size == 0:
            return t
        seen = ~technical_state(t, self.events).lead_off
        rec = self.source.recorded(WaveformChannel.ECG_II, t)
        if rec is not None:
            seen &= np.isfinite(rec)
        if not seen.all():
            _log.debug("%d pacemaker pulses unseen (lead off or gap)", int((~seen).sum()))
        return t[seen]

    # ---------------------------------------------------------------------------------- status

    def status_flags(self, t_s: float) -> StatusFlag:
        """Technical flags at ``t_s``: lead off / probe off from events or recording gaps."""
        flags = StatusFlag(0)
        tech = technical_state([t_s], self.events)
        t = np.array([t_s])
        if self.has_channel(WaveformChannel.ECG_II):
            rec = self.source.recorded(WaveformChannel.ECG_II, t)
            if tech.lead_off[0] or (rec is not None and not np.isfinite(rec[0])):
                flags |= StatusFlag.LEAD_OFF
        if self.has_channel(WaveformChannel.PPG):
            rec = self.source.recorded(WaveformChannel.PPG, t)
            if tech.probe_off[0] or (rec is not None and not np.isfinite(rec[0])):
                flags |= StatusFlag.PROBE_OFF
        return flags
