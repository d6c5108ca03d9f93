"""Sans-I/O emulation of the Vigil sensor board (PROTOCOL.md is normative).

Rules of this state machine (everything that decides what goes on the wire lives here):

- Time is the caller's: ``advance(t_ms)`` says "simulated time is now t_ms" (ms since the
  simulation started) and returns the encoded bytes the board sent in between. Nothing here
  sleeps, reads a clock or touches a port, so tests run hours of board time in milliseconds.
- Boot: a lone 0x00 (``SYNC``), HELLO with seq 0 and timestamp 0, then STATUS. ``timestamp_ms``
  is ms since the current boot; ``seq`` counts every frame this boot sent (wraps at 65536).
- Then, while powered: a WAVEFORM frame per channel every ``chunk_ms`` (ECG lead II, ECG lead V
  when a replayed recording has a precordial lead beside lead II (MIT-BIH), PPG, and arterial
  pressure when a replayed recording has it: BIDMC, MIMIC-III, 03700181) with the samples
  taken since the previous chunk (per-channel sample counter since boot), VITALS
  every ``vitals_period_ms`` (first one a period after boot), STATUS when the flags change
  (checked at every chunk) and at least every ``status_period_ms``.
- ECG leads are sampled together: lead V has lead II's rate and the same sample counter (same
  ``first_sample`` in every chunk, also after SET_RATES, which sets the rate of both, and after
  a reboot). Per chunk: ECG lead II frame(s), ECG lead V frame(s), PACE, PPG, arterial pressure.
- Pacemaker pulses (a replayed paced recording; HELLO then advertises ``Sensor.PACE``): right
  after a chunk's ECG WAVEFORM frames (lead II, then lead V), before the other channels', one
  PACE frame (several if more than `MAX_PACE_PULSES`) with the ECG sample indices nearest to
  the pulses that chunk's samples cover; nothing when the chunk had none. Consecutive chunks
  cover consecutive time spans, so every pulse seen while powered goes out once, also across
  SET_RATES (indices continue in the same counter) and reboots (the counter restarts at 0).
- Commands read from the Pi (``receive``) are answered with ACK at the next ``advance``: PING
  echoes the nonce; SET_RATES is checked (rates `MIN_WAVE_RATE_HZ`..`MAX_WAVE_RATE_HZ`, vitals
  period `MIN_VITALS_PERIOD_MS`..`MAX_VITALS_PERIOD_MS`, a channel the board lacks is
  UNSUPPORTED) and applied at once; anything else from the Pi is ignored.
- Board reset and cable unplug events switch the board off for the event's span: nothing is
  sent, commands are lost. It boots again at the end (a USB-powered board loses power when its
  cable is pulled), so the Pi sees 0x00 + HELLO seq 0 with timestamps restarting at 0 and the
  rates back to their defaults. During an unplug ``link_up`` is False: the transport adapter
  makes the port disappear.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from firmware_bridge.codec import MAX_PACE_PULSES, MAX_WAVEFORM_SAMPLES, SYNC, Decoder, encode
from firmware_bridge.frames import (
    AckFrame,
    AckResult,
    Frame,
    FrameType,
    HelloFrame,
    PaceFrame,
    PingFrame,
    Sensor,
    SetRatesFrame,
    StatusFlag,
    StatusFrame,
    VitalsFrame,
    WaveformChannel,
    WaveformFrame,
)
from firmware_bridge.sim.events import EventKind
from firmware_bridge.sim.model import PatientModel
from firmware_bridge.sim.vitals import Vital

__all__ = [
    "MAX_VITALS_PERIOD_MS",
    "MAX_WAVE_RATE_HZ",
    "MIN_VITALS_PERIOD_MS",
    "MIN_WAVE_RATE_HZ",
    "Board",
    "BoardConfig",
    "BoardStats",
]

_log = logging.getLogger(__name__)

MIN_WAVE_RATE_HZ: Final = 50
MAX_WAVE_RATE_HZ: Final = 1000
MIN_VITALS_PERIOD_MS: Final = 250
MAX_VITALS_PERIOD_MS: Final = 60_000
_SEQ_MOD: Final = 1 << 16
_TS_MOD: Final = 1 << 32
_INT16_MIN: Final = -32768
_INT16_MAX: Final = 32767
_MS_PER_S: Final = 1000
_ECG_CHANNELS: Final = (WaveformChannel.ECG_II, WaveformChannel.ECG_V)
"""Sampled together: one rate, one sample counter; sent in this order, then PACE."""
_OTHER_CHANNELS: Final = (WaveformChannel.PPG, WaveformChannel.ABP)

# Actions, in the order they happen when due at the same millisecond.
_POWER_OFF: Final = 0
_BOOT: Final = 1
_CHUNK: Final = 2
_VITALS: Final = 3
_STATUS: Final = 4


@dataclass(frozen=True, slots=True)
class BoardConfig:
    """What the emulated board is and how often it sends (defaults match a typical board).

    ``ecg_rate_hz`` / ``ppg_rate_hz`` apply to synthesised waveforms; a replayed channel uses its
    recorded rate. ``status_period_ms`` is below the protocol's 5 s so a receiver that checks
    "STATUS within 5 s" by its own clock has margin. ``pace_detector`` False: a front end
    without one (no PACE bit in HELLO, no PACE frame, even for a paced recording).
    """

    board_id: int = 0x5649_4731  # "VIG1"
    firmware_version: tuple[int, int, int] = (1, 0, 0)
    ecg_rate_hz: int = 250
    ppg_rate_hz: int = 125
    vitals_period_ms: int = 1000
    chunk_ms: int = 200
    status_period_ms: int = 4000
    battery_pct: int | None = None  # None: mains powered, no battery
    pace_detector: bool = True


@dataclass(slots=True)
class BoardStats:
    """What the board did, for logs and tests."""

    boots: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    commands: int = 0
    frames_by_type: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Channel:
    rate_hz: int
    gain: float
    baseline: int
    next_index: int = 0  # samples sent since boot
    seg_t0_ms: int = 0  # sim time of sample seg_i0 (rate changes start a new segment)
    seg_i0: int = 0

    def due(self, t_ms: int) -> int:
        """Index one past the last sample taken before t_ms."""
        return self.seg_i0 + -(-((t_ms - self.seg_t0_ms) * self.rate_hz) // _MS_PER_S)

    def times_s(self, first: int, n: int) -> np.ndarray:
        """Simulated times (s) of samples first..first+n-1."""
        k = np.arange(first - self.seg_i0, first - self.seg_i0 + n, dtype=np.float64)
        return (self.seg_t0_ms + k * _MS_PER_S / self.rate_hz) / _MS_PER_S

    def nearest_index(self, t_s: np.ndarray) -> np.ndarray:
        """Index (since boot, not wrapped) of the sample nearest to each simulated time (s)."""
        k = np.round((np.asarray(t_s) * _MS_PER_S - self.seg_t0_ms) * self.rate_hz / _MS_PER_S)
        return self.seg_i0 + k.astype(np.int64)


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _none_if_nan(value: float, digits: int) -> float | None:
    return None if not math.isfinite(value) else round(float(value), digits)


class Board:
    """The board: given simulated time, the bytes it sends; given bytes, the commands it gets.

    Create one per simulation: ``Board(PatientModel(source, events, seed=...), BoardConfig())``,
    then call ``advance(t_ms)`` with increasing times and write what it returns to the link.
    """

    def __init__(self, model: PatientModel, config: BoardConfig | None = None) -> None:
        """Board that boots at t = 0 (or when the first off interval covering 0 ends)."""
        self.model = model
        self.config = config or BoardConfig()
        self.stats = BoardStats()
        self._now_ms = 0
        off: list[tuple[int, int]] = []
        unplug: list[tuple[int, int]] = []
        for ev in model.events:
            span = (round(ev.onset_s * _MS_PER_S), round(ev.end_s * _MS_PER_S))
            if ev.kind is EventKind.CABLE_UNPLUG:
                unplug.append(span)
                off.append(span)
            elif ev.kind is EventKind.BOARD_RESET:
                off.append(span)
        self._off = _merge(off)
        self._unplug = _merge(unplug)
        self._off_i = 0
        self._powered = False
        self._boot_at: int | None = 0
        if self._off and self._off[0][0] <= 0:
            self._boot_at = self._off[0][1]
            self._off_i = 1
        self._boot_ms = 0
        self._seq = 0
        self._rx = Decoder(synced=True)
        self._acks: list[tuple[int, FrameType, AckResult, int]] = []
        self._channels: dict[WaveformChannel, _Channel] = {}
        self._vitals_period_ms = self.config.vitals_period_ms
        self._next_chunk = self._next_vitals = self._next_status = 0
        self._flags = StatusFlag(0)
        self._pending_out = bytearray()  # frames sent while handling a command
        self._pace_from_s = 0.0  # pulses before this simulated time (s) are sent or unseen

    # ------------------------------------------------------------------------------ properties

    @property
    def now_ms(self) -> int:
        """Simulated time (ms since the simulation started) the board has reached."""
        return self._now_ms

    @property
    def powered(self) -> bool:
        """False while a board reset or cable unplug keeps the board off."""
        return self._powered

    @property
    def link_up(self) -> bool:
        """False while the cable is unplugged: the port should not exist."""
        return not any(a <= self._now_ms < b for a, b in self._unplug)

    @property
    def finished(self) -> bool:
        """True once a non-looping replay has run out of recording."""
        end = self.model.end_s
        return end is not None and self._now_ms >= end * _MS_PER_S

    def next_link_change_ms(self) -> int | None:
        """Next simulated time after now at which ``link_up`` changes (None: never)."""
        later = [t for span in self._unplug for t in span if t > self._now_ms]
        return min(later) if later else None

    def rate_hz(self, channel: WaveformChannel) -> int:
        """Current sample rate of a channel (0: not sent)."""
        ch = self._channels.get(channel)
        return ch.rate_hz if ch else 0

    # ---------------------------------------------------------------------------------- input

    def receive(self, data: bytes) -> None:
        """Bytes from the Pi. Commands are answered at the next ``advance``; lost while off."""
        if not self._powered:
            return
        for frame in self._rx.feed(data):
            self._command(frame)

    def _command(self, frame: Frame) -> None:
        self.stats.commands += 1
        if isinstance(frame, PingFrame):
            self._acks.append((frame.seq, FrameType.PING, AckResult.OK, frame.nonce))
        elif isinstance(frame, SetRatesFrame):
            result = self._set_rates(frame)
            self._acks.append((frame.seq, FrameType.SET_RATES, result, 0))
        else:
            _log.debug("ignoring %s from the Pi", type(frame).__name__)

    def _set_rates(self, cmd: SetRatesFrame) -> AckResult:
        wanted = {WaveformChannel.ECG_II: cmd.ecg_rate_hz, WaveformChannel.PPG: cmd.ppg_rate_hz}
        for channel, rate in wanted.items():
            if rate == 0:
                continue
            if channel not in self._channels:
                return AckResult.UNSUPPORTED
            if not MIN_WAVE_RATE_HZ <= rate <= MAX_WAVE_RATE_HZ:
                return AckResult.BAD_ARGUMENT
        period = cmd.vitals_period_ms
        if period and not MIN_VITALS_PERIOD_MS <= period <= MAX_VITALS_PERIOD_MS:
            return AckResult.BAD_ARGUMENT
        self._emit_waveforms(self._now_ms, self._pending_out)  # samples so far: old rate
        wanted[WaveformChannel.ECG_V] = cmd.ecg_rate_hz  # every ECG lead has the ECG rate
        for channel, rate in wanted.items():
            ch = self._channels.get(channel)
            if rate and ch is not None and rate != ch.rate_hz:
                ch.seg_t0_ms, ch.seg_i0, ch.rate_hz = self._now_ms, ch.next_index, rate
                _log.info("%s rate now %d Hz", channel.name, rate)
        if period:
            self._vitals_period_ms = period
            self._next_vitals = self._now_ms + period
        return AckResult.OK

    # --------------------------------------------------------------------------------- output

    def advance(self, t_ms: int) -> bytes:
        """Move simulated time to ``t_ms`` and return every byte sent on the way."""
        if t_ms < self._now_ms:
            raise ValueError(f"time went back: {t_ms} ms < {self._now_ms} ms")
        out = self._pending_out
        self._pending_out = bytearray()
        if self._powered:
            for seq, ftype, result, nonce in self._acks:
                self._send(
                    AckFrame(acked_seq=seq, acked_type=ftype, result=result, nonce=nonce), out
                )
        self._acks.clear()
        while True:
            when, action = self._next_action()
            if when > t_ms:
                break
            self._now_ms = when
            self._do(action, when, out)
        self._now_ms = t_ms
        return bytes(out)

    def _next_action(self) -> tuple[int, int]:
        if not self._powered:
            if self._boot_at is None:
                return (1 << 62, _BOOT)
            return (self._boot_at, _BOOT)
        candidates = [
            (self._next_chunk, _CHUNK),
            (self._next_vitals, _VITALS),
            (self._next_status, _STATUS),
        ]
        if self._off_i < len(self._off):
            candidates.append((self._off[self._off_i][0], _POWER_OFF))
        return min(candidates)

    def _do(self, action: int, t: int, out: bytearray) -> None:
        if action == _BOOT:
            self._boot(t, out)
        elif action == _POWER_OFF:
            start, end = self._off[self._off_i]
            self._off_i += 1
            self._powered = False
            self._boot_at = end
            self._acks.clear()
            _log.info("board off at %.3f s until %.3f s", start / _MS_PER_S, end / _MS_PER_S)
        elif action == _CHUNK:
            self._emit_waveforms(t, out)
            self._next_chunk = t + self.config.chunk_ms
            flags = self.model.status_flags(t / _MS_PER_S)
            if flags != self._flags:
                self._send_status(t, flags, out)
        elif action == _VITALS:
            self._send_vitals(t, out)
            self._next_vitals = t + self._vitals_period_ms
        else:
            self._send_status(t, self.model.status_flags(t / _MS_PER_S), out)

    def _boot(self, t: int, out: bytearray) -> None:
        cfg = self.config
        self.stats.boots += 1
        self._powered = True
        self._boot_at = None
        self._boot_ms = t
        self._seq = 0
        self._rx.reset(synced=True)
        self._acks.clear()
        self._vitals_period_ms = cfg.vitals_period_ms
        self._channels = {}
        for channel, default in (
            (WaveformChannel.ECG_II, cfg.ecg_rate_hz),
            (WaveformChannel.PPG, cfg.ppg_rate_hz),
            (WaveformChannel.ABP, cfg.ppg_rate_hz),  # recorded only: its own rate applies
        ):
            if self.model.has_channel(channel):
                rate = self.model.native_rate(channel) or default
                gain, baseline = self.model.scale(channel)
                self._channels[channel] = _Channel(rate, gain, baseline, 0, t, 0)
        lead_ii = self._channels.get(WaveformChannel.ECG_II)
        if lead_ii is not None and self.model.has_channel(WaveformChannel.ECG_V):
            # Lead V shares lead II's rate and counter (both start at 0 now); its own scale.
            gain, baseline = self.model.scale(WaveformChannel.ECG_V)
            self._channels[WaveformChannel.ECG_V] = _Channel(
                lead_ii.rate_hz, gain, baseline, 0, t, 0
            )
        self._pace_from_s = t / _MS_PER_S  # pulses while the board was off are lost
        _log.info("board boot #%d at %.3f s", self.stats.boots, t / _MS_PER_S)
        out += SYNC
        self._send(
            HelloFrame(
                firmware_version=cfg.firmware_version,
                board_id=cfg.board_id,
                sensors=self._sensors,
                ecg_rate_hz=self.rate_hz(WaveformChannel.ECG_II),
                ppg_rate_hz=self.rate_hz(WaveformChannel.PPG),
                resp_rate_hz=0,
                vitals_period_ms=self._vitals_period_ms,
            ),
            out,
        )
        self._send_status(t, self.model.status_flags(t / _MS_PER_S), out)
        self._next_chunk = t + cfg.chunk_ms
        self._next_vitals = t + self._vitals_period_ms

    def _send(self, frame: Frame, out: bytearray) -> None:
        """Stamp seq and timestamp (the board's, at the current time) and encode."""
        stamped = dataclasses.replace(
            frame, seq=self._seq, timestamp_ms=(self._now_ms - self._boot_ms) % _TS_MOD
        )
        data = encode(stamped)
        out += data
        self._seq = (self._seq + 1) % _SEQ_MOD
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(data)
        self.stats.frames_by_type[stamped.frame_type.name] += 1

    def _send_status(self, t: int, flags: StatusFlag, out: bytearray) -> None:
        if flags != self._flags:
            _log.info("status flags %r at %.3f s", flags, t / _MS_PER_S)
        self._flags = flags
        self._send(StatusFrame(flags=flags, battery_pct=self.config.battery_pct), out)
        self._next_status = t + self.config.status_period_ms

    def _send_vitals(self, t: int, out: bytearray) -> None:
        v = self.model.vitals(t / _MS_PER_S)
        self._send(
            VitalsFrame(
                hr_bpm=_none_if_nan(v[Vital.HR], 1),
                spo2_pct=_none_if_nan(v[Vital.SPO2], 1),
                rr_per_min=_none_if_nan(v[Vital.RR], 1),
                sbp_mmhg=_none_if_nan(v[Vital.SBP], 1),
                dbp_mmhg=_none_if_nan(v[Vital.DBP], 1),
                map_mmhg=_none_if_nan(v[Vital.MAP], 1),
                temp_c=_none_if_nan(v[Vital.TEMP], 2),
            ),
            out,
        )

    @property
    def _sensors(self) -> Sensor:
        """What this board measures: the source's sensors, less PACE without a detector."""
        sensors = self.model.sensors
        return sensors if self.config.pace_detector else sensors & ~Sensor.PACE

    def _emit_waveforms(self, t: int, out: bytearray) -> None:
        """Samples due by ``t``: ECG lead II, ECG lead V, PACE for them, then PPG and ABP."""
        span = None
        for channel in _ECG_CHANNELS:
            sent = self._emit_channel(channel, t, out)
            if channel is WaveformChannel.ECG_II:
                span = sent
        if span is not None and self._sensors & Sensor.PACE:
            self._emit_pace(self._channels[WaveformChannel.ECG_II], *span, out)
        for channel in _OTHER_CHANNELS:
            self._emit_channel(channel, t, out)

    def _emit_channel(
        self, channel: WaveformChannel, t: int, out: bytearray
    ) -> tuple[int, int] | None:
        """WAVEFORM frame(s) of one channel's samples due by ``t``; (first, end) indices sent."""
        ch = self._channels.get(channel)
        if ch is None:
            return None
        first, end = ch.next_index, ch.due(t)
        n = end - first
        if n <= 0:
            return None
        x = self.model.waveform(channel, ch.times_s(first, n))
        counts = np.clip(np.round(x * ch.gain) + ch.baseline, _INT16_MIN, _INT16_MAX)
        samples = counts.astype(np.int64).tolist()
        for k in range(0, n, MAX_WAVEFORM_SAMPLES):
            part = samples[k : k + MAX_WAVEFORM_SAMPLES]
            self._send(
                WaveformFrame(
                    channel=channel,
                    rate_hz=ch.rate_hz,
                    gain=ch.gain,
                    baseline=ch.baseline,
                    first_sample=(first + k) % _TS_MOD,
                    samples=tuple(part),
                ),
                out,
            )
        ch.next_index = end
        return first, end

    def _emit_pace(self, ch: _Channel, first: int, end: int, out: bytearray) -> None:
        """PACE frame(s) for the ECG samples first..end-1 just sent, if they had pulses.

        The chunk covers the pulses from where the previous one stopped to half a sample before
        sample ``end`` (those nearer to ``end`` belong to the next chunk). A pulse whose nearest
        sample is outside the chunk (just before a rate change) is put on its first or last
        sample; two pulses on one sample are one pulse, as a detector would report them.
        """
        upto_s = float(ch.times_s(end, 1)[0]) - 0.5 / ch.rate_hz
        pulses = self.model.pace_times(self._pace_from_s, upto_s)
        self._pace_from_s = max(self._pace_from_s, upto_s)
        if pulses.size == 0:
            return
        idx = np.unique(np.clip(ch.nearest_index(pulses), first, end - 1)) % _TS_MOD
        indices = idx.tolist()
        for k in range(0, len(indices), MAX_PACE_PULSES):
            part = indices[k : k + MAX_PACE_PULSES]
            self._send(PaceFrame(channel=WaveformChannel.ECG_II, samples=tuple(part)), out)
