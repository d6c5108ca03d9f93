"""ECG signal quality and pulse presence (models/signal_quality.py) on real recordings, and the
rhythm alarms (edge/rhythm.py) on scripted beat sequences with an injected clock."""

from __future__ import annotations

import numpy as np
import pytest
from _data import shared_data_dir

from edge.rhythm import Beat, RhythmConfig, RhythmMonitor
from firmware_bridge.sim.replay import load_bidmc_signals
from models.signal_quality import EcgQuality, ecg_quality, pulse_present

GOOD = EcgQuality(1.0, True)


def _mitdb_ecg(record: str, seconds: float = 60.0) -> tuple[np.ndarray, float]:
    wfdb = pytest.importorskip("wfdb")
    path = shared_data_dir("mitdb", record)
    rec = wfdb.rdrecord(str(path), sampto=int(seconds * 360))
    return np.asarray(rec.p_signal[:, 0], dtype=np.float64), float(rec.fs)


def test_a_clean_real_ecg_is_usable_and_each_fault_is_named() -> None:
    ecg, fs = _mitdb_ecg("101")
    n = int(4 * fs)
    windows = [ecg[i:i + n] for i in range(0, ecg.size - n, n)]
    assert all(ecg_quality(w, fs).usable for w in windows)
    w = windows[0]
    assert ecg_quality(np.full(n, 0.31), fs).reason == "flat line"
    assert ecg_quality(np.where(np.arange(n) % 2, np.nan, w), fs).usable  # half kept
    assert ecg_quality(np.where(np.arange(n) < 0.6 * n, np.nan, w), fs).reason == "signal lost"
    assert ecg_quality(np.clip(w * 8, -1.0, 1.0), fs).reason == "saturated"
    rng = np.random.default_rng(0)
    noisy = w + rng.normal(0.0, 0.4, n)  # muscle-like broadband noise, 0.4 mV RMS
    assert ecg_quality(noisy, fs).reason == "noise"
    for rate in (125, 250, 500):  # the same clean ECG at the board's other rates
        t = np.arange(0, n / fs, 1 / rate)
        assert ecg_quality(np.interp(t, np.arange(n) / fs, w), rate).usable, rate


def test_a_real_ppg_shows_a_pulse_and_noise_or_a_flat_line_does_not() -> None:
    rec = load_bidmc_signals(shared_data_dir("bidmc", "bidmc_01_Signals.csv"),
                             max_duration_s=60.0)
    assert rec.ppg_au is not None
    fs = rec.fs_hz
    n = int(8 * fs)
    ppg = rec.ppg_au[:n]
    assert pulse_present(ppg, fs)
    assert not pulse_present(np.full(n, 0.5), fs)
    assert not pulse_present(np.random.default_rng(1).normal(size=n), fs)
    assert not pulse_present(ppg[: int(2 * fs)], fs)  # too short to tell


def _beats(start: float, rr: float, n: int, label: str = "N") -> list[Beat]:
    return [Beat(start + i * rr, label) for i in range(n)]


def test_asystole_after_4_s_without_beats_unless_a_pulse_says_otherwise() -> None:
    mon = RhythmMonitor()
    mon.add(_beats(0.0, 0.8, 12))  # last beat at 8.8 s
    assert mon.update(12.0, quality=GOOD) == []
    (d,) = mon.update(12.9, quality=GOOD)
    assert (d.kind, d.priority.label, d.technical) == ("asystole", "high", False)
    (d,) = mon.update(12.9, quality=GOOD, pulse=True)
    assert (d.kind, d.technical) == ("ecg_no_beats", True)
    # A flat or lost signal is not asystole: technical, and every ECG alarm held.
    (d,) = mon.update(20.0, quality=EcgQuality(0.0, False, "flat line"))
    assert (d.kind, d.technical) == ("ecg_unreadable", True)
    assert "flat line" in d.message
    assert mon.update(20.0, quality=GOOD, lead_off=True) == []


@pytest.mark.parametrize(("rr", "kind"), [(60 / 35, "extreme_bradycardia"),
                                         (60 / 165, "extreme_tachycardia"), (0.8, None)])
def test_extreme_rates_from_the_ecg_heart_rate(rr: float, kind: str | None) -> None:
    mon = RhythmMonitor()
    beats = _beats(0.0, rr, 10)
    mon.add(beats)
    found = [d.kind for d in mon.update(beats[-1].time_s + 0.1, quality=GOOD)]
    assert found == ([kind] if kind else [])
    assert mon.heart_rate_bpm == pytest.approx(60 / rr)


def test_ventricular_runs_and_tachycardia() -> None:
    mon = RhythmMonitor()
    mon.add(_beats(0.0, 0.8, 10))
    mon.add([Beat(8.4, "V"), Beat(8.8, "V")])  # a couplet: nothing yet
    assert mon.update(9.0, quality=GOOD) == []
    mon.add([Beat(9.2, "V")])  # three in a row
    (d,) = mon.update(9.3, quality=GOOD)
    assert (d.kind, d.priority.label) == ("ventricular_run", "medium")
    mon.add([Beat(9.6, "V"), Beat(10.0, "V"), Beat(10.4, "V")])  # six at 150 bpm
    (d,) = mon.update(10.5, quality=GOOD)
    assert (d.kind, d.priority.label) == ("ventricular_tachycardia", "high")
    assert d.values["ecg.run_beats"] == 6.0
    mon.add(_beats(11.2, 0.8, 12))
    assert [d.kind for d in mon.update(20.0, quality=GOOD)] == []  # the run is over


def test_irregular_rhythm_from_rr_irregularity_but_not_from_sinus_or_ectopy() -> None:
    rng = np.random.default_rng(3)
    sinus = RhythmMonitor()
    t = np.cumsum(0.8 + rng.normal(0, 0.02, 40))  # sinus: 2.5 % beat-to-beat variation
    sinus.add(Beat(float(x), "N") for x in t)
    assert sinus.update(float(t[-1]) + 0.1, quality=GOOD) == []
    af = RhythmMonitor()
    t = np.cumsum(rng.uniform(0.45, 1.1, 40))  # AF: irregularly irregular
    unclassified = RhythmMonitor()
    unclassified.add(Beat(float(x)) for x in t)  # no beat model: no AF call (rule 5)
    assert unclassified.update(float(t[-1]) + 0.1, quality=GOOD) == []
    af.add(Beat(float(x), "N") for x in t)
    (d,) = af.update(float(t[-1]) + 0.1, quality=GOOD)
    assert d.kind == "irregular_rhythm"
    assert d.values["ecg.rr_irregularity"] >= RhythmConfig().af_irregularity
    # Bigeminy (every other beat premature) is ectopy, not AF: too many ectopic beats.
    big = RhythmMonitor()
    times = np.cumsum(np.tile([0.55, 1.05], 20))
    big.add(Beat(float(x), "S" if i % 2 else "N") for i, x in enumerate(times))
    assert [d.kind for d in big.update(float(times[-1]) + 0.1, quality=GOOD)] == []


def test_beats_are_classified_after_they_arrive_and_runs_wait_for_their_classes() -> None:
    """The edge adds each beat when the QRS detector finds it and labels it about one beat
    later (edge/rhythm.py rule 4): a run is judged up to the newest classified beat."""
    mon = RhythmMonitor()
    samples = list(range(0, 360 * 20, 288))  # 0.8 s apart at 360 Hz
    mon.add(Beat(s / 360, None, s) for s in samples[:12])
    for s in samples[:8]:
        assert mon.label(s, "N")
    assert mon.update(samples[11] / 360 + 0.1, quality=GOOD) == []
    for s in samples[8:11]:  # three V beats classified; the newest beat not yet
        assert mon.label(s, "V")
    (d,) = mon.update(samples[11] / 360 + 0.1, quality=GOOD)
    assert d.kind == "ventricular_run"
    assert d.values["ecg.run_beats"] == 3.0
    assert not mon.label(10**9, "V")  # a beat it does not hold (forgotten or never seen)
    assert mon.per_minute(samples[11] / 360 + 0.1) == (3, 3)


def test_frequent_pvcs_counts_ventricular_beats_of_the_last_minute() -> None:
    mon = RhythmMonitor(RhythmConfig(pvc_per_min=10))
    assert mon.per_minute(0.0) is None  # nothing classified: no beat model
    # Trigeminy at 75 bpm: every third beat V, never three in a row.
    beats = [Beat(i * 0.8, "V" if i % 3 == 2 else "N") for i in range(60)]
    mon.add(beats[:30])  # 10 V beats in 24 s
    kinds = [d.kind for d in mon.update(24.0, quality=GOOD)]
    assert kinds == ["frequent_pvcs"]
    mon.add(beats[30:])
    mon.add(Beat(48.0 + i * 0.8, "N") for i in range(100))
    assert mon.per_minute(128.0) == (0, 0)  # all V beats older than a minute
    assert mon.update(128.0, quality=GOOD) == []
    off = RhythmMonitor(RhythmConfig(pvc_per_min=0))
    off.add(beats[:30])
    assert off.update(24.0, quality=GOOD) == []


def test_paced_beats_are_never_ventricular_and_a_paced_rhythm_is_not_judged_for_af() -> None:
    """Rule 6: a beat with a pace pulse is classed P whatever the beat model said; it breaks
    runs, is no PVC, and a paced window is not called atrial fibrillation."""
    mon = RhythmMonitor(RhythmConfig(pvc_per_min=3))
    assert mon.paced_per_min(0.0) is None  # the board reports no pulses: unknown
    mon.pace_reported = True
    samples = list(range(0, 360 * 30, 288))  # 0.8 s apart at 360 Hz
    mon.add(Beat(s / 360, None, s, paced=i >= 8) for i, s in enumerate(samples))
    for i, s in enumerate(samples):
        assert mon.label(s, "V" if i >= 8 else "N")  # the model calls the wide paced beats V
    now = samples[-1] / 360 + 0.1
    assert mon.update(now, quality=GOOD) == []
    assert mon.per_minute(now) == (0, 0)
    assert mon.paced_per_min(now) == len(samples) - 8
    assert mon.paced_rhythm
    # The same beats without pulses: a ventricular run (75 bpm, not VT) and frequent PVCs.
    unpaced = RhythmMonitor(RhythmConfig(pvc_per_min=3))
    unpaced.add(Beat(s / 360, None, s) for s in samples)
    for i, s in enumerate(samples):
        unpaced.label(s, "V" if i >= 8 else "N")
    kinds = {d.kind for d in unpaced.update(now, quality=GOOD)}
    assert {"ventricular_run", "frequent_pvcs"} <= kinds
    assert not unpaced.paced_rhythm
    # A demand pacemaker firing at irregular times: the intervals it sets are not AF.
    rng = np.random.default_rng(5)
    t = np.cumsum(rng.uniform(0.45, 1.1, 40))
    paced = RhythmMonitor()
    paced.add(Beat(float(x), "N", paced=i % 2 == 0) for i, x in enumerate(t))
    assert paced.irregularity() is None
    assert paced.update(float(t[-1]) + 0.1, quality=GOOD) == []
    sinus = RhythmMonitor()
    sinus.add(Beat(float(x), "N") for x in t)  # control: the same times unpaced are AF
    assert [d.kind for d in sinus.update(float(t[-1]) + 0.1, quality=GOOD)] == [
        "irregular_rhythm"]
