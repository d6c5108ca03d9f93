"""Built-in generator: plausible per profile, deterministic, waveforms consistent with HR."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.frames import WaveformChannel
from firmware_bridge.sim.events import Event, EventKind
from firmware_bridge.sim.generator import SyntheticPatient
from firmware_bridge.sim.model import PatientModel
from firmware_bridge.sim.profiles import PROFILES, get_profile
from firmware_bridge.sim.replay import detect_beats, heart_rate_per_second
from firmware_bridge.sim.vitals import VITAL_LIMITS, Vital

HOURS_2 = 7200


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_vitals_stay_in_their_band(name):
    prof = get_profile(name)
    patient = SyntheticPatient(prof, seed=11)
    true = patient.physiology_block(HOURS_2)
    bands = {
        Vital.HR: prof.hr,
        Vital.SPO2: prof.spo2,
        Vital.RR: prof.rr,
        Vital.SBP: prof.sbp,
        Vital.DBP: prof.dbp,
        Vital.TEMP: prof.temp,
    }
    for vital, band in bands.items():
        col = true[:, vital]
        # The long-run mean sits in the band's middle third; most time is spent inside it.
        third = (band.high - band.low) / 3
        assert band.low + third * 0.5 <= col.mean() <= band.high - third * 0.5, vital.name
        inside = np.mean((col >= band.low - 1e-9) & (col <= band.high + 1e-9))
        assert inside > 0.6, (vital.name, inside)
    assert (true[:, Vital.SBP] > true[:, Vital.DBP] + 10).all()
    assert (true[:, Vital.MAP] > true[:, Vital.DBP]).all()
    assert (true[:, Vital.MAP] < true[:, Vital.SBP]).all()
    readings = patient.readings(1800)
    for vital, (lo, hi) in VITAL_LIMITS.items():
        col = readings[:, vital]
        col = col[np.isfinite(col)]
        assert col.min() >= lo
        assert col.max() <= hi


def test_profiles_differ_as_stated():
    means = {
        n: SyntheticPatient(p, seed=2).physiology_block(3600).mean(axis=0)
        for n, p in PROFILES.items()
    }
    assert means["athlete"][Vital.HR] < means["adult"][Vital.HR] < means["septic"][Vital.HR]
    assert means["copd"][Vital.SPO2] < means["elderly"][Vital.SPO2] < means["athlete"][Vital.SPO2]
    assert means["septic"][Vital.TEMP] > 38.0
    assert means["septic"][Vital.SBP] < means["adult"][Vital.SBP] < means["elderly"][Vital.SBP]


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match="adult"):
        get_profile("martian")


def test_same_seed_same_patient_other_seed_other_patient():
    a = SyntheticPatient(PROFILES["adult"], seed=5).readings(600)
    b = SyntheticPatient(PROFILES["adult"], seed=5).readings(600)
    c = SyntheticPatient(PROFILES["adult"], seed=6).readings(600)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(np.nan_to_num(a), np.nan_to_num(c))


def test_values_do_not_depend_on_query_order():
    p1 = SyntheticPatient(PROFILES["copd"], seed=9)
    p2 = SyntheticPatient(PROFILES["copd"], seed=9)
    late = p1.physiology(900)
    p2.physiology_block(1000)
    np.testing.assert_array_equal(late, p2.physiology(900))
    np.testing.assert_array_equal(p1.measure(900, late), p2.measure(900, late))


def test_drift_is_slow_and_noise_is_small():
    patient = SyntheticPatient(PROFILES["adult"], seed=1)
    true = patient.physiology_block(HOURS_2)
    step = np.abs(np.diff(true[:, Vital.HR]))
    assert np.median(step) < 1.0  # bpm per second: drift, not jumps
    assert true[:, Vital.HR].std() > 2.0  # but it does wander


def test_artefacts_happen_at_their_rate():
    prof = PROFILES["septic"]
    patient = SyntheticPatient(prof, seed=4)
    seconds = np.arange(10 * 3600)
    dropout = patient.spo2_dropout(seconds)
    motion = patient.motion(seconds)
    # Episodes of 3-10 s (dropout) and 2-6 s (motion) at the profile's rate per hour.
    starts = np.count_nonzero(np.diff(dropout.astype(int)) == 1)
    assert 0.4 * prof.spo2_dropout_per_hour * 10 < starts < 2.0 * prof.spo2_dropout_per_hour * 10
    assert 0 < motion.mean() < 0.05
    readings = patient.readings(3600)
    spo2_missing = np.isnan(readings[:, Vital.SPO2])
    np.testing.assert_array_equal(spo2_missing, dropout[:3600])
    assert np.isfinite(readings[:, Vital.HR]).all()


def _ecg_hr(model: PatientModel, t0: float, t1: float, fs: int = 250) -> float:
    t = np.arange(t0, t1, 1 / fs)
    ecg = model.waveform(WaveformChannel.ECG_II, t)
    beats = detect_beats(ecg, fs)
    hr = heart_rate_per_second(beats / fs, int(t1 - t0))
    return float(np.nanmedian(hr))


def test_ecg_and_ppg_follow_the_heart_rate_including_events():
    ev = Event(EventKind.TACHYCARDIA, onset_s=60, duration_s=60, ramp_s=10, magnitude=50)
    model = PatientModel(SyntheticPatient(PROFILES["adult"], seed=3), [ev], seed=3)
    before = np.mean([model.true_vitals(k)[Vital.HR] for k in range(20, 50)])
    during = np.mean([model.true_vitals(k)[Vital.HR] for k in range(80, 120)])
    assert _ecg_hr(model, 20, 50) == pytest.approx(before, abs=3)
    assert _ecg_hr(model, 80, 120) == pytest.approx(during, abs=3)
    assert during > before + 40
    t = np.arange(20, 50, 1 / 125)
    ppg = model.waveform(WaveformChannel.PPG, t)
    # One pulse per beat: count upward crossings of mid-height.
    crossings = np.count_nonzero((ppg[:-1] < 0.6) & (ppg[1:] >= 0.6))
    assert crossings == pytest.approx(before / 2, abs=2)
    ecg = model.waveform(WaveformChannel.ECG_II, np.arange(20, 50, 1 / 250))
    assert 0.8 < ecg.max() < 2.0  # mV: R wave of lead II
    assert -0.6 < ecg.min() < 0.0


def test_waveform_is_the_same_however_it_is_chunked():
    def make() -> PatientModel:
        return PatientModel(SyntheticPatient(PROFILES["septic"], seed=8), seed=8)

    t = np.arange(0, 20, 1 / 250)
    whole = make().waveform(WaveformChannel.ECG_II, t)
    m = make()
    parts = np.concatenate(
        [m.waveform(WaveformChannel.ECG_II, c) for c in np.array_split(t, [7, 100, 2000, 3333])]
    )
    np.testing.assert_allclose(parts, whole, atol=1e-9)


def test_waveform_synthesis_is_vectorized_per_chunk():
    """A long chunk is computed in one go (no per-sample Python loop): 2 min at 1 kHz."""
    model = PatientModel(SyntheticPatient(PROFILES["adult"], seed=1), seed=1)
    t = np.arange(0, 120, 1 / 1000)
    x = model.waveform(WaveformChannel.ECG_II, t)
    assert x.shape == t.shape
    assert np.isfinite(x).all()


def test_long_runs_keep_bounded_memory_and_the_same_waveform():
    def make(history: int | None) -> PatientModel:
        return PatientModel(SyntheticPatient(PROFILES["adult"], seed=2, history_s=history), seed=2)

    stepped = make(600)
    for k in range(0, 2000, 5):
        stepped.vitals(float(k))
    assert len(stepped._true) <= 1200  # older seconds were dropped
    t = np.arange(1990.0, 1992.0, 1 / 250)
    direct = make(None)
    np.testing.assert_allclose(
        stepped.waveform(WaveformChannel.ECG_II, t),
        direct.waveform(WaveformChannel.ECG_II, t),
        atol=1e-6,
    )
    with pytest.raises(IndexError, match="older"):
        stepped.true_vitals(5)
    patient = SyntheticPatient(PROFILES["adult"], seed=2, history_s=100)
    patient.physiology(1000)
    with pytest.raises(IndexError):
        patient.physiology(3)
