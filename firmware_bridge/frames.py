"""Typed frames of the Vigil board protocol (see PROTOCOL.md, which is normative).

Every frame carries the header fields `seq` (u16, per direction, wraps) and `timestamp_ms`
(u32, the sender's monotonic clock in milliseconds, wraps after ~49.7 days). Physical values
travel as scaled integers on the wire; the dataclasses expose them in physical units and use
``None`` for "not valid" (the wire's validity flag is clear).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "PROTOCOL_VERSION",
    "AckFrame",
    "AckResult",
    "Frame",
    "FrameType",
    "HelloFrame",
    "PaceFrame",
    "PingFrame",
    "Sensor",
    "SetRatesFrame",
    "StatusFlag",
    "StatusFrame",
    "VitalsFrame",
    "WaveformChannel",
    "WaveformFrame",
]

PROTOCOL_VERSION = 1


class FrameType(enum.IntEnum):
    """Frame type byte. 0x01-0x0F board -> Pi; 0x10-0x1F Pi -> board; ACK is board -> Pi."""

    HELLO = 0x01
    VITALS = 0x02
    WAVEFORM = 0x03
    STATUS = 0x04
    ACK = 0x05
    PACE = 0x06
    PING = 0x10
    SET_RATES = 0x11


class Sensor(enum.IntFlag):
    """Sensor set advertised in HELLO."""

    NONE = 0
    ECG = 0x0001
    PPG = 0x0002
    SPO2 = 0x0004
    RESP = 0x0008
    NIBP = 0x0010
    ABP = 0x0020
    TEMP = 0x0040
    PACE = 0x0080  # the board detects pacemaker pulses and sends PACE frames


class WaveformChannel(enum.IntEnum):
    """Which signal a WAVEFORM frame carries; physical unit in brackets."""

    ECG_II = 1  # [mV]
    PPG = 2  # [arbitrary units]
    RESP = 3  # [arbitrary units, impedance]
    ABP = 4  # [mmHg]
    ECG_V = 5  # [mV]
    ECG_I = 6  # [mV]


class StatusFlag(enum.IntFlag):
    """Technical conditions reported by the board in STATUS."""

    NONE = 0
    LEAD_OFF = 0x0001
    PROBE_OFF = 0x0002
    SENSOR_FAULT = 0x0004
    BATTERY_LOW = 0x0008
    ON_BATTERY = 0x0010
    NIBP_FAULT = 0x0020
    TEMP_PROBE_OFF = 0x0040


class AckResult(enum.IntEnum):
    """Outcome of a command in ACK."""

    OK = 0
    UNSUPPORTED = 1
    BAD_ARGUMENT = 2
    BUSY = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloFrame:
    """Sent by the board at boot (seq 0): who it is, what it samples, at which rates."""

    seq: int = 0
    timestamp_ms: int = 0
    firmware_version: tuple[int, int, int] = (0, 0, 0)
    board_id: int = 0
    sensors: Sensor = Sensor.NONE
    ecg_rate_hz: int = 0
    ppg_rate_hz: int = 0
    resp_rate_hz: int = 0
    vitals_period_ms: int = 1000

    frame_type = FrameType.HELLO


@dataclass(frozen=True, slots=True, kw_only=True)
class VitalsFrame:
    """One vitals sample (normally 1 Hz). ``None`` means not measured / not valid.

    Resolutions on the wire: hr, spo2, rr, blood pressures 0.1 unit; temperature 0.01 degC.
    """

    seq: int = 0
    timestamp_ms: int = 0
    hr_bpm: float | None = None
    spo2_pct: float | None = None
    rr_per_min: float | None = None
    sbp_mmhg: float | None = None
    dbp_mmhg: float | None = None
    map_mmhg: float | None = None
    temp_c: float | None = None

    frame_type = FrameType.VITALS


@dataclass(frozen=True, slots=True, kw_only=True)
class WaveformFrame:
    """A chunk of consecutive int16 samples of one channel.

    Physical value = (sample - baseline) / gain, in the channel's unit (mV for ECG, mmHg for
    ABP). ``first_sample`` is the index of samples[0] in the board's per-channel counter
    (u32, wraps), so a receiver can see gaps independently of frame sequence numbers.
    """

    seq: int = 0
    timestamp_ms: int = 0
    channel: WaveformChannel = WaveformChannel.ECG_II
    rate_hz: int = 250
    gain: float = 200.0
    baseline: int = 0
    first_sample: int = 0
    samples: tuple[int, ...] = field(default_factory=tuple)

    frame_type = FrameType.WAVEFORM


@dataclass(frozen=True, slots=True, kw_only=True)
class PaceFrame:
    """Pacemaker pulses the board detected on an ECG channel, as sample indices.

    Why: a pace spike is 0.1-2 ms wide, so it is invisible in a waveform sampled at 250-500 Hz;
    only the acquisition hardware sees it. The Pi uses the pulses to label paced beats (never
    called ventricular; no atrial-fibrillation detection on a paced rhythm).

    ``samples`` are indices in ``channel``'s per-board sample counter (the same u32 counter as
    `WaveformFrame.first_sample`, wraps) of the samples at which a pulse was detected, in
    increasing order; the time of a pulse is its index divided by that channel's rate (Hz).
    A board sends one after the WAVEFORM frame(s) that hold those samples, only when there was
    at least one pulse, and only if its HELLO advertises `Sensor.PACE`.
    """

    seq: int = 0
    timestamp_ms: int = 0
    channel: WaveformChannel = WaveformChannel.ECG_II
    samples: tuple[int, ...] = field(default_factory=tuple)

    frame_type = FrameType.PACE


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusFrame:
    """Technical state of the board (sent on change and at least every 5 s)."""

    seq: int = 0
    timestamp_ms: int = 0
    flags: StatusFlag = StatusFlag.NONE
    battery_pct: int | None = None
    fault_code: int = 0

    frame_type = FrameType.STATUS


@dataclass(frozen=True, slots=True, kw_only=True)
class AckFrame:
    """Board's answer to a command: which command (its seq and type) and the result.

    ``acked_type`` is a plain int when the board answers a command type this side does not
    know (typically with result UNSUPPORTED), so that answer still arrives.
    """

    seq: int = 0
    timestamp_ms: int = 0
    acked_seq: int = 0
    acked_type: FrameType | int = FrameType.PING
    result: AckResult = AckResult.OK
    nonce: int = 0

    frame_type = FrameType.ACK


@dataclass(frozen=True, slots=True, kw_only=True)
class PingFrame:
    """Pi -> board liveness check; the board ACKs echoing ``nonce``."""

    seq: int = 0
    timestamp_ms: int = 0
    nonce: int = 0

    frame_type = FrameType.PING


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRatesFrame:
    """Pi -> board: change sampling rates (0 leaves a rate unchanged)."""

    seq: int = 0
    timestamp_ms: int = 0
    ecg_rate_hz: int = 0
    ppg_rate_hz: int = 0
    vitals_period_ms: int = 0

    frame_type = FrameType.SET_RATES


Frame = (
    HelloFrame
    | VitalsFrame
    | WaveformFrame
    | StatusFrame
    | AckFrame
    | PaceFrame
    | PingFrame
    | SetRatesFrame
)
