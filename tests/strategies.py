"""Hypothesis strategies that build frames whose values are exactly representable on the wire."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from firmware_bridge.codec import MAX_PACE_PULSES, MAX_WAVEFORM_SAMPLES
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

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i16 = st.integers(-0x8000, 0x7FFF)


def _scaled(scale: int, lo: int, hi: int) -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), st.integers(lo, hi).map(lambda v: v / scale))


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


vitals = st.builds(
    VitalsFrame,
    seq=u16,
    timestamp_ms=u32,
    hr_bpm=_scaled(10, 0, 0xFFFF),
    spo2_pct=_scaled(10, 0, 0xFFFF),
    rr_per_min=_scaled(10, 0, 0xFFFF),
    sbp_mmhg=_scaled(10, 0, 0xFFFF),
    dbp_mmhg=_scaled(10, 0, 0xFFFF),
    map_mmhg=_scaled(10, 0, 0xFFFF),
    temp_c=_scaled(100, -0x8000, 0x7FFF),
)
waveform = st.builds(
    WaveformFrame,
    seq=u16,
    timestamp_ms=u32,
    channel=st.sampled_from(WaveformChannel),
    rate_hz=st.integers(1, 0xFFFF),
    gain=st.floats(0.0625, 1e6, allow_nan=False, width=32).map(_f32),
    baseline=i16,
    first_sample=u32,
    samples=st.lists(i16, min_size=1, max_size=MAX_WAVEFORM_SAMPLES).map(tuple),
)
pace = st.builds(
    PaceFrame,
    seq=u16,
    timestamp_ms=u32,
    channel=st.sampled_from(WaveformChannel),
    samples=st.lists(u32, min_size=1, max_size=MAX_PACE_PULSES).map(lambda v: tuple(sorted(v))),
)
status = st.builds(
    StatusFrame,
    seq=u16,
    timestamp_ms=u32,
    flags=st.integers(0, sum(StatusFlag)).map(StatusFlag),
    battery_pct=st.one_of(st.none(), st.integers(0, 100)),
    fault_code=u16,
)
hello = st.builds(
    HelloFrame,
    seq=u16,
    timestamp_ms=u32,
    firmware_version=st.tuples(u8, u8, u8),
    board_id=u32,
    sensors=st.integers(0, sum(Sensor)).map(Sensor),
    ecg_rate_hz=u16,
    ppg_rate_hz=u16,
    resp_rate_hz=u16,
    vitals_period_ms=u16,
)
ack = st.builds(
    AckFrame,
    seq=u16,
    timestamp_ms=u32,
    acked_seq=u16,
    acked_type=st.one_of(st.sampled_from(FrameType), u8),
    result=st.sampled_from(AckResult),
    nonce=u32,
)
ping = st.builds(PingFrame, seq=u16, timestamp_ms=u32, nonce=u32)
set_rates = st.builds(
    SetRatesFrame, seq=u16, timestamp_ms=u32, ecg_rate_hz=u16, ppg_rate_hz=u16,
    vitals_period_ms=u16,
)

frames: st.SearchStrategy[Frame] = st.one_of(
    vitals, waveform, pace, status, hello, ack, ping, set_rates
)
