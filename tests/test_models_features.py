"""models.features and models.scaler: the rules by hand, streaming == batch (exactly) on real and
synthetic recordings, finite outputs for any input, no allocation per tick, JSON round trips."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from _data import shared_data_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge.bedstate import VITAL_FIELDS
from firmware_bridge.sim import SyntheticPatient, Vital, apply_events, get_profile, parse_event
from firmware_bridge.sim.replay import load_recording
from models.features import (
    DEFAULT_FILL_VALUES,
    QUANTUM_PER_UNIT,
    VITAL_NAMES,
    FeatureSpec,
    FeatureSpecError,
    FeatureStream,
    MultiBedFeatureStream,
    _window_sums_batch,
    compute_features,
)
from models.scaler import ScalerError, Standardizer

NAN = math.nan
SMALL = FeatureSpec(windows_s=(3, 5))  # min valid count 2 for both windows


def stream_all(x: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    s = FeatureStream(spec)
    return np.array([s.update(row).copy() for row in x]).reshape(x.shape[0], spec.n_features)


def col(spec: FeatureSpec, name: str) -> int:
    return spec.feature_names().index(name)


def assert_stream_equals_batch(x: np.ndarray, spec: FeatureSpec | None = None) -> np.ndarray:
    spec = spec or FeatureSpec()
    batch = compute_features(x, spec)
    streamed = stream_all(x, spec)
    assert np.isfinite(batch).all()
    if not np.array_equal(batch, streamed):
        bad = np.argwhere(batch != streamed)[0]
        raise AssertionError(
            f"row {bad[0]} {spec.feature_names()[bad[1]]}: batch {batch[tuple(bad)]!r} "
            f"stream {streamed[tuple(bad)]!r}"
        )
    return batch


# ---------------------------------------------------------------------------------- the spec


def test_vital_order_is_the_simulators_and_the_edges():
    assert VITAL_NAMES == VITAL_FIELDS
    assert [v.name.lower() for v in Vital] == [n.split("_")[0] for n in VITAL_NAMES]


def test_feature_names_layout():
    spec = FeatureSpec()
    names = spec.feature_names()
    assert len(names) == spec.n_features == 7 * 12
    assert names[:13] == [
        "hr_bpm", "hr_bpm.delta",
        "hr_bpm.mean_30s", "hr_bpm.std_30s", "hr_bpm.slope_30s",
        "hr_bpm.mean_120s", "hr_bpm.std_120s", "hr_bpm.slope_120s",
        "hr_bpm.mean_300s", "hr_bpm.std_300s", "hr_bpm.slope_300s",
        "hr_bpm.missing", "spo2_pct",
    ]  # fmt: skip
    assert names[-1] == "temp_c.missing"
    assert len(set(names)) == len(names)
    assert spec.window_samples == (30, 120, 300)
    assert spec.min_valid_counts == (3, 12, 30)  # 0.1 * 30 is not rounded up to 4


def test_spec_json_round_trip():
    spec = FeatureSpec(windows_s=(10, 60), sample_period_s=0.5, min_valid_fraction=0.25,
                       fill_values=(60.0, 95.5, 12.0, 110.0, 70.0, 83.0, 36.6))
    text = json.dumps(spec.to_dict())
    back = FeatureSpec.from_dict(json.loads(text))
    assert back == spec
    assert back.feature_names() == spec.feature_names()
    assert FeatureSpec.from_dict(json.loads(json.dumps(FeatureSpec().to_dict()))) == FeatureSpec()


def _bad(**changes: object) -> dict:
    d = FeatureSpec().to_dict()
    for key, value in changes.items():
        if value is KeyError:
            del d[key]
        else:
            d[key] = value
    return d


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_bad(version=2), "version"),
        (_bad(version="1"), "version"),
        (_bad(version=KeyError), "version"),
        (_bad(vitals=list(reversed(VITAL_NAMES))), "vitals"),
        (_bad(windows_s=[]), "windows_s"),
        (_bad(windows_s=[30, 30]), "windows_s"),
        (_bad(windows_s=[120, 30]), "windows_s"),
        (_bad(windows_s=[30.5]), "windows_s"),
        (_bad(windows_s=[1]), "windows_s"),
        (_bad(windows_s=[7200]), "windows_s"),
        (_bad(windows_s=[True, 30]), "windows_s"),
        (_bad(sample_period_s=0), "sample_period_s"),
        (_bad(sample_period_s=7, windows_s=[30]), "windows_s"),
        (_bad(min_valid_fraction=0.0), "min_valid_fraction"),
        (_bad(min_valid_fraction=1.5), "min_valid_fraction"),
        (_bad(fill_values=[70.0] * 7), "fill_values"),
        (_bad(fill_values={**FeatureSpec().to_dict()["fill_values"], "temp_c": NAN}),
         "fill_values.temp_c"),
        (_bad(fill_values={k: 1.0 for k in VITAL_NAMES[:-1]}), "fill_values.temp_c"),
        (_bad(fill_values={**FeatureSpec().to_dict()["fill_values"], "etco2": 1.0}),
         "fill_values.etco2"),
        (_bad(windows=[30]), "windows"),
    ],
)
def test_spec_from_bad_dict_names_the_field(data, field):
    with pytest.raises(FeatureSpecError) as info:
        FeatureSpec.from_dict(data)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


def test_spec_constructor_validates_too():
    with pytest.raises(FeatureSpecError, match="windows_s"):
        FeatureSpec(windows_s=(0,))
    with pytest.raises(FeatureSpecError, match="spec"):
        FeatureSpec.from_dict([1, 2])  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the rules, by hand


def test_hand_checked_values_on_a_tiny_array():
    x = np.full((5, 7), NAN)
    x[:, 0] = [60.0, 62.0, NAN, 66.0, 70.0]
    f = assert_stream_equals_batch(x, SMALL)
    c = lambda name: f[:, col(SMALL, name)]  # noqa: E731
    np.testing.assert_array_equal(c("hr_bpm"), [60, 62, 62, 66, 70])
    np.testing.assert_array_equal(c("hr_bpm.delta"), [0, 2, 0, 4, 4])  # across the gap
    np.testing.assert_array_equal(c("hr_bpm.missing"), [0, 0, 1, 0, 0])
    # 3 s window: rows 0 | 0,1 | 0,1,(2) | 1,(2),3 | (2),3,4 ; needs 2 valid samples
    np.testing.assert_array_equal(c("hr_bpm.mean_3s"), [60, 61, 61, 64, 68])
    np.testing.assert_array_equal(c("hr_bpm.std_3s"), [0, 1, 1, 2, 2])
    np.testing.assert_array_equal(c("hr_bpm.slope_3s"), [0, 120, 120, 120, 240])  # per minute
    # 5 s window at row 4: 60@0, 62@1, 66@3, 70@4
    assert c("hr_bpm.mean_5s")[4] == 64.5
    assert c("hr_bpm.std_5s")[4] == pytest.approx(math.sqrt(59 / 4), rel=1e-15)
    assert c("hr_bpm.slope_5s")[4] == pytest.approx(24 / 10 * 60, rel=1e-15)
    # a vital never measured: fill value, no change, no spread, no trend, flagged
    fill = DEFAULT_FILL_VALUES[VITAL_NAMES.index("temp_c")]
    for name, want in [("temp_c", fill), ("temp_c.delta", 0), ("temp_c.mean_3s", fill),
                       ("temp_c.std_5s", 0), ("temp_c.slope_5s", 0), ("temp_c.missing", 1)]:
        np.testing.assert_array_equal(c(name), want)


def test_level_is_filled_until_the_first_reading_and_carried_after_the_last():
    x = np.full((8, 7), NAN)
    x[3, 1] = 91.0
    x[4, 1] = 93.0
    f = compute_features(x, SMALL)
    fill = DEFAULT_FILL_VALUES[1]
    np.testing.assert_array_equal(f[:, col(SMALL, "spo2_pct")], [fill] * 3 + [91, 93, 93, 93, 93])
    np.testing.assert_array_equal(f[:, col(SMALL, "spo2_pct.delta")], [0, 0, 0, 0, 2, 0, 0, 0])
    # one valid sample is not enough for a 3 s statistic: the mean is the level
    np.testing.assert_array_equal(f[:, col(SMALL, "spo2_pct.mean_3s")],
                                  [fill] * 3 + [91, 92, 92, 93, 93])
    np.testing.assert_array_equal(f[:, col(SMALL, "spo2_pct.slope_3s")],
                                  [0, 0, 0, 0, 120, 120, 0, 0])


def test_window_warm_up_uses_what_is_there_once_enough_samples_are_valid():
    spec = FeatureSpec()  # the 300 s window needs 30 valid samples
    x = np.full((40, 7), 80.0)
    x[:, 0] = 60.0 + np.arange(40)  # HR rises 1 bpm per second = 60 bpm/min
    f = compute_features(x, spec)
    mean, slope = f[:, col(spec, "hr_bpm.mean_300s")], f[:, col(spec, "hr_bpm.slope_300s")]
    np.testing.assert_array_equal(mean[:29], x[:29, 0])  # the level until then
    np.testing.assert_array_equal(slope[:29], 0.0)
    assert mean[29] == pytest.approx(np.mean(x[:30, 0]), rel=1e-15)
    assert slope[29:] == pytest.approx(60.0, rel=1e-12)
    assert f[2, col(spec, "hr_bpm.slope_30s")] == pytest.approx(60.0)  # 3 samples suffice
    assert (f[:, col(spec, "sbp_mmhg.std_120s")] == 0).all()


def _reference(x: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The rules of the module docstring, written naively (a loop per row and vital)."""
    q = np.where(np.isfinite(x), np.rint(np.clip(x, -500, 500) * QUANTUM_PER_UNIT), NAN)
    q /= QUANTUM_PER_UNIT
    n, k = x.shape[0], spec.features_per_vital
    out = np.zeros((n, 7, k))
    for v in range(7):
        last = prev = None
        for t in range(n):
            value = q[t, v]
            prev = last
            if not math.isnan(value):
                last = value
            level = spec.fill_values[v] if last is None else last
            out[t, v, 0] = level
            out[t, v, 1] = 0.0 if math.isnan(value) or prev is None else value - prev
            out[t, v, k - 1] = float(math.isnan(value))
            for w, (size, m) in enumerate(
                zip(spec.window_samples, spec.min_valid_counts, strict=True)
            ):
                times = np.arange(max(0, t - size + 1), t + 1)
                vals = q[times, v]
                ok = ~np.isnan(vals)
                if ok.sum() < m:
                    out[t, v, 2 + 3 * w : 5 + 3 * w] = (level, 0.0, 0.0)
                    continue
                tt, vv = times[ok] * spec.sample_period_s / 60.0, vals[ok]
                slope = np.sum((tt - tt.mean()) * (vv - vv.mean())) / np.sum((tt - tt.mean()) ** 2)
                out[t, v, 2 + 3 * w : 5 + 3 * w] = (vv.mean(), vv.std(), slope)
    return out.reshape(n, -1)


def test_matches_a_naive_reference_implementation():
    rng = np.random.default_rng(3)
    x = 80.0 + 10.0 * rng.standard_normal((300, 7))
    x[rng.random(x.shape) < 0.3] = NAN
    x[50:120, 2] = NAN
    x[:, 6] = NAN
    x[10, 3] = np.inf
    spec = FeatureSpec(windows_s=(5, 20, 60))
    got = assert_stream_equals_batch(x, spec)
    np.testing.assert_allclose(got, _reference(x, spec), rtol=1e-9, atol=1e-9)


def test_out_of_range_and_infinite_values():
    x = np.full((4, 7), 50.0)
    x[0, 0], x[1, 0], x[2, 0] = 1e300, -np.inf, 0.0004
    f = assert_stream_equals_batch(x, SMALL)
    assert f[0, col(SMALL, "hr_bpm")] == 500.0  # clipped to VALUE_LIMIT
    assert f[1, col(SMALL, "hr_bpm.missing")] == 1.0  # infinite: not measured
    assert f[2, col(SMALL, "hr_bpm")] == 0.0  # rounded to 0.001


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(n, 7\)"):
        compute_features(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="shape"):
        FeatureStream().update(np.zeros(6))
    with pytest.raises(ValueError, match="shape"):
        MultiBedFeatureStream(n_beds=2).update(np.zeros((3, 7)))
    assert compute_features(np.zeros((0, 7))).shape == (0, 84)


# --------------------------------------------------------------- streaming == batch, exactly


def test_stream_equals_batch_on_the_shipped_mimic3_numerics():
    rec = load_recording("fixture:mimic3-numerics")
    assert rec.vitals.shape == (7200, 7)
    f = assert_stream_equals_batch(rec.vitals)
    assert (f[:, col(FeatureSpec(), "temp_c.missing")] == 1).all()  # no temperature in MIMIC


def test_stream_equals_batch_on_32_hours_of_real_mimic3_numerics():
    folder = shared_data_dir("physionet-samples", "mimic3-s00001")
    rec = load_recording(folder / "s00001-2896-10-10-00-31n")
    assert rec.vitals.shape[0] > 32 * 3600  # 116,160 ticks: integer sums cannot drift
    assert np.isnan(rec.vitals).any(axis=1).mean() > 0.2  # real gaps
    assert_stream_equals_batch(rec.vitals)


def _synthetic_with_events() -> np.ndarray:
    n = 1800
    x = SyntheticPatient(get_profile("adult"), seed=11).readings(n)
    events = [parse_event(e) for e in (
        "desaturation@200+60:300=15", "tachycardia@700+30:200", "hypotension@1100+60:200",
        "probe_off@450:40", "lead_off@900:25", "noise_burst@1500:15",
    )]  # fmt: skip
    x = apply_events(x, np.arange(n, dtype=np.float64), events, seed=11)
    x[1000:1090] = NAN  # cable unplugged for 90 s
    x[:400, Vital.TEMP] = NAN  # temperature probe attached late
    return x


def test_stream_equals_batch_on_a_synthetic_patient_with_events_and_gaps():
    x = _synthetic_with_events()
    f = assert_stream_equals_batch(x)
    spec = FeatureSpec()
    # the desaturation (15 points over 60 s from t = 200 s) is a falling SpO2 trend
    assert f[250, col(spec, "spo2_pct.slope_30s")] < -10.0
    assert f[260, col(spec, "spo2_pct.slope_120s")] < -5.0
    assert f[1050, col(spec, "hr_bpm.missing")] == 1.0


def test_multi_bed_stream_equals_batch_per_bed_and_resets_one_bed():
    rec = load_recording("fixture:mimic3-numerics").vitals[:1800]
    synth = _synthetic_with_events()
    rng = np.random.default_rng(5)
    noise = 70 + 20 * rng.standard_normal((1800, 7))
    noise[rng.random(noise.shape) < 0.5] = NAN
    beds = np.stack([rec, synth, noise], axis=1)  # (n, B, 7)
    stream = MultiBedFeatureStream(n_beds=3)
    got = np.array([stream.update(row).copy() for row in beds])
    for b in range(3):
        np.testing.assert_array_equal(got[:, b], compute_features(beds[:, b]))
    # bed 1's board restarts: afterwards it is a fresh stream; the others are unaffected
    stream.reset(bed=1)
    more = np.array([stream.update(row).copy() for row in beds[:400]])
    np.testing.assert_array_equal(more[:, 1], compute_features(beds[:400, 1]))
    np.testing.assert_array_equal(more[:, 0], compute_features(np.vstack([rec, rec[:400]]))[1800:])


def test_reset_starts_over():
    x = _synthetic_with_events()[:400]
    s = FeatureStream()
    for row in x:
        s.update(row)
    s.reset()
    again = np.array([s.update(row).copy() for row in x[:350]])
    np.testing.assert_array_equal(again, compute_features(x[:350]))


def test_batch_cumulative_sums_may_wrap_around_without_changing_window_sums():
    rng = np.random.default_rng(1)
    xq = rng.integers(-500_000, 500_000, size=(400, 7), dtype=np.int64)
    vi = (rng.random((400, 7)) < 0.7).astype(np.int64)
    xq *= vi
    plain = _window_sums_batch(xq, vi, 300)
    wrapped = _window_sums_batch(xq, vi, 300, base=2**40)  # i*i*x overflows 2^64
    for name in ("n", "sx", "sxx", "st", "stt", "stx"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(wrapped, name))


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0.0, 300.0),
    st.just(NAN),
)


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(np.float64, st.tuples(st.integers(0, 40), st.just(7)), elements=values),
    windows=st.sampled_from([(2,), (2, 3), (3, 7), (5, 11, 20)]),
    frac=st.sampled_from([0.1, 0.5, 1.0]),
)
def test_any_input_gives_finite_features_and_stream_equals_batch(x, windows, frac):
    assert_stream_equals_batch(x, FeatureSpec(windows_s=windows, min_valid_fraction=frac))


# -------------------------------------------------------------------------- no allocation


def _traced_growth(step, ticks: int) -> tuple[int, int]:
    for _ in range(20):
        step(0)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(ticks):
            step(i)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current - base, peak - base


def test_streaming_does_not_allocate_per_tick():
    spec = FeatureSpec()
    rows = _synthetic_with_events()[:500]
    single = FeatureStream(spec)
    grew, peak = _traced_growth(lambda i: single.update(rows[i % 500]), 2000)
    assert grew < 512
    assert peak < 4096  # a handful of small view objects, never an array
    # 256 beds: any per-tick temporary of the beds' size would be >= 14 KiB
    beds = np.repeat(rows[:, None, :], 256, axis=1)
    multi = MultiBedFeatureStream(spec, n_beds=256)
    grew, peak = _traced_growth(lambda i: multi.update(beds[i % 500]), 500)
    assert grew < 512
    assert peak < 4096


# ---------------------------------------------------------------------------------- scaler


def test_scaler_fit_transform_and_json_round_trip():
    spec = FeatureSpec()
    feats = compute_features(_synthetic_with_events(), spec)
    scaler = Standardizer().fit(feats, spec.feature_names())
    z = scaler.transform(feats)
    varying = feats.min(axis=0) != feats.max(axis=0)
    np.testing.assert_allclose(z[:, varying].mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(z[:, varying].std(axis=0), 1.0, rtol=1e-9)
    assert (scaler.scale_[~varying] == 1.0).all()  # constant feature: std 1
    assert (z[:, ~varying] == 0.0).all()
    back = Standardizer.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(back.transform(feats), z)
    back.check_feature_names(spec.feature_names())
    out = np.empty(spec.n_features)
    assert back.transform(feats[7], out=out) is out
    np.testing.assert_array_equal(out, z[7])


def test_scaler_refuses_mismatches():
    scaler = Standardizer()
    with pytest.raises(ScalerError, match="not fitted"):
        scaler.transform(np.zeros((2, 3)))
    scaler.fit(np.arange(12.0).reshape(4, 3), ["a", "b", "c"])
    with pytest.raises(ScalerError, match="expected 3 features"):
        scaler.transform(np.zeros((2, 4)))
    with pytest.raises(ScalerError, match="expected 3 features"):
        scaler.transform(np.zeros(2))
    with pytest.raises(ScalerError, match="4 features, scaler has 3"):
        scaler.check_feature_names(["a", "b", "c", "d"])
    with pytest.raises(ScalerError, match="feature 1 is 'x'"):
        scaler.check_feature_names(["a", "x", "c"])
    with pytest.raises(ScalerError, match="finite"):
        Standardizer().fit(np.array([[1.0, NAN]]))
    good = scaler.to_dict()
    for change, match in [
        ({"scale": [1.0, 0.0, 1.0]}, r"scale\[1\]"),
        ({"mean": [1.0, 2.0]}, "scaler.mean"),
        ({"mean": [1.0, NAN, 2.0]}, r"mean\[1\]"),
        ({"version": 9}, "version"),
        ({"n_features": 0}, "n_features"),
        ({"feature_names": ["a"]}, "feature_names"),
        ({"extra": 1}, "extra"),
    ]:
        with pytest.raises(ScalerError, match=match):
            Standardizer.from_dict({**good, **change})
