"""Replay: shipped fixtures (always) and the real recordings in ../shared/data (when present)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _boards import board_frames
from _data import shared_data_dir

from firmware_bridge.codec import Decoder
from firmware_bridge.frames import (
    HelloFrame,
    PaceFrame,
    Sensor,
    StatusFlag,
    StatusFrame,
    VitalsFrame,
    WaveformChannel,
    WaveformFrame,
)
from firmware_bridge.sim.board import Board
from firmware_bridge.sim.events import parse_event
from firmware_bridge.sim.model import PatientModel
from firmware_bridge.sim.replay import (
    FIXTURE_DIR,
    FIXTURES,
    PACE_LEAD_S,
    RecordingSource,
    fit_scale,
    fixture_path,
    load_bidmc_numerics,
    load_recording,
)
from firmware_bridge.sim.vitals import Vital

pytest.importorskip("wfdb", reason="replay needs the 'sim' extra (wfdb)")
pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # nanmedian of all-NaN gaps
    pytest.mark.filterwarnings("ignore:The inplace keyword"),  # inside wfdb, with pandas 3
]


def _board(path: str | Path, events: tuple[str, ...] = (), **kw: float) -> Board:
    rec = load_recording(path, **kw)
    model = PatientModel(RecordingSource(rec), [parse_event(e) for e in events], seed=1)
    return Board(model)


def _decode(board: Board, until_ms: int) -> tuple[list, Decoder]:
    dec = Decoder()
    frames = []
    for t in range(0, until_ms + 1, 500):
        frames += dec.feed(board.advance(t))
    assert dec.stats.errors == 0
    return frames, dec


# --------------------------------------------------------------------------- shipped fixtures


def test_fixtures_are_small_and_attributed():
    files = list(FIXTURE_DIR.iterdir())
    assert sum(f.stat().st_size for f in files) < 300_000
    readme = (FIXTURE_DIR / "README.md").read_text()
    for needed in ("ODC-By 1.0", "Goldberger", "Moody", "Pimentel", "Johnson", "synthetic"):
        assert needed in readme
    for name in FIXTURES:
        p = fixture_path(name)
        assert p.exists() or p.with_suffix(".hea").exists() or Path(f"{p}.hea").exists()


def test_mitdb_fixture_heart_rate_from_reference_annotations():
    rec = load_recording("fixture:mitdb-100")
    assert rec.fs_hz == 360
    assert rec.ecg_lead == "MLII"
    assert rec.ecg_mv is not None
    assert rec.ecg_mv.shape == (360 * 60,)
    assert rec.sensors == Sensor.ECG
    hr = rec.vitals[:, Vital.HR]
    assert np.isfinite(hr[3:]).all()
    assert 65 < np.nanmedian(hr) < 85  # record 100: sinus rhythm around 75 bpm
    assert any("annotations" in n for n in rec.notes)


def test_mitdb_fixture_replayed_samples_match_the_recording():
    rec = load_recording("fixture:mitdb-100")
    board = Board(PatientModel(RecordingSource(rec), seed=1))
    frames, _ = _decode(board, 10_000)
    hello = frames[0]
    assert isinstance(hello, HelloFrame)
    assert hello.ecg_rate_hz == 360
    assert hello.ppg_rate_hz == 0
    waves = [f for f in frames if isinstance(f, WaveformFrame)]
    assert {f.channel for f in waves} == {WaveformChannel.ECG_II, WaveformChannel.ECG_V}
    ecg = [f for f in waves if f.channel is WaveformChannel.ECG_II]
    samples = np.concatenate([np.asarray(f.samples, dtype=float) for f in ecg])
    mv = (samples - ecg[0].baseline) / ecg[0].gain
    n = mv.shape[0]
    assert n == 3600
    # Within quantisation plus the board's 10 uV sensor noise.
    assert np.max(np.abs(mv - rec.ecg_mv[:n])) < 0.06
    assert np.corrcoef(mv, rec.ecg_mv[:n])[0, 1] > 0.99
    assert max(abs(s) for s in samples) <= 32767


def _ecg_chunks(frames: list) -> list[tuple[WaveformFrame, WaveformFrame]]:
    """(lead II, lead V) frame pairs, checking lead V comes right after lead II every time."""
    pairs = []
    previous = None
    for f in frames:
        if isinstance(f, WaveformFrame) and f.channel is WaveformChannel.ECG_V:
            assert isinstance(previous, WaveformFrame), f"lead V after {previous}"
            assert previous.channel is WaveformChannel.ECG_II
            pairs.append((previous, f))
        previous = f
    n_ii = sum(isinstance(f, WaveformFrame) and f.channel is WaveformChannel.ECG_II for f in frames)
    assert len(pairs) == n_ii  # every lead II frame has its lead V frame
    return pairs


def _mv(frames: list[WaveformFrame]) -> np.ndarray:
    return np.concatenate([(np.asarray(f.samples, dtype=float) - f.baseline) / f.gain
                           for f in frames])


def test_mitdb_fixture_sends_its_precordial_lead_as_ecg_v():
    """Record 100 has MLII and V5: V5 goes out on channel 5, sample for sample beside lead II."""
    rec = load_recording("fixture:mitdb-100")
    assert rec.ecg_v_lead == "V5"
    assert rec.ecg_v_mv is not None
    assert rec.ecg_mv is not None
    assert rec.ecg_v_mv.shape == rec.ecg_mv.shape
    board = Board(PatientModel(RecordingSource(rec), seed=1))
    frames, _ = _decode(board, 10_000)
    pairs = _ecg_chunks(frames)
    for ii, v in pairs:
        assert (v.first_sample, v.rate_hz, len(v.samples)) == (
            ii.first_sample, ii.rate_hz, len(ii.samples))
        assert v.rate_hz == 360
    gain, baseline = fit_scale(rec.ecg_v_mv)
    assert {(v.gain, v.baseline) for _, v in pairs} == {(gain, baseline)}
    mv = _mv([v for _, v in pairs])
    n = mv.shape[0]
    assert n == 3600
    # Within quantisation plus the board's 10 uV sensor noise; not a copy of lead II.
    assert np.max(np.abs(mv - rec.ecg_v_mv[:n])) < 0.06
    assert np.corrcoef(mv, rec.ecg_v_mv[:n])[0, 1] > 0.99
    assert np.corrcoef(mv, rec.ecg_mv[:n])[0, 1] < 0.9


def test_ecg_v_shares_the_ecg_rate_and_counter_across_set_rates_and_reboots():
    board = _board("fixture:mitdb-100", ("board_reset@12:1",))
    frames = board_frames(board, 20_000, 250, ecg_rate_at=(5_000, 250))
    hellos = [i for i, f in enumerate(frames) if isinstance(f, HelloFrame)]
    assert len(hellos) == 2
    first_boot, second_boot = frames[: hellos[1]], frames[hellos[1] :]
    pairs = _ecg_chunks(first_boot)
    for ii, v in pairs:
        assert (v.first_sample, v.rate_hz, len(v.samples)) == (
            ii.first_sample, ii.rate_hz, len(ii.samples))
    rates = [v.rate_hz for _, v in pairs]
    assert rates[0] == 360
    assert rates[-1] == 250
    change = next(v.first_sample for _, v in pairs if v.rate_hz == 250)
    assert change == 5 * 360  # the counter goes on at the new rate, for both leads
    indices = [i for _, v in pairs for i in range(v.first_sample, v.first_sample + len(v.samples))]
    assert indices == list(range(len(indices)))  # no gap, no overlap
    pairs = _ecg_chunks(second_boot)  # the reboot restarts both counters at the recorded rate
    assert pairs[0][0].first_sample == pairs[0][1].first_sample == 0
    assert {(ii.rate_hz, v.rate_hz) for ii, v in pairs} == {(360, 360)}


def test_recordings_without_a_precordial_lead_send_no_channel_5():
    rec = load_recording("fixture:bidmc-01")  # leads II, V (unnumbered) and AVR
    assert rec.ecg_v_mv is None
    assert rec.ecg_v_lead is None
    frames, _ = _decode(_board("fixture:bidmc-01"), 5_000)
    assert WaveformChannel.ECG_V not in {f.channel for f in frames if isinstance(f, WaveformFrame)}
    assert load_recording("fixture:mimic3-numerics").ecg_v_mv is None


def test_bidmc_fixture_signals_and_numerics():
    rec = load_recording("fixture:bidmc-01")
    assert rec.fs_hz == 125
    assert rec.ecg_lead == "II"  # header names have leading spaces
    assert rec.ppg_au is not None
    assert rec.ecg_mv is not None
    assert rec.ecg_mv.shape[0] == 2501
    spo2 = rec.vitals[:, Vital.SPO2]
    assert np.isnan(spo2[15:17]).all()  # 0 in the file: not measured
    assert np.isfinite(spo2[:15]).all()
    assert rec.vitals[0, Vital.RR] == 23.0
    assert rec.sensors & (Sensor.ECG | Sensor.PPG | Sensor.SPO2 | Sensor.RESP)
    frames, _ = _decode(_board("fixture:bidmc-01"), 18_000)
    vitals = {f.timestamp_ms: f for f in frames if isinstance(f, VitalsFrame)}
    assert vitals[15_000].spo2_pct is None
    assert vitals[13_000].spo2_pct == 97.0
    assert vitals[10_000].hr_bpm is not None
    channels = {f.channel for f in frames if isinstance(f, WaveformFrame)}
    assert channels == {WaveformChannel.ECG_II, WaveformChannel.PPG}


def test_bidmc_numerics_file_alone():
    v = load_bidmc_numerics(FIXTURE_DIR / "bidmc_01_Numerics.csv")
    assert v.shape == (21, 7)
    assert v[0, Vital.HR] == 94.0
    rec = load_recording(FIXTURE_DIR / "bidmc_01_Numerics.csv")
    assert rec.fs_hz == 0
    assert rec.ecg_mv is None
    # No recorded waveforms: ECG and PPG are synthesised from the replayed rates.
    frames, _ = _decode(Board(PatientModel(RecordingSource(rec), seed=1)), 5_000)
    hello = frames[0]
    assert isinstance(hello, HelloFrame)
    assert hello.ecg_rate_hz == 250
    assert hello.ppg_rate_hz == 125


def test_mimic_numerics_fixture_held_piecewise_constant():
    rec = load_recording("fixture:mimic3-numerics")
    assert rec.vitals.shape[0] == 120 * 60
    hr = rec.vitals[:, Vital.HR]
    minutes = hr.reshape(120, 60)
    assert (minutes == minutes[:, :1]).all()  # constant within each minute
    assert len(np.unique(hr)) > 10  # but it changes from minute to minute
    assert np.isfinite(rec.vitals[:, Vital.SPO2]).all()
    # Non-invasive pressure: sparse readings held for a while.
    sbp = rec.vitals[:, Vital.SBP]
    assert 0.3 < np.isfinite(sbp).mean() < 1.0
    assert any("piecewise-constant" in n for n in rec.notes)


def test_replay_with_events_on_top():
    board = _board("fixture:mimic3-numerics", ("desaturation@10+5:20=10", "probe_off@50:5"))
    frames, _ = _decode(board, 60_000)
    spo2 = {f.timestamp_ms: f.spo2_pct for f in frames if isinstance(f, VitalsFrame)}
    base = spo2[5_000]
    assert base is not None
    assert spo2[20_000] == pytest.approx(base - 10, abs=1.0)
    assert spo2[52_000] is None
    assert any(isinstance(f, StatusFrame) and f.flags & StatusFlag.PROBE_OFF for f in frames)


def test_replay_loops_or_ends():
    rec = load_recording("fixture:bidmc-01")
    looping = RecordingSource(rec, loop=True)
    n = rec.vitals.shape[0]
    np.testing.assert_array_equal(looping.physiology(3), looping.physiology(3 + n))
    once = RecordingSource(rec, loop=False)
    assert np.isnan(once.physiology(100)).all()
    board = Board(PatientModel(once, seed=1))
    board.advance(30_000)
    assert board.finished


@pytest.mark.parametrize(
    ("x", "min_span"),
    [
        (np.linspace(0, 1, 50), 20_000),
        (np.linspace(-3, 2, 50), 20_000),
        # Far from 0: the baseline (an int16) limits the gain, so fewer counts are used.
        (np.linspace(100, 101, 50), 200),
    ],
)
def test_fit_scale_fits_int16(x, min_span):
    gain, baseline = fit_scale(x)
    counts = np.round(x * gain) + baseline
    assert counts.min() >= -32768
    assert counts.max() <= 32767
    assert np.ptp(counts) > min_span
    np.testing.assert_allclose((counts - baseline) / gain, x, atol=1.0 / gain)


def test_unknown_fixture_and_missing_file():
    with pytest.raises(ValueError, match="mitdb-100"):
        load_recording("fixture:nope")
    with pytest.raises(FileNotFoundError):
        load_recording("/nonexistent/record")


def test_no_heavy_import_at_module_level():
    code = (
        "import sys, firmware_bridge.sim, firmware_bridge.sim.cli, firmware_bridge.sim.replay;"
        "heavy = [m for m in ('wfdb', 'pandas', 'scipy', 'matplotlib') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------ real recordings


def test_mitdb_record_with_reference_annotations():
    path = shared_data_dir("mitdb", "208")
    rec = load_recording(path, max_duration_s=120)
    assert rec.fs_hz == 360
    assert rec.ecg_mv is not None
    assert rec.ecg_mv.shape == (360 * 120,)
    hr = rec.vitals[:, Vital.HR]
    assert np.isfinite(hr[5:]).mean() > 0.95
    assert 60 < np.nanmedian(hr) < 130


def test_mitdb_101_lead_v1_replayed_on_channel_5():
    """Decoded ECG_V samples are the record's V1 channel, at lead II's indices and rate."""
    import wfdb  # noqa: PLC0415 - heavy, and importorskip'ed above

    path = shared_data_dir("mitdb", "101")
    rec = load_recording(path, max_duration_s=30.0)
    assert rec.ecg_lead == "MLII"
    assert rec.ecg_v_lead == "V1"
    model = PatientModel(RecordingSource(rec, loop=False), seed=1)
    frames, _ = _decode(Board(model), 20_000)
    pairs = _ecg_chunks(frames)
    for ii, v in pairs:
        assert (v.first_sample, v.rate_hz, len(v.samples)) == (
            ii.first_sample, ii.rate_hz, len(ii.samples))
    mv = _mv([v for _, v in pairs])
    n = mv.shape[0]
    assert n == 20 * 360
    raw = wfdb.rdrecord(str(path), sampto=n, channel_names=["V1"])
    v1 = np.asarray(raw.p_signal[:, 0], dtype=float)
    gain = pairs[0][1].gain
    # Exactly the model's lead V within int16 quantisation (half a count) ...
    t = np.arange(n) / 360
    expected = PatientModel(RecordingSource(rec, loop=False), seed=1).waveform(
        WaveformChannel.ECG_V, t)
    assert np.max(np.abs(mv - expected)) <= 0.5 / gain + 1e-9
    # ... which is V1 as recorded plus the board's 10 uV sensor noise.
    assert np.max(np.abs(mv - v1)) < 0.06
    assert np.std(mv - v1) < 0.015  # V1 is small in 101: the noise, not the shape, differs


def _paced_annotations(path: Path, seconds: float) -> np.ndarray:
    """Sample numbers (360 Hz) of the paced ('/') and fusion ('f') beats, read directly."""
    import wfdb  # noqa: PLC0415 - heavy, and importorskip'ed above

    ann = wfdb.rdann(str(path), "atr", sampto=round(360 * seconds))
    return np.asarray(ann.sample)[np.isin(ann.symbol, ["/", "f"])]


def _pace_indices(frames: list) -> list[int]:
    """PACE indices, checking each frame follows the ECG WAVEFORM frame holding its samples."""
    out: list[int] = []
    previous = lead_ii = None
    for f in frames:
        if isinstance(f, PaceFrame):
            # Right after the chunk's ECG frames: lead II, then lead V when the record has one.
            assert isinstance(previous, WaveformFrame)
            assert previous.channel in (WaveformChannel.ECG_II, WaveformChannel.ECG_V)
            assert f.channel is WaveformChannel.ECG_II
            assert lead_ii is not None
            assert lead_ii.first_sample == previous.first_sample
            first = previous.first_sample
            assert first <= f.samples[0] <= f.samples[-1] < first + len(previous.samples)
            out += f.samples
        if isinstance(f, WaveformFrame) and f.channel is WaveformChannel.ECG_II:
            lead_ii = f
        previous = f
    return out


@pytest.mark.parametrize("record", ["104", "217"])
def test_paced_mitdb_record_sends_pace_frames_at_the_paced_beats(record: str):
    path = shared_data_dir("mitdb", record)
    rec = load_recording(path, max_duration_s=60.0)
    assert rec.sensors & Sensor.PACE
    board = Board(PatientModel(RecordingSource(rec, loop=False), seed=1))
    frames, _ = _decode(board, 60_000)
    hello = frames[0]
    assert isinstance(hello, HelloFrame)
    assert hello.sensors & Sensor.PACE
    assert hello.ecg_rate_hz == 360
    got = np.array(_pace_indices(frames))
    want = _paced_annotations(path, 60.0)
    assert got.size == want.size > 50
    assert np.abs(got - want).max() <= 0.025 * 360
    assert np.median(want - got) == round(PACE_LEAD_S * 360)


def test_paced_mitdb_record_at_another_board_rate():
    """SET_RATES to 250 Hz at 10 s: indices go on in the same counter at the new rate."""
    path = shared_data_dir("mitdb", "107")
    board = Board(PatientModel(RecordingSource(load_recording(path, max_duration_s=30.0)), seed=1))
    frames = board_frames(board, 30_000, 500, ecg_rate_at=(10_000, 250))
    change = next(f.first_sample for f in frames if getattr(f, "rate_hz", 0) == 250)
    assert change == 3600
    got = np.array(_pace_indices(frames))
    ann = _paced_annotations(path, 30.0)
    want = np.where(ann < 3600, ann, change + (ann - 3600) * 250 / 360)
    rate = np.where(ann < 3600, 360, 250)
    assert got.size == want.size
    assert np.all(np.abs(got - want) <= 0.025 * rate)


def test_non_paced_records_send_no_pace_frames():
    rec = load_recording("fixture:mitdb-100")
    assert rec.pace_s.size == 0
    assert not rec.sensors & Sensor.PACE
    frames, _ = _decode(_board("fixture:mitdb-100"), 20_000)
    assert isinstance(frames[0], HelloFrame)
    assert not frames[0].sensors & Sensor.PACE
    assert not any(isinstance(f, PaceFrame) for f in frames)
    rec = load_recording(shared_data_dir("mitdb", "208"), max_duration_s=60.0)
    assert rec.pace_s.size == 0
    assert not rec.sensors & Sensor.PACE


def test_cinc2015_alarm_record_mat_format():
    path = shared_data_dir("physionet-samples", "a103l")
    rec = load_recording(path)
    assert rec.fs_hz == 250
    assert rec.ecg_lead == "II"
    assert rec.ppg_au is not None
    assert rec.duration_s == pytest.approx(330.0)
    frames, dec = _decode(_board(path), 5_000)
    assert dec.stats.errors == 0
    hello = frames[0]
    assert isinstance(hello, HelloFrame)
    assert (hello.ecg_rate_hz, hello.ppg_rate_hz) == (250, 250)


def test_mimic_numerics_record():
    path = shared_data_dir("physionet-samples", "mimic3-s25047", "s25047-2704-05-04-10-44n")
    rec = load_recording(path)
    assert rec.vitals.shape[0] == 72 * 60
    assert np.nanmedian(rec.vitals[:, Vital.SPO2]) > 85
    assert np.isnan(rec.vitals[:60, Vital.SPO2]).all()  # first minute reads 0: not measured


def test_mimic_multisegment_waveform_record_with_numerics_and_missing_segments():
    folder = shared_data_dir("physionet-samples", "mimic3-s00001")
    path = folder / "s00001-2896-10-10-00-31"
    # Segment 3975656_0009 (starting 2,227,598 samples in) is not in the folder: a gap.
    rec = load_recording(path, start_s=2_227_598 / 125 - 10, max_duration_s=20)
    assert rec.fs_hz == 125
    assert rec.ecg_mv is not None
    ecg = rec.ecg_mv
    assert np.isfinite(ecg[: 125 * 2]).all()
    assert np.isnan(ecg[125 * 11 :]).all()
    assert any("numerics" in n for n in rec.notes)
    board = Board(PatientModel(RecordingSource(rec, loop=False), seed=1))
    frames, _ = _decode(board, 19_000)
    lead_off = [f for f in frames if isinstance(f, StatusFrame) and f.flags & StatusFlag.LEAD_OFF]
    assert lead_off
    assert lead_off[0].timestamp_ms >= 10_000


def test_mimic_multisegment_record_from_the_start():
    path = shared_data_dir("physionet-samples", "mimic3-s25047") / "s25047-2704-05-04-10-44"
    rec = load_recording(path, max_duration_s=300)
    assert rec.fs_hz == 125
    assert rec.ecg_mv is not None
    assert np.isfinite(rec.ecg_mv).mean() > 0.2  # this stay has many short gaps
    assert np.nanmedian(rec.vitals[:, Vital.HR]) > 40


def test_bidmc_signals_records():
    folder = shared_data_dir("bidmc")
    for csv_file in sorted(folder.glob("bidmc_*_Signals.csv"))[:3]:
        rec = load_recording(csv_file, max_duration_s=60)
        assert rec.fs_hz == 125
        assert rec.ecg_mv is not None
        assert rec.ecg_mv.shape[0] == 60 * 125
        assert rec.ppg_au is not None
        assert 40 < np.nanmedian(rec.vitals[:, Vital.HR]) < 160


def test_bedside_record_with_arterial_pressure():
    path = shared_data_dir("physionet-samples", "03700181")
    rec = load_recording(path)
    assert rec.fs_hz == 125
    assert rec.ecg_lead == "MCL1"
    bp = rec.vitals[:, [Vital.SBP, Vital.DBP, Vital.MAP]]
    ok = np.isfinite(bp).all(axis=1)
    assert ok.mean() > 0.9
    assert (bp[ok, 0] > bp[ok, 2]).all()
    assert (bp[ok, 2] > bp[ok, 1]).all()


def test_shared_data_dir_skips_or_fails_when_absent(monkeypatch: pytest.MonkeyPatch, tmp_path):
    import _data  # noqa: PLC0415 - the helper module itself is under test

    monkeypatch.setattr(_data, "SHARED_DATA", tmp_path / "nothing-here")
    monkeypatch.delenv("VIGIL_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not found"):
        _data.shared_data_dir("mitdb")
    monkeypatch.setenv("VIGIL_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="VIGIL_REQUIRE_DATA=1"):
        _data.shared_data_dir("mitdb")


def test_replay_without_wfdb_says_which_extra_to_install() -> None:
    """On a Pi with only the edge extra, replaying WFDB says what to install, no traceback."""
    probe = (
        "import sys; sys.modules['wfdb'] = None\n"
        "from firmware_bridge.sim.cli import main\n"
        "sys.exit(main(['--replay', 'fixture:mitdb-100', '--duration', '1']))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 2
    assert "pip install 'vigil[sim]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_bidmc_record_replays_ecg_ppg_and_arterial_pressure_together():
    """BIDMC record 04 has an arterial line: the board sends it as a third WAVEFORM channel
    (mmHg, at the recording's 125 Hz) beside ECG and PPG, and only because it was recorded."""
    rec = load_recording(shared_data_dir("bidmc", "bidmc_04_Signals.csv"), max_duration_s=20.0)
    assert rec.abp_mmhg is not None
    board = Board(PatientModel(RecordingSource(rec), seed=1))
    frames, _ = _decode(board, 10_000)
    waves = [f for f in frames if isinstance(f, WaveformFrame)]
    assert {f.channel for f in waves} == {WaveformChannel.ECG_II, WaveformChannel.PPG,
                                          WaveformChannel.ABP}
    abp = [f for f in waves if f.channel is WaveformChannel.ABP]
    assert {f.rate_hz for f in abp} == {125}
    mmhg = (np.concatenate([np.asarray(f.samples, dtype=float) for f in abp])
            - abp[0].baseline) / abp[0].gain
    n = mmhg.shape[0]
    assert np.corrcoef(mmhg, rec.abp_mmhg[:n])[0, 1] > 0.99
    assert 40 < float(np.median(mmhg)) < 160  # a plausible arterial pressure
    # A record without an arterial line sends no ABP channel (none is synthesised).
    plain = load_recording(shared_data_dir("bidmc", "bidmc_01_Signals.csv"), max_duration_s=5.0)
    assert plain.abp_mmhg is None
    frames, _ = _decode(Board(PatientModel(RecordingSource(plain), seed=1)), 3_000)
    assert WaveformChannel.ABP not in {f.channel for f in frames if isinstance(f, WaveformFrame)}
