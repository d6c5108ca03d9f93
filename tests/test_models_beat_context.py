"""Beat spec 3 context scalars (`models.beat_context`), checked against hand-computed values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from models.beat_context import CONTEXT_FEATURE_NAMES, ContextTracker
from models.beats import DEFAULT_SPEC, RR_FEATURE_NAMES

SPEC = DEFAULT_SPEC
T = np.linspace(-SPEC.before_s, SPEC.after_s, SPEC.n_points)
COL = {name: k for k, name in enumerate(CONTEXT_FEATURE_NAMES)}


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - np.median(x)
    return x / np.sqrt(np.mean(x * x))


NORMAL = _unit(np.exp(-((T / 0.012) ** 2)) + 0.2 * np.exp(-(((T - 0.25) / 0.05) ** 2)))
WIDE = _unit(-np.exp(-((T / 0.05) ** 2)) + 0.3 * np.exp(-(((T - 0.3) / 0.06) ** 2)))


def _rr(pre: float, post: float, pre_ratio: float = 1.0) -> np.ndarray:
    row = np.full(len(RR_FEATURE_NAMES), np.nan)
    row[0], row[1], row[3] = pre, post, pre_ratio
    return row


def _tracker() -> ContextTracker:
    return SPEC.context_tracker()


def test_a_steady_rhythm_of_identical_beats_has_no_context_contrast() -> None:
    tr = _tracker()
    first = tr.update(NORMAL, np.zeros_like(NORMAL), 0.5, _rr(0.8, 0.8)).copy()
    # No earlier beat: history values are NaN, the rest compare the beat with itself.
    for name in ("nb_corr_prev_qrs", "nb_corr_med8_qrs", "mdev_rms_all", "pre_vs_med8",
                 "pre_z16", "abs_dd_pre", "rmssd16_rel", "pnn50_16", "irregularity30"):
        assert math.isnan(first[COL[name]]), name
    assert first[COL["g_dev_rms_all"]] == 0.0
    assert first[COL["log_p2p_rel"]] == 0.0
    assert first[COL["abs_dd_post"]] == 0.0
    for _ in range(30):
        row = tr.update(NORMAL, np.zeros_like(NORMAL), 0.5, _rr(0.8, 0.8))
    assert np.all(np.isfinite(row))
    for name in ("g_dev_rms_all", "g_dev_rms_qrs", "g_qrs_width_rel", "log_p2p_rel",
                 "log_rms_rel", "log_slope_rel", "mdev_rms_all", "mdev_rms_qrs", "abs_dd_pre",
                 "abs_dd_post", "rmssd16_rel", "pnn50_16", "dev_rms_qrs", "qrs_energy_rel",
                 "irregularity30"):
        assert row[COL[name]] == pytest.approx(0.0, abs=1e-12), name
    for name in ("g_corr_all", "g_corr_qrs", "nb_corr_prev_qrs", "nb_corr_prev_all",
                 "nb_corr_med8_qrs", "nb_corr_max8_qrs", "mcorr_qrs", "pre_vs_med8",
                 "post_vs_med8", "corr_p", "corr_all"):
        assert row[COL[name]] == pytest.approx(1.0, abs=1e-12), name
    assert row[COL["pre_z16"]] == pytest.approx(0.0, abs=1e-12)


def test_a_premature_wide_beat_twice_the_size_stands_out() -> None:
    tr = _tracker()
    for _ in range(20):
        tr.update(NORMAL, np.zeros_like(NORMAL), 0.5, _rr(0.8, 0.8))
    row = tr.update(WIDE, WIDE - NORMAL, 1.0, _rr(0.5, 1.1, 0.5 / 0.8))
    assert row[COL["log_rms_rel"]] == pytest.approx(math.log(2.0), abs=1e-12)
    p2p = lambda w: np.ptp(w[(T >= -0.08) & (T <= 0.10)])  # noqa: E731
    assert row[COL["log_p2p_rel"]] == pytest.approx(
        math.log(2.0 * p2p(WIDE) / p2p(NORMAL)), abs=1e-12)
    assert row[COL["g_corr_qrs"]] < 0.0  # inverted and wide against the usual beat
    assert row[COL["g_qrs_width_rel"]] > 0.04  # s
    assert row[COL["g_dev_rms_all"]] == pytest.approx(np.sqrt(np.mean((WIDE - NORMAL) ** 2)))
    assert row[COL["pre_vs_med8"]] == pytest.approx(0.5 / 0.8)
    assert row[COL["post_vs_med8"]] == pytest.approx(1.1 / 0.8)
    assert row[COL["abs_dd_pre"]] == pytest.approx(0.3)
    assert row[COL["abs_dd_post"]] == pytest.approx(0.6)
    assert row[COL["pre_z16"]] == pytest.approx(-0.3 / 0.01)  # a steady rhythm: std 0


def test_the_gated_template_ignores_a_bigeminy_the_running_averages_follow() -> None:
    tr = _tracker()
    for _ in range(25):
        tr.update(NORMAL, np.zeros_like(NORMAL), 0.5, _rr(0.8, 0.8))
    for _ in range(60):  # ventricular bigeminy: every other beat early and wide
        tr.update(WIDE, np.zeros_like(WIDE), 0.5, _rr(0.5, 1.1, 0.6))
        normal = tr.update(NORMAL, np.zeros_like(NORMAL), 0.5, _rr(1.1, 0.5, 1.3)).copy()
    assert normal[COL["g_corr_qrs"]] == pytest.approx(1.0, abs=1e-12)
    assert normal[COL["g_dev_rms_all"]] == pytest.approx(0.0, abs=1e-12)
    # The last 16 windows alternate, so their median sits between the two shapes.
    assert normal[COL["mdev_rms_all"]] > 0.1
    # Alternating intervals: every successive difference is 0.6 s, above 50 ms.
    assert normal[COL["pnn50_16"]] == 1.0
    assert normal[COL["rmssd16_rel"]] == pytest.approx(0.6 / 0.8)
    assert normal[COL["irregularity30"]] == pytest.approx(0.6 / 0.8)


def test_irregularity_is_the_median_successive_difference_of_the_last_30_intervals() -> None:
    tr = _tracker()
    rng = np.random.default_rng(3)
    d = rng.uniform(0.4, 1.2, size=40)
    for pre, post in itertools.pairwise(d):
        row = tr.update(NORMAL, np.zeros_like(NORMAL), 0.5, _rr(pre, post))
    last30 = d[-32:-2]  # the last beat's own interval is d[-2]; the 30 before it
    want = np.median(np.abs(np.diff(last30))) / last30.mean()
    assert row[COL["irregularity30"]] == pytest.approx(want, rel=1e-12)
    last16 = d[-18:-2]
    assert row[COL["pre_z16"]] == pytest.approx(
        (d[-2] - last16.mean()) / (last16.std() + 0.01), rel=1e-12)


def test_a_flat_window_has_no_size_features() -> None:
    tr = _tracker()
    row = tr.update(np.zeros(SPEC.n_points), np.zeros(SPEC.n_points), 0.0, _rr(0.8, 0.8))
    for name in ("log_p2p_rel", "log_rms_rel", "log_slope_rel", "slope_over_p2p",
                 "g_qrs_width_rel", "g_corr_all"):
        assert math.isnan(row[COL[name]]), name
    # A later real beat starts the running size afresh.
    row = tr.update(NORMAL, NORMAL, 0.5, _rr(0.8, 0.8))
    assert row[COL["log_rms_rel"]] == 0.0
