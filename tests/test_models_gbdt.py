"""models.gbdt against real LightGBM classifiers trained here.

Each model is exported with training.export.export_lightgbm and compared with the fitted
model's own ``predict_proba``. Tolerance: 1e-12 absolute on probabilities (in practice the
scorer is bit-identical: same leaf values, thresholds, summation order and transforms).
Covered: multiclass (4 classes, class_weight="balanced") and binary; NaN in training and
scoring (missing_type NaN); a feature that is often exactly 0 with zero_as_missing=True
(missing_type Zero), values inside LightGBM's zero band (|x| <= 1e-35f); constant features;
values exactly at a split threshold and one ulp either side. Also: save/load through a real
.npz file, bad or missing arrays, wrong input shape, a single row equal to the batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightgbm", reason="lightgbm is in vigil[train]")

import lightgbm as lgb

from models.gbdt import (
    FORMAT,
    MISSING_NAN,
    MISSING_ZERO,
    ZERO_THRESHOLD,
    GradientBoostedTrees,
)
from models.npz import ModelFileError, save_arrays
from models.tflite import ModelError
from training.export import ExportError, export_lightgbm

PROBA_ATOL = 1e-12
N_FEATURES = 6


def _data(seed: int, n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Features with NaN (column 1), frequent exact zeros (column 2), a constant (column 3),
    and a label that depends on several columns, so the trees split on them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    # Unbalanced classes, so class_weight="balanced" changes the model.
    y[rng.random(n) < 0.4] = 0
    x = rng.normal(size=(n, N_FEATURES))
    x[:, 0] += y
    x[:, 1] += 0.8 * (y % 2)
    x[rng.random(n) < 0.2, 1] = np.nan
    x[:, 2] = np.where(rng.random(n) < 0.5, 0.0, x[:, 2] + 0.5 * y)
    x[:, 3] = 2.5
    x[:, 4] = np.round(x[:, 4] * 2.0) / 2.0  # few distinct values: thresholds between them
    return x, y


def _scoring_rows(seed: int) -> np.ndarray:
    """Held-out rows plus the awkward values: NaN, 0.0, -0.0, the zero band and beyond it."""
    rng = np.random.default_rng(seed)
    x, _ = _data(seed, 300, 4)
    x[rng.random(x.shape) < 0.08] = np.nan
    x[rng.random(x.shape) < 0.08] = 0.0
    special = np.array([np.nan, 0.0, -0.0, 1e-40, -1e-40, ZERO_THRESHOLD, -ZERO_THRESHOLD,
                        np.nextafter(ZERO_THRESHOLD, 1.0), 1e-30, np.inf, -np.inf])
    tiles = np.tile(x[:1], (special.size, 1))
    for column in range(N_FEATURES):
        block = tiles.copy()
        block[:, column] = special
        x = np.vstack([x, block])
    return x


def _threshold_rows(scorer: GradientBoostedTrees, base: np.ndarray) -> np.ndarray:
    """Rows whose split feature equals a split threshold exactly, and one ulp either side."""
    arrays = scorer.to_arrays()
    internal = arrays["children_left"] >= 0
    rows = []
    for feature, threshold in zip(arrays["feature"][internal], arrays["threshold"][internal],
                                  strict=True):
        for value in (threshold, np.nextafter(threshold, -np.inf),
                      np.nextafter(threshold, np.inf)):
            row = base.copy()
            row[feature] = value
            rows.append(row)
    return np.array(rows)


def _fit(n_classes: int, *, zero_as_missing: bool = False, seed: int = 0, **params: object):
    x, y = _data(seed, 400, n_classes)
    model = lgb.LGBMClassifier(
        n_estimators=40, num_leaves=8, learning_rate=0.2, min_child_samples=5,
        class_weight="balanced", zero_as_missing=zero_as_missing, random_state=seed,
        verbose=-1, **params,
    )
    return model.fit(x, y)


CASES = [
    pytest.param(4, False, id="multiclass4-nan"),
    pytest.param(4, True, id="multiclass4-zero-as-missing"),
    pytest.param(2, False, id="binary-nan"),
    pytest.param(2, True, id="binary-zero-as-missing"),
]


@pytest.mark.parametrize(("n_classes", "zero_as_missing"), CASES)
def test_predict_proba_equals_lightgbm(n_classes: int, zero_as_missing: bool) -> None:
    model = _fit(n_classes, zero_as_missing=zero_as_missing)
    scorer = export_lightgbm(model)
    assert scorer.n_classes == n_classes
    assert scorer.n_features == N_FEATURES
    per_iteration = 1 if n_classes == 2 else n_classes
    assert scorer.n_trees == model.booster_.num_trees() == 40 * per_iteration
    arrays = scorer.to_arrays()
    internal = arrays["children_left"] >= 0
    used = set(arrays["feature"][internal].tolist())
    assert 3 not in used  # the constant feature never splits
    missing = arrays["missing_type"][internal]
    # The branches this test is about really occur in the model.
    assert (missing == (MISSING_ZERO if zero_as_missing else MISSING_NAN)).any()
    rows = _scoring_rows(1)
    rows = np.vstack([rows, _threshold_rows(scorer, rows[0]), _threshold_rows(scorer, rows[5])])
    expected = model.predict_proba(rows)
    got = scorer.predict_proba(rows)
    assert got.shape == (rows.shape[0], n_classes)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=PROBA_ATOL)
    raw = scorer.raw_score(rows)
    lgb_raw = model.predict(rows, raw_score=True)
    if n_classes == 2:
        np.testing.assert_allclose(raw[:, 1], lgb_raw, rtol=0, atol=PROBA_ATOL)
        assert (raw[:, 0] == 0.0).all()
    else:
        np.testing.assert_allclose(raw, lgb_raw, rtol=0, atol=PROBA_ATOL)
    # Training rows too (NaN where the model learnt it), and float32 / integer input, which
    # LightGBM reads as float32.
    x_train, _ = _data(0, 400, n_classes)
    np.testing.assert_allclose(scorer.predict_proba(x_train), model.predict_proba(x_train),
                               rtol=0, atol=PROBA_ATOL)
    x32 = rows.astype(np.float32)
    np.testing.assert_allclose(scorer.predict_proba(x32), model.predict_proba(x32), rtol=0,
                               atol=PROBA_ATOL)
    ints = np.nan_to_num(rows * 3, posinf=5, neginf=-5).astype(np.int64)
    np.testing.assert_allclose(scorer.predict_proba(ints), model.predict_proba(ints), rtol=0,
                               atol=PROBA_ATOL)


def test_booster_exports_like_the_classifier_and_large_batches_chunk() -> None:
    model = _fit(4, seed=3)
    rows = np.vstack([_scoring_rows(2)] * 3)  # > one 512-row chunk, with a short tail
    from_booster = export_lightgbm(model.booster_)
    np.testing.assert_allclose(from_booster.predict_proba(rows), model.predict_proba(rows),
                               rtol=0, atol=PROBA_ATOL)


def test_single_row_equals_batch() -> None:
    for n_classes in (2, 4):
        scorer = export_lightgbm(_fit(n_classes, zero_as_missing=True))
        rows = _scoring_rows(4)[:60]
        batch = scorer.predict_proba(rows)
        single = np.vstack([scorer.predict_proba(row[np.newaxis, :]) for row in rows])
        np.testing.assert_array_equal(single, batch)
        raw_single = np.vstack([scorer.raw_score(row[np.newaxis, :]) for row in rows])
        np.testing.assert_array_equal(raw_single, scorer.raw_score(rows))


def test_stump_trees_from_constant_data() -> None:
    """Constant features only: every tree is a single leaf (the class prior)."""
    x = np.full((60, 3), 1.5)
    y = np.arange(60) % 3
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    scorer = export_lightgbm(model)
    assert scorer.max_depth == 0
    rows = np.array([[1.5, 1.5, 1.5], [np.nan, 0.0, -7.0]])
    np.testing.assert_allclose(scorer.predict_proba(rows), model.predict_proba(rows), rtol=0,
                               atol=PROBA_ATOL)


def test_wrong_input_shape_and_dtype() -> None:
    scorer = export_lightgbm(_fit(2))
    with pytest.raises(ModelError, match=r"\(n_rows, 6\), got shape \(6,\)"):
        scorer.predict_proba(np.zeros(N_FEATURES))
    with pytest.raises(ModelError, match=r"\(n_rows, 6\), got shape \(2, 5\)"):
        scorer.raw_score(np.zeros((2, 5)))
    with pytest.raises(ModelError, match="numeric"):
        scorer.predict_proba(np.array([["a"] * N_FEATURES]))
    assert scorer.predict_proba(np.zeros((0, N_FEATURES))).shape == (0, 2)


def test_save_load_round_trip(tmp_path: Path) -> None:
    scorer = export_lightgbm(_fit(4, zero_as_missing=True))
    path = tmp_path / "beats.npz"
    scorer.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with np.load(path, allow_pickle=False) as npz:
        assert str(npz["vigil_format"]) == FORMAT
        assert all(npz[k].dtype.kind != "O" for k in npz.files)
    loaded = GradientBoostedTrees.load(path)
    for key, value in scorer.to_arrays().items():
        np.testing.assert_array_equal(loaded.to_arrays()[key], value)
    rows = _scoring_rows(5)
    np.testing.assert_array_equal(loaded.predict_proba(rows), scorer.predict_proba(rows))
    assert loaded.score(rows).tolist() == scorer.predict_proba(rows).tolist()


def test_bad_or_missing_arrays_refused(tmp_path: Path) -> None:
    good = export_lightgbm(_fit(4)).to_arrays()
    fmt = np.array(FORMAT)
    path = tmp_path / "m.npz"
    save_arrays(path, vigil_format=fmt, **{k: v for k, v in good.items() if k != "leaf_value"})
    with pytest.raises(ModelFileError, match=r"m\.npz: missing array\(s\) leaf_value"):
        GradientBoostedTrees.load(path)
    save_arrays(path, vigil_format=fmt, **{**good, "threshold": good["feature"]})
    with pytest.raises(ModelFileError, match="'threshold' has dtype int64, expected kind 'f'"):
        GradientBoostedTrees.load(path)
    bad_missing = good["missing_type"].copy()
    bad_missing[0, 0] = 7
    save_arrays(path, vigil_format=fmt, **{**good, "missing_type": bad_missing})
    with pytest.raises(ModelFileError, match=r"m\.npz: gradient-boosted trees: "
                                             r"missing_type\[0, 0\] = 7"):
        GradientBoostedTrees.load(path)
    save_arrays(path, vigil_format=np.array("vigil.other/1"), **good)
    with pytest.raises(ModelFileError, match=r"holds a 'vigil\.other/1' model"):
        GradientBoostedTrees.load(path)
    with pytest.raises(ModelError, match="missing array"):
        GradientBoostedTrees.from_arrays({k: v for k, v in good.items() if k != "threshold"})
    with pytest.raises(ModelError, match="not a multiple of 4 trees per iteration"):
        GradientBoostedTrees.from_arrays({k: v[:-1] if v.ndim == 2 else v
                                          for k, v in good.items()})
    cycle = {**good, "children_left": good["children_left"].copy()}
    cycle["children_left"][0, 0] = 0
    with pytest.raises(ModelError, match=r"children_left\[0, 0\] = 0"):
        GradientBoostedTrees.from_arrays(cycle)
    with pytest.raises(ModelError, match=r"outside \[0, 1\)"):
        GradientBoostedTrees.from_arrays({**good, "n_features": np.array(1)})
    leaves = good["leaf_value"].copy()
    leaves[good["children_left"] < 0] = np.nan
    with pytest.raises(ModelError, match="leaf value is not finite"):
        GradientBoostedTrees.from_arrays({**good, "leaf_value": leaves})


def test_export_refusals() -> None:
    x, y = _data(0, 200, 3)
    with pytest.raises(ExportError, match="not fitted"):
        export_lightgbm(lgb.LGBMClassifier())
    with pytest.raises(ExportError, match="expected a fitted lightgbm"):
        export_lightgbm(object())
    ova = lgb.LGBMClassifier(objective="multiclassova", n_estimators=3, verbose=-1).fit(x, y)
    with pytest.raises(ExportError, match="objective 'multiclassova"):
        export_lightgbm(ova)
    regression = lgb.LGBMRegressor(n_estimators=3, verbose=-1).fit(x, y.astype(float))
    with pytest.raises(ExportError, match="expected a fitted lightgbm"):
        export_lightgbm(regression)
    with pytest.raises(ExportError, match="objective 'regression"):
        export_lightgbm(regression.booster_)
    linear = lgb.LGBMClassifier(linear_tree=True, n_estimators=3, verbose=-1)
    with pytest.raises(ExportError, match="linear trees"):
        export_lightgbm(linear.fit(np.nan_to_num(x), y))
    xc = np.nan_to_num(x)
    xc[:, 5] = np.arange(len(xc)) % 4
    categorical = lgb.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1,
                                     min_data_per_group=5, cat_smooth=1.0)
    categorical.fit(xc, (xc[:, 5] >= 2).astype(int), categorical_feature=[5])
    with pytest.raises(ExportError, match="categorical"):
        export_lightgbm(categorical)
