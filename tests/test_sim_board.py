"""Sans-I/O board: the frame stream the real Decoder sees, resets, unplugs, commands."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest
from _boards import board_frames

from firmware_bridge.codec import MAX_PACE_PULSES, SYNC, Decoder, encode
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
from firmware_bridge.sim.board import Board, BoardConfig
from firmware_bridge.sim.events import Event, EventKind, parse_event
from firmware_bridge.sim.generator import SyntheticPatient
from firmware_bridge.sim.model import PatientModel
from firmware_bridge.sim.profiles import PROFILES
from firmware_bridge.sim.replay import Recording, RecordingSource


def make_board(events: Sequence[Event] = (), seed: int = 1, **cfg: int) -> Board:
    model = PatientModel(SyntheticPatient(PROFILES["adult"], seed=seed), events, seed=seed)
    return Board(model, BoardConfig(**cfg))


def run(board: Board, until_ms: int, step_ms: int = 100) -> tuple[bytes, list[Frame], Decoder]:
    dec = Decoder()
    wire = bytearray()
    for t in range(0, until_ms + 1, step_ms):
        wire += board.advance(t)
    frames = dec.feed(bytes(wire))
    return bytes(wire), frames, dec


def boots(frames: list[Frame]) -> list[list[Frame]]:
    """Split the stream at every HELLO."""
    out: list[list[Frame]] = []
    for f in frames:
        if isinstance(f, HelloFrame):
            out.append([])
        out[-1].append(f)
    return out


def test_boot_sequence_and_clean_decode():
    wire, frames, dec = run(make_board(), 60_000)
    assert wire.startswith(SYNC + encode(frames[0]))
    assert wire[1:2] != SYNC  # exactly one lone delimiter
    assert dec.stats.errors == 0
    assert dec.stats.bytes_dropped == 0
    assert dec.stats.seq_gaps == 0
    assert dec.stats.seq_resets == 0
    hello = frames[0]
    assert isinstance(hello, HelloFrame)
    assert hello.seq == 0
    assert hello.timestamp_ms == 0
    assert hello.ecg_rate_hz == 250
    assert hello.ppg_rate_hz == 125
    assert hello.vitals_period_ms == 1000
    assert hello.sensors & (Sensor.ECG | Sensor.PPG | Sensor.SPO2) == (
        Sensor.ECG | Sensor.PPG | Sensor.SPO2
    )
    assert [f.seq for f in frames] == list(range(len(frames)))
    ts = [f.timestamp_ms for f in frames]
    assert ts == sorted(ts)
    assert ts[-1] == 60_000


def test_vitals_at_1hz_with_plausible_values():
    _, frames, _ = run(make_board(), 30_000)
    vitals = [f for f in frames if isinstance(f, VitalsFrame)]
    assert [v.timestamp_ms for v in vitals] == list(range(1000, 30_001, 1000))
    for v in vitals:
        assert v.hr_bpm is not None
        assert 40 < v.hr_bpm < 120
        assert v.temp_c is not None
        assert 35 < v.temp_c < 39
        assert v.sbp_mmhg is not None
        assert v.dbp_mmhg is not None
        assert v.sbp_mmhg > v.dbp_mmhg


def test_waveform_chunks_are_contiguous_per_channel():
    _, frames, _ = run(make_board(), 20_000, step_ms=80)
    for channel, rate in ((WaveformChannel.ECG_II, 250), (WaveformChannel.PPG, 125)):
        waves = [f for f in frames if isinstance(f, WaveformFrame) and f.channel is channel]
        assert {w.rate_hz for w in waves} == {rate}
        expected = 0
        for w in waves:
            assert w.first_sample == expected
            expected += len(w.samples)
            assert w.timestamp_ms % 200 == 0  # one chunk every 200 ms
        assert expected == rate * 20


def test_status_periodic_and_on_change():
    _, frames, _ = run(make_board([parse_event("probe_off@12.3:5")]), 40_000)
    status = [f for f in frames if isinstance(f, StatusFrame)]
    gaps = np.diff([s.timestamp_ms for s in status])
    assert gaps.max() <= 5000
    flagged = [s for s in status if s.flags & StatusFlag.PROBE_OFF]
    assert flagged[0].timestamp_ms == 12_400  # first chunk tick at or after onset
    assert flagged[-1].timestamp_ms < 17_300
    cleared = next(s for s in status if s.timestamp_ms >= 17_300)
    assert cleared.flags == StatusFlag(0)
    assert cleared.timestamp_ms == 17_400
    spo2 = {v.timestamp_ms: v.spo2_pct for v in frames if isinstance(v, VitalsFrame)}
    assert all(spo2[t] is None for t in (13_000, 14_000, 17_000))
    assert spo2[12_000] is not None
    assert spo2[18_000] is not None


def test_lead_off_flattens_ecg_and_invalidates_hr():
    _, frames, _ = run(make_board([parse_event("lead_off@10:4")]), 20_000)
    ecg = [
        f for f in frames if isinstance(f, WaveformFrame) and f.channel is WaveformChannel.ECG_II
    ]
    flat = [w for w in ecg if 10_400 <= w.timestamp_ms <= 14_000]
    assert flat
    assert all(set(w.samples) == {w.baseline} for w in flat)
    assert all(len(set(w.samples)) > 5 for w in ecg if w.timestamp_ms < 10_000)
    hr = {v.timestamp_ms: v.hr_bpm for v in frames if isinstance(v, VitalsFrame)}
    assert hr[11_000] is None
    assert hr[9_000] is not None
    assert any(isinstance(s, StatusFrame) and s.flags & StatusFlag.LEAD_OFF for s in frames)


def test_board_reset_restarts_seq_and_timestamps():
    board = make_board([Event(EventKind.BOARD_RESET, onset_s=20.0, duration_s=1.5)])
    wire, frames, dec = run(board, 40_000)
    assert board.stats.boots == 2
    parts = boots(frames)
    assert len(parts) == 2
    first, second = parts
    assert first[-1].timestamp_ms < 20_000
    assert second[0].seq == 0
    assert second[0].timestamp_ms == 0
    assert [f.seq for f in second] == list(range(len(second)))
    assert 40_000 - 21_500 - 200 < second[-1].timestamp_ms <= 40_000 - 21_500  # since new boot
    first_vitals = next(f for f in second if isinstance(f, VitalsFrame))
    assert first_vitals.timestamp_ms == 1000
    assert dec.stats.seq_resets == 1
    assert dec.stats.errors == 0
    # The new boot starts with its own lone 0x00 before HELLO.
    assert SYNC + encode(second[0]) in wire
    wave = [f for f in second if isinstance(f, WaveformFrame)]
    assert wave[0].first_sample == 0


def test_cable_unplug_takes_the_link_down_and_reboots():
    board = make_board([parse_event("cable_unplug@10:3")])
    assert board.link_up
    assert board.next_link_change_ms() == 10_000
    board.advance(10_000)
    assert not board.link_up
    assert not board.powered
    assert board.next_link_change_ms() == 13_000
    assert board.advance(12_999) == b""
    data = board.advance(13_000)
    assert board.link_up
    assert data.startswith(SYNC)
    hello = Decoder().feed(data)[0]
    assert isinstance(hello, HelloFrame)
    assert hello.seq == 0
    assert board.next_link_change_ms() is None


def test_ping_and_set_rates_are_acked():
    board = make_board()
    dec = Decoder()
    dec.feed(board.advance(5_000))
    board.receive(encode(PingFrame(seq=7, nonce=0xDEADBEEF)))
    board.receive(encode(SetRatesFrame(seq=8, ecg_rate_hz=500, vitals_period_ms=500)))
    board.receive(encode(SetRatesFrame(seq=9, ppg_rate_hz=5)))  # too slow
    board.receive(encode(SetRatesFrame(seq=10, vitals_period_ms=100)))  # too fast
    frames = dec.feed(board.advance(10_000))
    acks = [f for f in frames if isinstance(f, AckFrame)]
    assert [(a.acked_seq, a.acked_type, a.result, a.nonce) for a in acks] == [
        (7, FrameType.PING, AckResult.OK, 0xDEADBEEF),
        (8, FrameType.SET_RATES, AckResult.OK, 0),
        (9, FrameType.SET_RATES, AckResult.BAD_ARGUMENT, 0),
        (10, FrameType.SET_RATES, AckResult.BAD_ARGUMENT, 0),
    ]
    assert all(a.timestamp_ms == 5_000 for a in acks)
    assert dec.stats.errors == 0
    assert dec.stats.seq_gaps == 0
    ecg = [
        f for f in frames if isinstance(f, WaveformFrame) and f.channel is WaveformChannel.ECG_II
    ]
    assert {w.rate_hz for w in ecg if w.timestamp_ms > 5_000} == {500}
    # Sample counter continues across the rate change.
    expected = ecg[0].first_sample
    for w in ecg:
        assert w.first_sample == expected
        expected += len(w.samples)
    vitals_ts = [f.timestamp_ms for f in frames if isinstance(f, VitalsFrame)]
    assert np.diff(vitals_ts).tolist() == [500] * (len(vitals_ts) - 1)
    assert board.rate_hz(WaveformChannel.PPG) == 125


def test_commands_are_lost_while_the_board_is_off():
    board = make_board([parse_event("board_reset@5:2")])
    board.advance(6_000)
    board.receive(encode(PingFrame(seq=1, nonce=1)))
    frames = Decoder().feed(board.advance(10_000))
    assert not any(isinstance(f, AckFrame) for f in frames)


def test_same_seed_same_bytes_whatever_the_step():
    events = [parse_event("noise_burst@3:4"), parse_event("desaturation@5+2:5")]
    a, _, _ = run(make_board(events, seed=4), 15_000, step_ms=20)
    b, _, _ = run(make_board(events, seed=4), 15_000, step_ms=1000)
    c, _, _ = run(make_board(events, seed=5), 15_000, step_ms=20)
    assert a == b
    assert a != c


def test_time_cannot_go_back():
    board = make_board()
    board.advance(1000)
    with pytest.raises(ValueError, match="back"):
        board.advance(999)


def test_ten_minutes_in_uneven_steps_decode_clean():
    board = make_board()
    dec = Decoder()
    n = 0
    t = 0
    for step in [1, 7, 333, 1000, 59_999, 20, 5] * 12:
        t += step
        n += len(dec.feed(board.advance(t)))
    assert t > 600_000
    assert n == board.stats.frames_sent
    assert dec.stats.errors == 0
    assert dec.stats.seq_resets == 0
    assert dec.stats.seq_gaps == 0


def test_seq_wraps_without_looking_like_a_reset():
    board = make_board()
    board.advance(1_000)
    board._seq = 65_530  # fast-forward the counter instead of sending 65k frames
    dec = Decoder(synced=True)  # joining at a frame boundary
    frames = dec.feed(board.advance(3_000))
    seqs = [f.seq for f in frames]
    assert seqs[:8] == [65_530, 65_531, 65_532, 65_533, 65_534, 65_535, 0, 1]
    assert dec.stats.seq_resets == 0
    assert dec.stats.seq_gaps == 0


# ---- pacemaker pulses (PACE frames) ----------------------------------------------------------


def _paced_board(
    pace_s: Sequence[float],
    *,
    fs_hz: int = 250,
    seconds: int = 60,
    loop: bool = False,
    events: Sequence[Event] = (),
    **cfg: int,
) -> Board:
    """A replayed flat ECG with pacemaker pulses at ``pace_s`` (no recorded data needed)."""
    vitals = np.full((seconds, 7), np.nan)
    vitals[:, 0] = 70.0  # heart rate, so the recording has an ECG sensor
    rec = Recording(
        name="paced",
        vitals=vitals,
        fs_hz=fs_hz,
        ecg_mv=np.zeros(seconds * fs_hz),
        pace_s=np.asarray(pace_s, dtype=np.float64),
    )
    return Board(PatientModel(RecordingSource(rec, loop=loop), events, seed=1), BoardConfig(**cfg))


def _pace_stream(frames: list[Frame]) -> list[tuple[WaveformFrame, PaceFrame]]:
    """Every PACE frame with the ECG WAVEFORM frame right before it (the order is checked)."""
    out: list[tuple[WaveformFrame, PaceFrame]] = []
    previous: Frame | None = None
    for f in frames:
        if isinstance(f, PaceFrame):
            assert isinstance(previous, WaveformFrame | PaceFrame), f"PACE after {previous}"
            wave = previous if isinstance(previous, WaveformFrame) else out[-1][0]
            assert wave.channel is WaveformChannel.ECG_II
            assert f.channel is WaveformChannel.ECG_II
            out.append((wave, f))
        previous = f
    return out


def test_pace_frames_follow_the_ecg_chunk_holding_the_pulses():
    pulses = [0.0, 1.0, 1.3, 2.1, 2.16, 2.197, 5.0004, 59.5]
    board = _paced_board(pulses)
    _, frames, dec = run(board, 60_000)
    assert dec.stats.errors == 0
    hello = frames[0]
    assert isinstance(hello, HelloFrame)
    assert hello.sensors & Sensor.PACE
    pairs = _pace_stream(frames)
    got: list[int] = []
    for wave, pace in pairs:
        assert wave.first_sample <= pace.samples[0]
        assert pace.samples[-1] < wave.first_sample + len(wave.samples)
        assert list(pace.samples) == sorted(set(pace.samples))
        got += pace.samples
    assert got == [round(t * 250) for t in pulses]
    assert board.stats.frames_by_type["PACE"] == 6  # 2.1, 2.16 and 2.197 share a chunk


def test_pace_indices_survive_a_rate_change_and_a_reboot():
    pulses = np.arange(0.5, 40.0, 0.8)
    board = _paced_board(pulses, events=[parse_event("board_reset@20:2")])
    frames = board_frames(board, 40_000, 100, ecg_rate_at=(10_000, 500))
    first_boot, second_boot = boots(frames)
    change = next(
        f.first_sample
        for f in first_boot
        if isinstance(f, WaveformFrame) and f.channel is WaveformChannel.ECG_II and f.rate_hz == 500
    )
    times = [
        i / 250 if i < change else 10.0 + (i - change) / 500
        for _, pace in _pace_stream(first_boot)
        for i in pace.samples
    ]
    times += [22.0 + i / 250 for _, pace in _pace_stream(second_boot) for i in pace.samples]
    # Off from 20 s to 22 s (and the chunk due at 20 s is never sent): those pulses are lost.
    seen = pulses[(pulses < 19.8) | (pulses >= 22.0)]
    np.testing.assert_allclose(times, seen, atol=0.5 / 250)
    assert isinstance(second_boot[0], HelloFrame)
    assert second_boot[0].sensors & Sensor.PACE


def test_pace_pulses_loop_with_the_recording_and_skip_lead_off():
    board = _paced_board([1.0, 4.0], seconds=5, loop=True, events=[parse_event("lead_off@5.5:1")])
    _, frames, _ = run(board, 15_000)
    got = [i / 250 for _, pace in _pace_stream(frames) for i in pace.samples]
    assert got == [1.0, 4.0, 9.0, 11.0, 14.0]  # 6.0 falls in the lead-off span


def test_more_than_255_pulses_in_a_chunk_are_split():
    pulses = np.arange(300) * 0.003 + 0.1  # 300 pulses, 3 ms apart, in one 1 s chunk
    board = _paced_board(pulses, fs_hz=1000, seconds=3, chunk_ms=1000)
    _, frames, dec = run(board, 2_000)
    assert dec.stats.errors == 0
    paces = [pace for _, pace in _pace_stream(frames)]
    assert [len(p.samples) for p in paces] == [MAX_PACE_PULSES, 300 - MAX_PACE_PULSES]
    assert [i for p in paces for i in p.samples] == [round(t * 1000) for t in pulses]


def test_no_pace_bit_and_no_pace_frames_without_pulses():
    _, frames, _ = run(make_board(), 10_000)
    assert isinstance(frames[0], HelloFrame)
    assert not frames[0].sensors & Sensor.PACE
    assert not any(isinstance(f, PaceFrame) for f in frames)
    _, frames, _ = run(_paced_board([]), 10_000)
    assert not frames[0].sensors & Sensor.PACE  # type: ignore[union-attr]
    assert not any(isinstance(f, PaceFrame) for f in frames)
    # A front end without a pace detector: a paced recording, no bit and no PACE frame.
    _, frames, _ = run(_paced_board([0.5, 1.5, 2.5], pace_detector=False), 10_000)
    assert not frames[0].sensors & Sensor.PACE  # type: ignore[union-attr]
    assert not any(isinstance(f, PaceFrame) for f in frames)


def _two_lead_board(events: Sequence[Event] = (), seconds: int = 20, fs_hz: int = 250) -> Board:
    """A replayed recording with lead II (a gap from 4 s to 5 s) and a precordial lead."""
    t = np.arange(seconds * fs_hz) / fs_hz
    lead_ii = np.sin(2 * np.pi * 1.2 * t)
    lead_ii[4 * fs_hz : 5 * fs_hz] = np.nan
    vitals = np.full((seconds, 7), np.nan)
    vitals[:, 0] = 72.0
    rec = Recording(
        name="two-lead",
        vitals=vitals,
        fs_hz=fs_hz,
        ecg_mv=lead_ii,
        ecg_lead="II",
        ecg_v_mv=0.5 + 0.8 * np.cos(2 * np.pi * 1.2 * t),
        ecg_v_lead="V2",
    )
    return Board(PatientModel(RecordingSource(rec, loop=False), events, seed=1))


def _lead_mv(frames: list[Frame], channel: WaveformChannel) -> tuple[np.ndarray, np.ndarray]:
    """(sample index, mV) of one channel, decoded."""
    waves = [f for f in frames if isinstance(f, WaveformFrame) and f.channel is channel]
    idx = np.concatenate([f.first_sample + np.arange(len(f.samples)) for f in waves])
    mv = np.concatenate([(np.asarray(f.samples, float) - f.baseline) / f.gain for f in waves])
    return idx, mv


def test_lead_v_follows_lead_ii_order_lead_off_gaps_and_noise():
    events = [parse_event("lead_off@8:2"), parse_event("noise_burst@12:3=2")]
    _, frames, dec = run(_two_lead_board(events), 18_000)
    assert dec.stats.errors == 0
    waves = [f for f in frames if isinstance(f, WaveformFrame)]
    # Per chunk: lead II then lead V, same indices and rate; nothing else is sent.
    assert [f.channel for f in waves] == [WaveformChannel.ECG_II, WaveformChannel.ECG_V] * (
        len(waves) // 2
    )
    for ii, v in zip(waves[::2], waves[1::2], strict=True):
        assert (v.first_sample, v.rate_hz, len(v.samples)) == (
            ii.first_sample,
            ii.rate_hz,
            len(ii.samples),
        )
    idx, lead_ii = _lead_mv(frames, WaveformChannel.ECG_II)
    idx_v, lead_v = _lead_mv(frames, WaveformChannel.ECG_V)
    assert np.array_equal(idx, idx_v)
    t = idx / 250
    for lo, hi in ((4.0, 5.0), (8.0, 10.0)):  # lead II gap, lead off: both leads flat at 0
        span = (t >= lo + 0.01) & (t < hi - 0.01)
        assert np.all(np.abs(lead_ii[span]) < 1e-3)
        assert np.all(np.abs(lead_v[span]) < 1e-3)
    clean = (t >= 1.0) & (t < 3.5)
    assert np.max(np.abs(lead_v[clean] - (0.5 + 0.8 * np.cos(2 * np.pi * 1.2 * t[clean])))) < 0.06
    burst = (t >= 12.0) & (t < 15.0)
    quiet = (t >= 15.5) & (t < 18.0)
    ref_ii = np.sin(2 * np.pi * 1.2 * t)
    ref_v = 0.5 + 0.8 * np.cos(2 * np.pi * 1.2 * t)
    for mv, ref in ((lead_ii, ref_ii), (lead_v, ref_v)):  # the burst reaches both leads
        assert np.std(mv[burst] - ref[burst]) > 10 * np.std(mv[quiet] - ref[quiet])


def test_set_rates_moves_both_ecg_leads_and_a_reboot_restarts_both():
    board = _two_lead_board([parse_event("board_reset@12:1")])
    frames = board_frames(board, 16_000, 100, ecg_rate_at=(6_000, 500))
    assert board.rate_hz(WaveformChannel.ECG_V) == 250  # rebooted: the recorded rate again
    first_boot, second_boot = boots(frames)
    assert any(isinstance(f, AckFrame) and f.result is AckResult.OK for f in first_boot)
    for part, rates in ((first_boot, {250, 500}), (second_boot, {250})):
        ii = [
            f for f in part if isinstance(f, WaveformFrame) and f.channel is WaveformChannel.ECG_II
        ]
        v = [f for f in part if isinstance(f, WaveformFrame) and f.channel is WaveformChannel.ECG_V]
        assert [(f.first_sample, f.rate_hz, len(f.samples)) for f in v] == [
            (f.first_sample, f.rate_hz, len(f.samples)) for f in ii
        ]
        assert {f.rate_hz for f in v} == rates
        assert v[0].first_sample == 0
        assert all(
            a.first_sample + len(a.samples) == b.first_sample for a, b in itertools.pairwise(v)
        )
    change = next(f for f in first_boot if isinstance(f, WaveformFrame) and f.rate_hz == 500)
    assert change.channel is WaveformChannel.ECG_II
    assert change.first_sample == 6 * 250


def test_pace_follows_every_ecg_lead_of_the_chunk():
    vitals = np.full((10, 7), np.nan)
    vitals[:, 0] = 70.0
    rec = Recording(
        name="paced-two-lead",
        vitals=vitals,
        fs_hz=250,
        ecg_mv=np.zeros(2500),
        ecg_v_mv=np.zeros(2500),
        ecg_v_lead="V1",
        pace_s=np.array([1.0, 2.5, 7.25]),
    )
    _, frames, _ = run(Board(PatientModel(RecordingSource(rec, loop=False), seed=1)), 9_000)
    kinds = [
        f.channel.name if isinstance(f, WaveformFrame) else type(f).__name__
        for f in frames
        if isinstance(f, WaveformFrame | PaceFrame)
    ]
    paces = [i for i, k in enumerate(kinds) if k == "PaceFrame"]
    assert len(paces) == 3
    assert all(kinds[i - 2 : i] == ["ECG_II", "ECG_V"] for i in paces)
    got = [i for f in frames if isinstance(f, PaceFrame) for i in f.samples]
    assert got == [250, 625, 1812]


def test_sources_without_lead_v_send_no_channel_5():
    _, frames, _ = run(make_board(), 5_000)
    channels = {f.channel for f in frames if isinstance(f, WaveformFrame)}
    assert channels == {WaveformChannel.ECG_II, WaveformChannel.PPG}
    assert make_board().rate_hz(WaveformChannel.ECG_V) == 0
