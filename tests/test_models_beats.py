"""Beat windows, RR features and AAMI classes (models.beats): batch and edge streaming agree."""

from __future__ import annotations

import numpy as np
import pytest

from models.beats import (
    AAMI_CLASSES,
    AAMI_OF_SYMBOL,
    BEAT_SYMBOLS,
    CONTEXT_FEATURE_NAMES,
    NOT_A_BEAT,
    RR_FEATURE_NAMES,
    BeatSpec,
    BeatStream,
    RRFeatureStream,
    aami_codes,
    beat_features,
    rr_features,
    segment_beats,
)

SPEC = BeatSpec()


def ecg_like(t: np.ndarray, r_times: np.ndarray) -> np.ndarray:
    """A smooth synthetic ECG: P, QRS and T Gaussians around each R time (mV-ish)."""
    x = np.zeros_like(t)
    for r in r_times:
        x += 0.15 * np.exp(-0.5 * ((t - r + 0.18) / 0.025) ** 2)  # P
        x += 1.2 * np.exp(-0.5 * ((t - r) / 0.012) ** 2)  # R
        x -= 0.25 * np.exp(-0.5 * ((t - r - 0.03) / 0.01) ** 2)  # S
        x += 0.3 * np.exp(-0.5 * ((t - r - 0.28) / 0.05) ** 2)  # T
    return x


def test_aami_table_is_ec57() -> None:
    expected = {
        "N": "NLRej",
        "S": "AaJS",
        "V": "VE",
        "F": "F",
        "Q": "/fQ",
    }
    assert AAMI_CLASSES == ("N", "S", "V", "F", "Q")
    for cls, symbols in expected.items():
        for sym in symbols:
            assert AAMI_OF_SYMBOL[sym] == cls
    # The four WFDB beat codes MIT-BIH does not use, classed like the usual EC57 extensions.
    assert {k: AAMI_OF_SYMBOL[k] for k in "Bnr?"} == {"B": "N", "n": "S", "r": "V", "?": "Q"}
    assert frozenset("".join(expected.values()) + "Bnr?") == BEAT_SYMBOLS
    codes = aami_codes(["N", "L", "A", "V", "E", "F", "/", "f", "Q", "+", "~", "|", "!", "x"])
    assert codes.tolist() == [0, 0, 1, 2, 2, 3, 4, 4, 4] + [NOT_A_BEAT] * 5


@pytest.mark.parametrize("fs", [125.0, 250.0, 360.0, 500.0, 1000.0])
def test_segmentation_gives_the_same_length_and_shape_at_any_rate(fs: float) -> None:
    r_times = np.array([1.0, 2.0, 3.0])
    ref_fs = 4000.0
    t_ref = np.arange(int(4 * ref_fs)) / ref_fs
    ref, _ = segment_beats(ecg_like(t_ref, r_times), (r_times * ref_fs).astype(int), ref_fs)
    t = np.arange(int(4 * fs)) / fs
    win, complete = segment_beats(ecg_like(t, r_times), np.round(r_times * fs).astype(int), fs)
    assert win.shape == (3, SPEC.n_points)
    assert complete.all()
    # The peak sits at the same point, 0.25 s into the 0.65 s window.
    r_point = round(0.25 / 0.65 * (SPEC.n_points - 1))
    assert np.all(np.abs(np.argmax(win, axis=1) - r_point) <= 1)
    for w, r in zip(win, ref, strict=True):
        assert np.corrcoef(w, r)[0, 1] > 0.99
        assert np.max(np.abs(w - r)) < (0.6 if fs < 200 else 0.25)


def test_windows_are_baseline_removed_unit_rms_and_gain_invariant() -> None:
    fs = 360.0
    t = np.arange(int(5 * fs)) / fs
    r = np.array([360, 720, 1080, 1440])
    x = ecg_like(t, r / fs)
    win, _ = segment_beats(x, r, fs)
    np.testing.assert_allclose(np.median(win, axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.mean(win**2, axis=1)), 1.0)
    scaled, _ = segment_beats(200.0 * x + 1024.0, r, fs)  # ADC units, offset baseline
    np.testing.assert_allclose(scaled, win, atol=1e-9)
    flat, _ = segment_beats(np.full(2000, 3.0), r, fs)
    assert np.all(flat == 0.0)


def test_windows_cut_by_the_signal_ends_are_flagged() -> None:
    fs = 250.0
    x = np.sin(np.arange(1000) / 10.0)
    _, complete = segment_beats(x, [10, 62, 63, 500, 898, 899], fs)
    # 0.25 s before = 62.5 samples: R=62 needs sample -1. 0.4 s after = 100 samples, plus
    # the one after it that the interpolation reads: R=899 needs sample 1000.
    assert complete.tolist() == [False, False, True, True, True, False]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="125"):
        segment_beats(np.zeros(100), [50], 100.0)
    with pytest.raises(ValueError, match="increasing"):
        rr_features([10, 10, 20], 360.0)
    with pytest.raises(ValueError, match="integer"):
        rr_features(np.array([1.5, 2.5, 3.5]), 360.0)
    stream = RRFeatureStream(360.0)
    stream.push(100)
    with pytest.raises(ValueError, match="increasing"):
        stream.push(100)


def test_rr_features_of_a_regular_rhythm_with_one_premature_beat() -> None:
    fs = 360.0
    rr = np.full(30, 288)  # 0.8 s
    rr[19] = 180  # beat 20 comes 0.5 s after beat 19 ...
    rr[20] = 2 * 288 - 180  # ... followed by a full compensatory pause (1.1 s)
    r = np.concatenate([[1000], 1000 + np.cumsum(rr)])
    f = rr_features(r, fs)
    assert f.shape == (31, len(RR_FEATURE_NAMES))
    assert np.all(np.isnan(f[0]))
    assert np.all(np.isnan(f[-1]))
    assert np.all(np.isfinite(f[1:-1]))
    col = {name: f[:, i] for i, name in enumerate(RR_FEATURE_NAMES)}
    # A regular beat with a full window: everything is the steady rhythm.
    np.testing.assert_allclose(f[18], [0.8, 0.8, 0.8, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0], atol=1e-12)
    # The premature beat.
    window = np.array([0.8] * 15 + [0.5])
    assert col["pre_rr_s"][20] == pytest.approx(0.5)
    assert col["post_rr_s"][20] == pytest.approx(1.1)
    assert col["local_rr_s"][20] == pytest.approx(window.mean())
    assert col["pre_ratio"][20] == pytest.approx(0.5 / window.mean())
    assert col["post_pre_ratio"][20] == pytest.approx(2.2)
    assert col["local_rr_std_s"][20] == pytest.approx(window.std())
    # The long-run mean holds all 20 intervals so far (fewer than rr_long_beats).
    long_mean = np.array([0.8] * 19 + [0.5]).mean()
    assert col["pre_ratio_long"][20] == pytest.approx(0.5 / long_mean)
    assert col["post_ratio_long"][20] == pytest.approx(1.1 / long_mean)
    assert col["local_ratio_long"][20] == pytest.approx(window.mean() / long_mean)
    # The beat after it: long pre interval, back to normal after.
    window_next = np.array([0.8] * 14 + [0.5, 1.1])
    assert col["pre_ratio"][21] == pytest.approx(1.1 / window_next.mean())
    assert col["post_pre_ratio"][21] == pytest.approx(0.8 / 1.1)
    # Early in the stream the window holds what there is: beat 3 averages 3 intervals.
    assert col["local_rr_s"][3] == pytest.approx(0.8)
    assert col["pre_ratio"][20] < 0.7 < col["pre_ratio"][19]


def _random_beats(seed: int, fs: float, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rr = rng.uniform(0.3, 1.5, size=int(seconds / 0.3))
    r_times = 0.1 + np.cumsum(rr)
    r_times = r_times[r_times < seconds - 0.05]
    t = np.arange(int(seconds * fs)) / fs
    x = ecg_like(t, r_times) + 0.05 * rng.normal(size=t.size) + 0.3 * np.sin(t)
    return x, np.round(r_times * fs).astype(np.int64)


def _stream_rows(stream: BeatStream, x: np.ndarray, r: np.ndarray, x2: np.ndarray | None,
                 seed: int) -> list:
    """Feed ``stream`` in random chunks (second lead alongside), R peaks reported late (as
    the QRS detector reports them)."""
    rng = np.random.default_rng(seed)
    fs = stream.fs
    out: list = []
    pos, next_r = 0, 0
    delay = int(rng.integers(0, int(0.2 * fs)))
    while pos < x.size:
        end = min(x.size, pos + int(rng.integers(1, int(0.7 * fs))))
        peaks = []
        while next_r < r.size and r[next_r] + delay < end:
            peaks.append(int(r[next_r]))
            next_r += 1
        out += stream.push(x[pos:end], peaks, None if x2 is None else x2[pos:end])
        pos = end
    return out


@pytest.mark.parametrize(("seed", "fs"), [(0, 360.0), (1, 125.0), (2, 250.0), (3, 500.0)])
def test_streaming_equals_batch_bit_for_bit(seed: int, fs: float) -> None:
    x, r = _random_beats(seed, fs, 60.0)
    batch, usable = beat_features(x, r, fs)
    stream = BeatStream(fs)
    out = _stream_rows(stream, x, r, None, seed + 100)
    # Every beat but the first (no previous RR) and the last (no next RR) comes out.
    assert [b.r_sample for b in out] == r[1:-1].tolist()
    for b in out:
        i = int(np.searchsorted(r, b.r_sample))
        assert np.array_equal(b.features, batch[i], equal_nan=True)
        assert usable[i] == (b.complete and bool(np.all(np.isfinite(b.features))))
    # Only what is still needed is kept: under two beat windows' worth plus a chunk.
    assert stream._buf.size < 3 * fs


def test_rr_stream_equals_batch() -> None:
    rng = np.random.default_rng(5)
    r = np.cumsum(rng.integers(50, 700, size=500)).astype(np.int64)
    batch = rr_features(r, 360.0)
    stream = RRFeatureStream(360.0)
    got = [stream.push(int(v)) for v in r]
    assert got[0] is None  # beat 0 never has features
    assert got[1] is None
    for i in range(2, r.size):
        done = got[i]
        assert done is not None
        assert done[0] == r[i - 1]
        assert np.array_equal(done[1], batch[i - 1])


def test_a_beat_comes_out_one_beat_later_and_only_with_its_whole_window() -> None:
    fs = 360.0
    x = np.sin(np.arange(3000) / 7.0)
    stream = BeatStream(fs)
    assert SPEC.after_samples(fs) == 145  # 0.4 s = 144 samples, plus one to interpolate
    assert stream.push(x[:1001], [1000]) == []
    assert stream.push(x[1001:1201], [1200]) == []  # the first beat never comes out
    # Beat 1200's RR is final when R 1300 arrives, but its window needs samples to 1345.
    assert stream.push(x[1201:1301], [1300]) == []
    assert stream.push(x[1301:1345]) == []
    (beat,) = stream.push(x[1345:1346])
    assert beat.r_sample == 1200
    assert beat.complete
    batch, _ = beat_features(x[:1346], [1000, 1200, 1300, 1345], fs)
    assert np.array_equal(beat.features, batch[1], equal_nan=True)


def test_long_rr_mean_covers_rr_long_beats_intervals() -> None:
    spec = BeatSpec(rr_window_beats=4, rr_long_beats=10)
    rr = np.concatenate([np.full(20, 100), np.full(20, 200)])
    r = np.concatenate([[0], np.cumsum(rr)])
    f = rr_features(r, 100.0, spec)
    col = {name: f[:, i] for i, name in enumerate(RR_FEATURE_NAMES)}
    # Beat 25: the last 10 intervals are 5 x 100 then 5 x 200 samples; the last 4 are 200.
    assert col["pre_ratio_long"][25] == pytest.approx(200 / 150)
    assert col["local_ratio_long"][25] == pytest.approx(200 / 150)
    assert col["pre_ratio_long"][35] == pytest.approx(1.0)


def test_deviation_is_the_window_minus_the_running_template() -> None:
    fs = 360.0
    x, r = _random_beats(7, fs, 30.0)
    spec = BeatSpec(template_alpha=0.25)
    rows, _ = beat_features(x, r, fs, spec)
    win, dev = rows[:, spec.window_columns], rows[:, spec.deviation_columns]
    assert np.all(np.isnan(dev[0]))  # the stream's first beat takes no part (rule 5)
    assert np.all(dev[1] == 0.0)  # the template starts as beat 1's window
    template = win[1].copy()
    for i in range(2, len(rows)):
        template += 0.25 * (win[i - 1] - template)
        np.testing.assert_allclose(dev[i], win[i] - template, atol=1e-12)
    assert rows.shape[1] == spec.n_features == (
        2 * spec.n_points + len(RR_FEATURE_NAMES) + len(CONTEXT_FEATURE_NAMES)
    )
    np.testing.assert_array_equal(rows[:, spec.rr_columns], rr_features(r, fs, spec))


def test_a_ventricular_looking_beat_stands_out_from_the_template() -> None:
    fs = 360.0
    t = np.arange(int(20 * fs)) / fs
    r_times = np.arange(0.5, 19.5, 0.8)
    x = ecg_like(t, r_times)
    odd = 15  # one wide, inverted beat
    near = np.abs(t - r_times[odd]) < 0.2
    x[near] = -0.8 * np.exp(-0.5 * ((t[near] - r_times[odd]) / 0.05) ** 2)
    rows, _ = beat_features(x, np.round(r_times * fs).astype(np.int64), fs)
    rms = np.sqrt(np.mean(rows[2:, SPEC.deviation_columns] ** 2, axis=1))
    assert np.argmax(rms) == odd - 2
    assert rms[odd - 2] > 1.0
    assert np.median(rms) < 0.01


def test_spec_round_trips_and_refuses_another_version() -> None:
    spec = BeatSpec(rr_long_beats=100, template_alpha=0.1)
    assert BeatSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="version"):
        BeatSpec.from_dict({**spec.to_dict(), "version": 1})
    with pytest.raises(ValueError, match="template_alpha"):
        BeatSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "template_alpha"})
    with pytest.raises(ValueError, match="template_alpha"):
        BeatSpec(template_alpha=0.0)


@pytest.mark.parametrize(("seed", "fs"), [(4, 360.0), (5, 250.0)])
def test_a_second_lead_adds_its_block_identically_in_batch_and_stream(seed: int,
                                                                     fs: float) -> None:
    """Rule 9: the chest lead's window, deviation and context after the first lead's row;
    stream equals batch bit for bit, lost samples make a NaN block that leaves the lead's
    template alone, and without the lead the first lead's row is that of a one-lead spec."""
    spec = BeatSpec(leads=2)
    x, r = _random_beats(seed, fs, 60.0)
    t = np.arange(x.size) / fs
    x2 = -0.6 * x + 0.1 * np.cos(2 * t)  # another projection of the same heart
    gap = (t > 20.0) & (t < 22.0)
    x2[gap] = np.nan  # the chest lead loses 2 s
    block = spec.second_lead_columns
    assert block is not None
    assert spec.n_features == SPEC.n_features + 2 * spec.n_points + len(CONTEXT_FEATURE_NAMES)
    batch, usable = beat_features(x, r, fs, spec, second=x2)
    one, one_usable = beat_features(x, r, fs)
    assert np.array_equal(batch[:, spec.primary_columns], one, equal_nan=True)
    assert np.array_equal(usable, one_usable)
    out = _stream_rows(BeatStream(fs, spec), x, r, x2, seed + 100)
    assert [b.r_sample for b in out] == r[1:-1].tolist()
    for b in out:
        i = int(np.searchsorted(r, b.r_sample))
        assert np.array_equal(b.features, batch[i], equal_nan=True)
    times = r / fs
    near_gap = (times > 20.0 - spec.after_s) & (times < 22.0 + spec.before_s)
    lost = ~np.all(np.isfinite(batch[:, block]), axis=1)
    assert lost[near_gap].all()
    assert not lost[4:][~near_gap[4:]][:-1].any()  # the lead's context is back after it
    # The chest lead's window is its own: unit RMS, not the first lead's.
    i = int(np.flatnonzero(usable)[10])
    w2 = batch[i, block][: spec.n_points]
    assert np.sqrt(np.mean(w2 * w2)) == pytest.approx(1.0)
    assert not np.allclose(w2, batch[i, spec.window_columns])
    # No chest lead at all: NaN blocks, the same usable beats.
    none, none_usable = beat_features(x, r, fs, spec)
    assert np.isnan(none[:, block]).all()
    assert np.array_equal(none_usable, one_usable)
    streamed = _stream_rows(BeatStream(fs, spec), x, r, None, seed + 100)
    assert all(np.isnan(b.features[block]).all() for b in streamed)
    with pytest.raises(ValueError, match="second lead"):
        beat_features(x, r, fs, spec, second=x2[:-1])
    with pytest.raises(ValueError, match="second lead chunk"):
        BeatStream(fs, spec).push(x[:10], (), x2[:9])


def test_a_one_lead_spec_is_written_as_version_3_and_a_two_lead_one_as_4() -> None:
    assert SPEC.to_dict()["version"] == 3
    assert "leads" not in SPEC.to_dict()
    two = BeatSpec(leads=2)
    assert two.to_dict()["version"] == 4
    assert BeatSpec.from_dict(two.to_dict()) == two
    assert BeatSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(ValueError, match="leads"):
        BeatSpec.from_dict({k: v for k, v in two.to_dict().items() if k != "leads"})
    with pytest.raises(ValueError, match="leads"):
        BeatSpec(leads=3)


def test_lost_samples_of_the_first_lead_spoil_only_the_beats_they_touch() -> None:
    """A NaN stretch in lead II (a lost WAVEFORM frame on the edge) makes the beats whose
    windows reach it unusable and leaves the template and context alone (`LeadTracker`):
    before, the template went NaN for good and the context tracker raised on the window."""
    fs = 360.0
    x, r = _random_beats(6, fs, 60.0)
    t = np.arange(x.size) / fs
    x[(t > 20.0) & (t < 20.5)] = np.nan
    batch, usable = beat_features(x, r, fs)
    out = _stream_rows(BeatStream(fs), x, r, None, 106)
    for b in out:
        i = int(np.searchsorted(r, b.r_sample))
        assert np.array_equal(b.features, batch[i], equal_nan=True)
    times = r / fs
    near_gap = (times > 20.0 - SPEC.after_s) & (times < 20.5 + SPEC.before_s)
    assert near_gap.any()
    assert not usable[near_gap].any()
    assert usable[4:-1][~near_gap[4:-1]].all()
