"""The QRS scorer (training/qrs_score.py) agrees with wfdb.processing.compare_annotations."""

from __future__ import annotations

import numpy as np
import pytest
from _data import shared_data_dir

from models.qrs import detect
from training.qrs_score import (
    BEAT_SYMBOLS,
    Score,
    gross,
    load_ecg_record,
    match_beats,
    score_record,
)

wfdb_processing = pytest.importorskip("wfdb.processing")


def _wfdb_counts(ref: np.ndarray, test: np.ndarray, window: int) -> tuple[int, int, int]:
    c = wfdb_processing.compare_annotations(ref, test, window)
    return int(c.tp), int(c.fn), int(c.fp)


@pytest.mark.parametrize("name", ["208", "207"])
def test_matches_wfdb_on_a_real_record_with_real_detections(name: str) -> None:
    rec = load_ecg_record(shared_data_dir("mitdb", name))
    det = detect(rec.signal_mv, rec.fs_hz)
    # Also a degraded detector: drop every 9th beat, shift some, add spurious ones.
    rng = np.random.default_rng(int(name))
    worse = np.delete(det, np.arange(0, det.size, 9))
    worse = worse + rng.integers(-60, 60, worse.size) * (rng.random(worse.size) < 0.2)
    worse = np.unique(np.concatenate((worse, rng.integers(0, rec.signal_mv.size, 300))))
    window = int(0.150 * rec.fs_hz)
    for test in (det, worse):
        s = score_record(name, rec.beats, test, rec.fs_hz)
        assert (s.tp, s.fn, s.fp) == _wfdb_counts(rec.beats, test, window)
    assert score_record(name, rec.beats, worse, rec.fs_hz).fn > 100  # the test can fail


def test_matches_wfdb_on_random_close_annotations() -> None:
    """Contested detections (two references competing for one) exercise the tie rule."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        ref = np.cumsum(rng.integers(30, 120, rng.integers(1, 40)))
        test = np.unique(rng.integers(0, int(ref[-1]) + 60, rng.integers(1, 50)))
        window = int(rng.integers(5, 60))
        got = match_beats(ref, test, window)
        tp = int(np.count_nonzero(got >= 0))
        assert (tp, ref.size - tp, test.size - tp) == _wfdb_counts(ref, test, window)
        used = got[got >= 0]
        assert np.unique(used).size == used.size  # one to one
        assert np.all(np.abs(ref[got >= 0] - test[used]) < window)


def test_counts_and_rates() -> None:
    s = score_record("x", [100, 500, 900], [102, 480, 700, 1300], 360.0)
    assert (s.tp, s.fn, s.fp) == (2, 1, 2)
    assert s.se == pytest.approx(200 / 3)
    assert s.ppv == pytest.approx(50.0)
    g = gross([s, Score("y", 98, 0, 0)])
    assert (g.tp, g.fn, g.fp) == (100, 1, 2)
    assert np.isnan(Score("z", 0, 0, 0).se)
    with pytest.raises(ValueError, match="ascending"):
        match_beats([5, 1], [1], 3)


def test_loader_takes_beat_symbols_and_the_named_lead() -> None:
    rec = load_ecg_record(shared_data_dir("physionet-samples", "100"))
    assert rec.lead == "MLII"
    assert rec.fs_hz == 360.0
    assert rec.beats.size == 2239 + 33 + 1  # N, A, V per the data README; no '+' rhythm mark
    assert 0.3 < float(np.ptp(rec.signal_mv[:3600])) < 5.0  # mV, not ADC units
    paced = load_ecg_record(shared_data_dir("mitdb", "102"))
    assert paced.lead == "V5"  # no MLII in 102: lead 0 from the header
    assert "/" in BEAT_SYMBOLS
    assert not {"+", "!", "~"} & BEAT_SYMBOLS


def test_ec57_leaves_ventricular_flutter_out_of_the_score() -> None:
    """Record 207's (VFL episodes (six, 2.4 min): reference beats and detections inside them
    are not scored; everything outside is, exactly as without the exclusion."""
    rec = load_ecg_record(shared_data_dir("mitdb", "207"))
    assert rec.vf_episodes.shape == (6, 2)
    assert 140 < np.sum(rec.vf_episodes[:, 1] - rec.vf_episodes[:, 0]) / rec.fs_hz < 150
    start, end = (int(v) for v in rec.vf_episodes[0])
    flutter_fp = np.arange(start + 50, end - 50, 40)  # "detections" on flutter waves
    detected = np.sort(np.concatenate([rec.beats, flutter_fp]))
    plain = score_record("207", rec.beats, detected, rec.fs_hz)
    ec57 = score_record("207", rec.beats, detected, rec.fs_hz, exclude=rec.vf_episodes)
    inside = sum(int(np.sum((rec.beats >= a) & (rec.beats < b))) for a, b in rec.vf_episodes)
    assert plain.fp >= flutter_fp.size - inside
    assert ec57.fp == 0
    assert ec57.fn == 0
    assert ec57.tp == rec.beats.size - inside
    assert load_ecg_record(shared_data_dir("mitdb", "101")).vf_episodes.shape == (0, 2)
