"""Calibration against real numerics, calibrated synthetic cohorts, z-score weak labels.

Tolerances of the "synthetic reproduces real" checks, and why:
- within-patient SD within a factor 1.25: the cohort's pooled variance averages 16 patients
  whose variability factor is log-normal (log SD 0.35, so the factor's square has a CV of about
  0.8): the pooled SD has a CV of about 0.8 / sqrt(16) / 2 = 10 %, plus per-patient estimation
  noise; 1.25 is about 2.5 standard errors. Seeds are fixed, so the test is deterministic.
- tau within a factor 1.6: tau = -60 s / ln(rho) amplifies the error of rho near 1, tau itself
  carries a per-patient log-normal factor (log SD 0.35) and a 4 h record biases the SD of a slow
  drift low; across seeds the ratio stayed within 0.64-1.19 (CV about 20 %), so 1.6 is about
  2.5 standard errors.
- The uncalibrated library profiles must FAIL the same check (their taus are 2-3 minutes where
  the real numerics show 2-10, and their HR band is twice as wide), so the check can fail.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from _data import shared_data_dir

from firmware_bridge.sim.events import Event, EventKind
from firmware_bridge.sim.generator import SyntheticPatient
from firmware_bridge.sim.profiles import PROFILES, get_profile
from firmware_bridge.sim.replay import load_recording
from firmware_bridge.sim.vitals import Vital
from training.calibration import (
    MAX_TAU_S,
    MIN_TAU_S,
    CalibrationResult,
    calibrate,
    native_samples,
    plot_calibration,
    tau_from_rho,
)
from training.datasets import PatientVitals, discover, load_vitals, split_by_patient
from training.labels import (
    compare_labels,
    evaluate_zscore,
    tune_zscore_threshold,
    zscore,
    zscore_labels,
    zscore_labels_per_vital,
)
from training.synth import (
    PROFILE_WEIGHTS,
    SynthPatient,
    _measure,
    _physiology,
    random_profile,
    synth_cohort,
    synth_patient,
)

SD_FACTOR = 1.25
TAU_FACTOR = 1.6
CHECKED = (Vital.HR, Vital.SPO2, Vital.RR, Vital.SBP, Vital.DBP)


@pytest.fixture(scope="module")
def fixture_real() -> list[PatientVitals]:
    rec = load_recording("fixture:mimic3-numerics")
    return [PatientVitals("mimic3:s00001", rec.name, rec.vitals, 60.0)]


@pytest.fixture(scope="module")
def fixture_calib(fixture_real: list[PatientVitals]) -> CalibrationResult:
    return calibrate(fixture_real)


def _mismatches(real: CalibrationResult, syn: CalibrationResult) -> list[str]:
    """Vitals where the synthetic cohort misses the real SD or tau by more than the factors."""
    bad = []
    for v in CHECKED:
        r, s = real[v], syn[v]
        if not r.calibrated:
            continue
        ratio = s.within_sd / r.within_sd
        if not 1 / SD_FACTOR <= ratio <= SD_FACTOR:
            bad.append(f"{v.name} SD x{ratio:.2f}")
        if r.tau_resolved:
            ratio = s.tau_s / r.tau_s
            if not 1 / TAU_FACTOR <= ratio <= TAU_FACTOR:
                bad.append(f"{v.name} tau x{ratio:.2f}")
    return bad


# ------------------------------------------------------------------------------- calibration


def test_calibration_uses_native_rate_on_the_fixture(fixture_calib: CalibrationResult) -> None:
    c = fixture_calib
    assert c.sample_period_s == 60.0
    assert c.patients == ("mimic3:s00001",)
    hr = c[Vital.HR]
    assert hr.n_samples == 120  # 2 h of one-a-minute readings, not 7200 held seconds
    assert 45 < hr.median < 70
    assert hr.p5 <= hr.p25 <= hr.median <= hr.p75 <= hr.p95
    assert 0.5 < hr.within_sd < 10
    assert 0 < hr.rho < 1
    assert hr.tau_resolved
    assert math.isclose(hr.tau_s, -60.0 / math.log(hr.rho))
    assert hr.missing_fraction == 0.0
    # Cuff pressure, held between readings every 10 min: recognised, tau not claimed.
    sbp = c[Vital.SBP]
    assert sbp.intermittent
    assert sbp.reading_interval_s == pytest.approx(600.0)
    assert not sbp.tau_resolved
    assert 0 < sbp.missing_fraction < 0.1
    # No temperature in MIMIC numerics: nothing is invented.
    assert not c[Vital.TEMP].calibrated
    assert c[Vital.TEMP].n_samples == 0


def test_held_copies_are_never_counted_as_readings(fixture_real: list[PatientVitals]) -> None:
    rec = fixture_real[0]
    assert native_samples(rec).shape[0] == rec.vitals.shape[0] // 60
    with pytest.raises(ValueError, match="held copies"):
        native_samples(rec, 1.0)
    # Pretending the held rows were readings makes the classical autocorrelation look like a
    # drift 60x slower; the repeat detector notices the hold and falls back to the distinct
    # readings one minute apart.
    fake = PatientVitals(rec.patient, rec.name, rec.vitals, 1.0)
    wrong = calibrate([fake], sample_period_s=1.0)[Vital.HR]
    right = calibrate([rec])[Vital.HR]
    assert wrong.rho_classic > 0.99 > right.rho_classic
    assert wrong.intermittent
    assert wrong.reading_interval_s == 60.0
    assert not right.intermittent


def test_tau_guards() -> None:
    assert tau_from_rho(0.0, 60.0) == MIN_TAU_S
    assert tau_from_rho(-0.3, 60.0) == MIN_TAU_S
    assert tau_from_rho(1.0, 60.0) == MAX_TAU_S
    assert math.isnan(tau_from_rho(math.nan, 60.0))
    assert tau_from_rho(math.exp(-1.0), 60.0) == pytest.approx(60.0)


def test_calibration_on_the_shared_mimic_numerics() -> None:
    root = shared_data_dir("physionet-samples")
    recs = [r for r in discover(root) if r.kind == "numerics"]
    c = calibrate(load_vitals(recs))
    assert c.patients == ("mimic3:s00001", "mimic3:s25047")
    assert c.duration_s["mimic3:s00001"] > 30 * 3600
    assert set(c.per_patient) == set(c.patients)
    for v in (Vital.HR, Vital.SPO2, Vital.RR):
        st = c[v]
        assert st.n_patients == 2
        assert st.tau_resolved
        assert 60.0 < st.tau_s < 3600.0
        assert 0 < st.missing_fraction < 0.5
        # Robust SD ignores the gross artefacts the classical SD is inflated by.
        assert st.within_sd < st.within_sd_classic
    assert c[Vital.SBP].intermittent


def test_json_round_trip(fixture_calib: CalibrationResult, tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    text = fixture_calib.to_json(path)
    json.loads(text)  # strict JSON: NaN written as null
    assert "NaN" not in text
    back = CalibrationResult.from_json(path)
    assert back.to_dict() == fixture_calib.to_dict()
    assert CalibrationResult.from_json(text).to_dict() == fixture_calib.to_dict()
    assert math.isnan(back[Vital.TEMP].within_sd)
    assert back[Vital.SBP].intermittent


# ---------------------------------------------------------------------------------- synthesis


@pytest.mark.parametrize("name", ["adult", "septic"])
def test_vectorized_generation_agrees_with_the_simulator(name: str) -> None:
    sp = SyntheticPatient(get_profile(name), seed=11)
    fast = _physiology(sp, 900)
    np.testing.assert_allclose(
        fast, SyntheticPatient(get_profile(name), 11).physiology_block(900), rtol=0, atol=1e-9
    )
    slow = SyntheticPatient(get_profile(name), seed=11).readings(900)
    np.testing.assert_allclose(_measure(sp, fast), slow, rtol=0, atol=1e-9)


def test_calibrated_cohort_reproduces_real_sd_and_tau_and_uncalibrated_does_not(
    fixture_calib: CalibrationResult,
) -> None:
    cohort = synth_cohort(16, 4.0, fixture_calib, seed=0, event_free_fraction=1.0)
    syn = calibrate(cohort, sample_period_s=60.0)
    assert _mismatches(fixture_calib, syn) == []
    # Same check, library profiles as they are: must fail.
    rng = np.random.default_rng(0)
    names = list(PROFILE_WEIGHTS)
    p = np.array([PROFILE_WEIGHTS[n] for n in names])
    raw = [
        synth_patient(
            PROFILES[names[rng.choice(len(names), p=p)]], 4 * 3600, seed=i, patient=f"raw:{i}"
        )
        for i in range(16)
    ]
    bad = _mismatches(fixture_calib, calibrate(raw, sample_period_s=60.0))
    assert any("tau" in b for b in bad), bad


def test_calibrated_cohort_reproduces_the_shared_numerics() -> None:
    root = shared_data_dir("physionet-samples")
    real = calibrate(load_vitals([r for r in discover(root) if r.kind == "numerics"]))
    cohort = synth_cohort(24, 8.0, real, seed=1, event_free_fraction=1.0)
    syn = calibrate(cohort, sample_period_s=60.0)
    assert _mismatches(real, syn) == []
    # Gaps follow the real missingness (fraction within a factor 1.5: jittered per patient).
    for v in (Vital.SPO2, Vital.SBP):
        assert 1 / 1.5 < syn[v].missing_fraction / real[v].missing_fraction < 1.5


def test_random_profile_keeps_the_library_centre(fixture_calib: CalibrationResult) -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        prof = random_profile(rng, fixture_calib)
        base = PROFILES[prof.name.removesuffix("-calibrated")]
        assert abs(prof.hr.mean - base.hr.mean) <= base.hr.drift_sd + 1e-9
        assert prof.temp == base.temp or abs(prof.temp.mean - base.temp.mean) <= base.temp.drift_sd
        assert prof.rr.tau_s != base.rr.tau_s  # calibrated, not the library's
        assert prof.sbp.tau_s == base.sbp.tau_s  # cuff pressure: tau not resolvable


def test_cohort_is_fast_deterministic_labelled_and_split_by_patient(
    fixture_calib: CalibrationResult,
) -> None:
    t0 = time.perf_counter()
    cohort = synth_cohort(40, 6.0, fixture_calib, seed=5)
    assert time.perf_counter() - t0 < 15.0  # about 1 s here
    assert len({p.patient for p in cohort}) == 40
    assert sum(1 for p in cohort if not p.events) == 10  # event_free_fraction 0.25
    for p in cohort:
        assert p.vitals.shape == (6 * 3600, 7)
        for ev in p.events:
            assert p.labels[ev.kind][int(ev.onset_s)]
            assert not p.labels[ev.kind][int(ev.onset_s) - 1] if ev.onset_s >= 1 else True
        assert p.truth.sum() == sum(int(np.ceil(ev.end_s) - np.ceil(ev.onset_s)) for ev in p.events)
    again = synth_cohort(40, 6.0, fixture_calib, seed=5)
    assert all(
        np.array_equal(a.vitals, b.vitals, equal_nan=True)
        for a, b in zip(cohort, again, strict=True)
    )
    train, test = split_by_patient([p.patient for p in cohort], [0.5, 0.5], seed=0)
    assert not set(train) & set(test)


# ------------------------------------------------------------------------------------- labels


def _noisy(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([75.0, 97.0, 15.0, 120.0, 78.0, 92.0, 36.9])
    return base + rng.normal(0, 1, (n, 7)) * np.array([3, 1, 2, 5, 4, 4, 0.1])


def test_zscore_labels_are_causal() -> None:
    v = _noisy(3000, 0)
    cut = 1700
    changed = v.copy()
    changed[cut:] += 40.0  # a wild future
    changed[cut + 100 :, 1] = np.nan
    for fn in (zscore_labels, zscore_labels_per_vital):
        a = fn(v, baseline_s=600, threshold=3.0)
        b = fn(changed, baseline_s=600, threshold=3.0)
        np.testing.assert_array_equal(a[:cut], b[:cut])
    za = zscore(v, baseline_s=600)
    zb = zscore(changed, baseline_s=600)
    np.testing.assert_array_equal(za[:cut], zb[:cut])
    assert zscore_labels(changed, baseline_s=600, threshold=3.0)[cut]  # and the step is seen
    # Warm-up: no baseline, no label.
    assert not zscore_labels(v, baseline_s=600, threshold=0.1)[:300].any()


def test_zscore_recovers_injected_events_better_than_chance(
    fixture_calib: CalibrationResult,
) -> None:
    cohort = synth_cohort(
        16, 3.0, fixture_calib, seed=2, event_free_fraction=0.2, events_per_hour=1.0
    )
    by_id = {p.patient: p for p in cohort}
    train, test = split_by_patient(list(by_id), [0.5, 0.5], seed=0)
    ev = evaluate_zscore([by_id[i] for i in train], [by_id[i] for i in test], baseline_s=1800)
    anyk = ev.agreement["any"]
    assert anyk.precision > 2 * anyk.prevalence  # random flags would get the prevalence
    assert anyk.recall > 2 * anyk.flag_rate  # random flags would catch the flag rate
    assert anyk.event_recall >= 0.7
    assert 2.0 <= ev.tuning.threshold <= 10.0


def test_threshold_tuning_sees_only_training_patients(fixture_calib: CalibrationResult) -> None:
    cohort = synth_cohort(
        8, 2.0, fixture_calib, seed=4, event_free_fraction=0.0, events_per_hour=1.5
    )
    train, test = cohort[:4], cohort[4:]
    spoiled = [
        SynthPatient(
            p.patient,
            p.name,
            np.full_like(p.vitals, 500.0),
            p.profile,
            p.events,
            {k: ~v for k, v in p.labels.items()},
        )
        for p in test
    ]
    a = evaluate_zscore(train, test, baseline_s=900)
    b = evaluate_zscore(train, spoiled, baseline_s=900)
    assert a.tuning == b.tuning
    assert a.agreement != b.agreement
    with pytest.raises(ValueError, match="both train and test"):
        evaluate_zscore(train, [train[0], *test], baseline_s=900)


def test_tuning_rule_is_max_f1_ties_to_higher_threshold() -> None:
    v = np.tile([75.0, 97.0, 15.0, 120.0, 78.0, 92.0, 36.9], (1200, 1))
    v[:, 0] += np.random.default_rng(0).normal(0, 0.2, 1200)
    v[900:960, 0] += 30.0  # 15 sigma of the 2 bpm floor
    truth = np.zeros(1200, dtype=np.bool_)
    truth[900:960] = True
    t = tune_zscore_threshold([v], [truth], baseline_s=600, thresholds=[2.0, 5.0, 10.0, 20.0])
    assert t.f1 == 1.0
    assert t.threshold == 10.0  # 2, 5 and 10 all give F1 = 1: the highest wins
    assert t.f1_per_threshold[-1] == 0.0


def test_compare_labels_per_kind() -> None:
    n = 600
    labels = {k: np.zeros(n, dtype=np.bool_) for k in EventKind}
    labels[EventKind.DESATURATION][100:200] = True
    labels[EventKind.TACHYCARDIA][300:400] = True
    weak = np.zeros((n, 7), dtype=np.bool_)
    weak[150:250, Vital.SPO2] = True  # half of the desaturation, plus 50 s after it
    weak[500:510, Vital.HR] = True  # a flag outside any event
    out = compare_labels([weak], [labels])
    d = out["desaturation"]
    assert d.recall == pytest.approx(0.5)
    assert d.precision == pytest.approx(0.5)
    assert d.event_recall == 1.0
    assert d.median_latency_s == 50.0
    t = out["tachycardia"]
    assert t.recall == 0.0
    assert t.event_recall == 0.0
    assert set(out) == {"any", "desaturation", "tachycardia"}
    assert out["any"].prevalence == pytest.approx(200 / n)


# --------------------------------------------------------------------------------------- plot


def test_plot_is_written(
    fixture_real: list[PatientVitals], fixture_calib: CalibrationResult, tmp_path: Path
) -> None:
    cohort = synth_cohort(4, 2.0, fixture_calib, seed=0)
    path = plot_calibration(fixture_real, cohort, tmp_path / "calib.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000


def test_events_act_on_physiology_before_measurement(fixture_calib: CalibrationResult) -> None:
    prof = random_profile(np.random.default_rng(0), fixture_calib)
    ev = Event(EventKind.DESATURATION, 600.0, 300.0, 30.0, 12.0)
    with_ev = synth_patient(prof, 1800, seed=3, events=[ev])
    without = synth_patient(prof, 1800, seed=3)
    d = without.vitals[:, Vital.SPO2] - with_ev.vitals[:, Vital.SPO2]
    assert np.nanmax(np.abs(d[:600])) < 1e-9
    assert np.nanmedian(d[700:850]) > 5.0  # most of 12 points (clipped at 0 % never)
    assert with_ev.labels[EventKind.DESATURATION][600:960].all()


def test_cohort_recording_regimes(fixture_calib: CalibrationResult) -> None:
    """Beds without a temperature probe and beds feeding held minute numerics, as asked."""
    base = synth_cohort(20, 1.0, fixture_calib, seed=3)
    mixed = synth_cohort(20, 1.0, fixture_calib, seed=3, no_temp_fraction=0.25,
                         held_fraction=0.5, held_period_s=60)
    no_temp = {p.patient for p in mixed if np.isnan(p.vitals[:, Vital.TEMP]).all()}
    held = {p.patient for p in mixed if p.native_period_s == 60.0}
    assert len(no_temp) == 5
    assert len(held) == 10
    assert not any(np.isnan(p.vitals[:, Vital.TEMP]).all() for p in base)
    for p, q in zip(base, mixed, strict=True):
        # Physiology, events and labels do not move when the regimes are drawn.
        assert p.events == q.events
        assert p.profile == q.profile
        assert np.array_equal(p.truth, q.truth)
        if q.patient in held:
            minute = q.vitals.reshape(60, 60, -1)
            assert np.array_equal(minute, np.broadcast_to(minute[:, :1], minute.shape),
                                  equal_nan=True)
            want = p.vitals[::60]
            if q.patient in no_temp:
                want = want.copy()
                want[:, Vital.TEMP] = np.nan
            assert np.array_equal(q.vitals[::60], want, equal_nan=True)
    with pytest.raises(ValueError, match="held_fraction"):
        synth_cohort(2, 1.0, fixture_calib, seed=3, held_fraction=1.5)
    with pytest.raises(ValueError, match="held_period_s"):
        synth_patient(base[0].profile, 60, seed=1, held_period_s=0)
