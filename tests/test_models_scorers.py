"""models.iforest / models.dbscan / models.logistic against real scikit-learn models.

Each scorer is exported from a model fitted here (training.export) and compared with the
fitted sklearn model itself, on random data of several shapes and on Gaussian blobs with
planted outliers. Tolerances (absolute):
- IsolationForest ``score_samples``: 1e-9 (it is bit-identical in practice: same float32 input
  rounding, same per-tree terms, same summation order); ``predict`` exactly equal.
- LogisticRegression ``predict_proba[:, 1]``: 1e-12, including logits of +-40 and +-800.
- DBSCAN: the reference rule is computed here with sklearn ``NearestNeighbors`` on the core
  samples (distance 1e-9 relative, outlier flag exactly); on the training rows the flag must
  equal the fitted model's own noise labels.
Streaming ``update`` must agree with the batch method (1e-12). Model files go through real
``.npz`` files loaded with ``allow_pickle=False``; damaged files must raise ModelFileError
naming the problem. A subprocess proves the device side loads and scores with sklearn,
scipy and pandas blocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is in vigil[train]")

from sklearn.cluster import DBSCAN
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from models.dbscan import DbscanScorer
from models.iforest import IsolationForestScorer, average_path_length
from models.logistic import LogisticScorer, stable_sigmoid
from models.npz import FORMAT_KEY, ModelFileError, load_arrays, save_arrays
from models.tflite import ModelError
from training.export import (
    ExportError,
    export_dbscan,
    export_isolation_forest,
    export_logistic,
)

REPO = Path(__file__).resolve().parents[1]
IFOREST_ATOL = 1e-9
LOGISTIC_ATOL = 1e-12
STREAM_ATOL = 1e-12


def _blobs_with_outliers(
    rng: np.random.Generator, n: int, n_features: int, outlier_fraction: float = 0.05
) -> np.ndarray:
    """Three Gaussian blobs of different spread plus uniform outliers far around them.

    The blob centres depend only on ``n_features``, so training and held-out sets drawn
    with different generators share their clusters.
    """
    centers = np.random.default_rng(1000 + n_features).normal(0.0, 4.0, size=(3, n_features))
    spreads = np.array([0.5, 1.0, 1.5])
    which = rng.integers(0, 3, size=n)
    x = centers[which] + rng.normal(size=(n, n_features)) * spreads[which, None]
    n_out = int(n * outlier_fraction)
    x[:n_out] = rng.uniform(-12.0, 12.0, size=(n_out, n_features))
    return x[rng.permutation(n)]


# -- IsolationForest ------------------------------------------------------------------------

IFOREST_CASES = [
    pytest.param(3, "normal", {}, id="f3-defaults"),
    pytest.param(60, "normal", {"n_estimators": 50}, id="f60-50trees"),
    pytest.param(8, "blobs", {"contamination": 0.05, "max_samples": 64}, id="blobs-c05-ms64"),
    pytest.param(20, "blobs", {"max_features": 0.5, "contamination": 0.1}, id="maxfeat0.5"),
    pytest.param(
        12, "blobs", {"max_features": 3, "bootstrap": True, "max_samples": 0.5}, id="maxfeat3-boot"
    ),
    pytest.param(5, "blobs", {"bootstrap": True, "contamination": 0.2}, id="boot-c20"),
    pytest.param(4, "normal", {"n_estimators": 7, "max_samples": 2}, id="tiny-ms2"),
    pytest.param(4, "normal", {"n_estimators": 3, "max_samples": 1}, id="ms1-zero-denominator"),
    pytest.param(6, "float32", {"max_samples": 300}, id="float32-train"),
]


def _iforest_data(kind: str, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "blobs":
        train = _blobs_with_outliers(rng, 800, n_features)
        test = _blobs_with_outliers(rng, 600, n_features, outlier_fraction=0.2)
    else:
        train = rng.normal(size=(800, n_features))
        test = rng.normal(size=(600, n_features)) * 2.0
    if kind == "float32":
        train = train.astype(np.float32)
    # Values exactly on float32 thresholds, far outliers, infinities and NaNs.
    test[:5] = 50.0
    test[5, 0] = np.inf
    test[6, -1] = -np.inf
    test[7::31, 0] = np.nan
    test[8] = np.nan
    return train, test


@pytest.mark.parametrize(("n_features", "kind", "params"), IFOREST_CASES)
def test_iforest_equals_sklearn(n_features: int, kind: str, params: dict[str, object]) -> None:
    train, test = _iforest_data(kind, n_features, seed=n_features)
    model = IsolationForest(random_state=3, **params).fit(train)  # type: ignore[arg-type]
    scorer = export_isolation_forest(model)

    np.testing.assert_allclose(scorer.score_samples(test), model.score_samples(test),
                               rtol=0, atol=IFOREST_ATOL)
    np.testing.assert_allclose(scorer.decision_function(test), model.decision_function(test),
                               rtol=0, atol=IFOREST_ATOL)
    np.testing.assert_array_equal(scorer.predict(test), model.predict(test))
    np.testing.assert_allclose(scorer.score_samples(train), model.score_samples(train),
                               rtol=0, atol=IFOREST_ATOL)
    assert scorer.offset == model.offset_
    assert scorer.n_trees == len(model.estimators_)


def test_iforest_per_tree_terms_equal_sklearn_private_tables() -> None:
    """The leaf terms are built from public tree arrays; sklearn keeps its own copy."""
    train, _ = _iforest_data("blobs", 6, seed=1)
    model = IsolationForest(n_estimators=10, random_state=0).fit(train)
    for tree, depths, apl in zip(model.estimators_, model._decision_path_lengths,
                                 model._average_path_length_per_tree, strict=True):
        np.testing.assert_array_equal(average_path_length(tree.tree_.n_node_samples), apl)
        assert depths[0] == 1  # sklearn's root depth, which the scorer's "- 1.0" relies on


def test_iforest_blobs_flag_planted_outliers() -> None:
    """Not only equal to sklearn: on blobs it also ranks far points as the most abnormal."""
    rng = np.random.default_rng(11)
    train = _blobs_with_outliers(rng, 1000, 10, outlier_fraction=0.0)
    scorer = export_isolation_forest(IsolationForest(random_state=0).fit(train))
    far = rng.uniform(15.0, 20.0, size=(50, 10))
    near = _blobs_with_outliers(rng, 50, 10, outlier_fraction=0.0)
    assert scorer.score_samples(far).max() < np.median(scorer.score_samples(near))


def test_iforest_streaming_equals_batch_and_large_batches_chunk() -> None:
    train, test = _iforest_data("blobs", 16, seed=5)
    model = IsolationForest(max_features=0.75, random_state=1).fit(train)
    scorer = export_isolation_forest(model)
    big = np.concatenate([test, test[:500]])  # > one 512-row chunk, with a short tail
    batch = scorer.score_samples(big)
    np.testing.assert_allclose(batch, model.score_samples(big), rtol=0, atol=IFOREST_ATOL)
    streamed = np.array([scorer.update(row) for row in big])
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=STREAM_ATOL)
    assert scorer.score(big[:3]).tolist() == batch[:3].tolist()


def test_iforest_refuses_bad_input_shapes() -> None:
    train, _ = _iforest_data("normal", 4, seed=0)
    scorer = export_isolation_forest(IsolationForest(n_estimators=5, random_state=0).fit(train))
    with pytest.raises(ModelError, match=r"\(n_rows, 4\), got shape \(4,\)"):
        scorer.score_samples(np.zeros(4))
    with pytest.raises(ModelError, match=r"\(4,\), got shape \(5,\)"):
        scorer.update(np.zeros(5))


def test_iforest_refuses_inconsistent_arrays() -> None:
    train, _ = _iforest_data("normal", 4, seed=0)
    arrays = export_isolation_forest(
        IsolationForest(n_estimators=5, random_state=0).fit(train)
    ).to_arrays()
    cycle = {**arrays, "children_left": arrays["children_left"].copy()}
    cycle["children_left"][0, 0] = 0  # root is its own child
    with pytest.raises(ModelError, match=r"children_left\[0, 0\] = 0"):
        IsolationForestScorer.from_arrays(cycle)
    bad_feature = {**arrays, "n_features": np.array(2)}
    with pytest.raises(ModelError, match=r"outside \[0, 2\)"):
        IsolationForestScorer.from_arrays(bad_feature)
    with pytest.raises(ModelError, match="missing array"):
        IsolationForestScorer.from_arrays({k: v for k, v in arrays.items() if k != "threshold"})


def test_iforest_export_refuses_unfitted() -> None:
    with pytest.raises(ExportError, match="not fitted"):
        export_isolation_forest(IsolationForest())


# -- DBSCAN ---------------------------------------------------------------------------------


def _reference_nearest(core: np.ndarray, points: np.ndarray) -> np.ndarray:
    nn = NearestNeighbors(n_neighbors=1).fit(core)
    distance, _ = nn.kneighbors(points)
    return distance[:, 0]


@pytest.mark.parametrize(
    ("n_features", "eps", "min_samples"),
    [(2, 0.5, 5), (10, 2.5, 5), (60, 9.0, 4)],
)
def test_dbscan_equals_core_distance_rule(n_features: int, eps: float, min_samples: int) -> None:
    rng = np.random.default_rng(n_features)
    train = _blobs_with_outliers(rng, 600, n_features)
    model = DBSCAN(eps=eps, min_samples=min_samples).fit(train)
    scorer = export_dbscan(model, train)
    assert scorer.n_cores == len(model.core_sample_indices_) > 0

    held_out = _blobs_with_outliers(rng, 400, n_features, outlier_fraction=0.3)
    reference = _reference_nearest(train[model.core_sample_indices_], held_out)
    distance = scorer.nearest_distance(held_out)
    np.testing.assert_allclose(distance, reference, rtol=1e-9, atol=1e-12)
    assert np.min(np.abs(reference - eps)) > 1e-9  # no tie at the boundary in this data
    np.testing.assert_array_equal(scorer.is_outlier(held_out), reference > eps)
    np.testing.assert_allclose(scorer.score(held_out), reference / eps, rtol=1e-9)
    assert scorer.is_outlier(held_out).any()
    assert not scorer.is_outlier(held_out).all()

    # On the training rows the rule is DBSCAN's own: noise <=> no core sample within eps.
    np.testing.assert_array_equal(scorer.is_outlier(train), model.labels_ == -1)


def test_dbscan_blocked_search_streaming_and_boundary() -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(size=(3000, 5))
    model = DBSCAN(eps=0.9, min_samples=3).fit(train)
    scorer = export_dbscan(model, train)
    assert scorer.n_cores > 1000  # blocks of a few dozen rows
    held_out = rng.normal(size=(300, 5)) * 1.5
    batch = scorer.nearest_distance(held_out)
    np.testing.assert_allclose(batch, _reference_nearest(scorer.core_samples, held_out),
                               rtol=1e-9, atol=1e-12)
    streamed = np.array([scorer.update(row) for row in held_out])
    np.testing.assert_allclose(streamed, batch / scorer.eps, rtol=0, atol=STREAM_ATOL)
    # A point exactly eps from its nearest core is a neighbour (sklearn's <=), not an outlier.
    core = np.array([[0.0, 0.0], [10.0, 0.0]])
    edge = DbscanScorer(core, eps=3.0)
    assert edge.is_outlier(np.array([[3.0, 0.0], [0.0, -3.0000001]])).tolist() == [False, True]
    assert edge.update(np.array([3.0, 4.0])) == pytest.approx(5.0 / 3.0)


def test_dbscan_update_float32_first_pass_picks_the_float64_core_even_on_near_ties() -> None:
    """The per-tick search runs in float32 and falls back to float64 when the top two are close;
    so it picks the batch (float64) path's core on random rows and on rows built to sit between
    two cores closer than float32 can tell apart (a wrong pick among the nudged rows would be
    off by ~5e-10 relative; the sums differ only in their last bit)."""
    rng = np.random.default_rng(11)
    core = rng.normal(size=(2000, 84))
    scorer = DbscanScorer(core, eps=3.0)
    mid = (core[:200] + core[200:400]) / 2.0  # equidistant from two cores up to rounding
    nudged = mid + (core[:200] - core[200:400]) * 1e-9  # the first core wins by ~1e-9 d^2
    rows = np.vstack([rng.normal(size=(300, 84)) * 1.2, mid, nudged])
    streamed = np.array([scorer.update(row) for row in rows])
    np.testing.assert_allclose(streamed, scorer.score(rows), rtol=1e-13, atol=0)
    np.testing.assert_allclose(
        streamed * scorer.eps, _reference_nearest(core, rows), rtol=1e-13, atol=0
    )


def test_dbscan_export_refusals() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 3))
    with pytest.raises(ExportError, match="metric 'manhattan'"):
        export_dbscan(DBSCAN(eps=1.0, metric="manhattan").fit(train), train)
    with pytest.raises(ExportError, match="no core samples"):
        export_dbscan(DBSCAN(eps=1e-6, min_samples=5).fit(train), train)
    fitted = DBSCAN(eps=1.0).fit(train)
    with pytest.raises(ExportError, match="not the data"):
        export_dbscan(fitted, train + 1.0)
    with pytest.raises(ExportError, match="fitted on 200 rows"):
        export_dbscan(fitted, train[:10])
    assert export_dbscan(DBSCAN(eps=1.0, metric="minkowski", p=2).fit(train), train).n_cores


def test_dbscan_refuses_bad_models() -> None:
    with pytest.raises(ModelError, match="eps must be finite and > 0"):
        DbscanScorer(np.zeros((2, 2)), eps=0.0)
    with pytest.raises(ModelError, match="n_cores >= 1"):
        DbscanScorer(np.zeros((0, 2)), eps=1.0)
    with pytest.raises(ModelError, match="NaN or infinity"):
        DbscanScorer(np.array([[np.nan, 0.0]]), eps=1.0)


# -- Logistic regression --------------------------------------------------------------------


def _logistic_data(
    n_features: int, seed: int, n: int = 500
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)) * rng.uniform(0.1, 50.0, n_features) + rng.normal(
        0.0, 100.0, n_features
    )
    true_w = rng.normal(size=n_features)
    z = (x - x.mean(0)) / x.std(0)
    y = (rng.uniform(size=n) < stable_sigmoid(z @ true_w)).astype(int)
    held_out = rng.normal(size=(300, n_features)) * x.std(0) * 3 + x.mean(0)
    return x, y, held_out


@pytest.mark.parametrize("n_features", [1, 7, 60])
def test_logistic_equals_sklearn(n_features: int) -> None:
    x, y, held_out = _logistic_data(n_features, seed=n_features)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=0.5).fit(scaler.transform(x), y)
    scorer = export_logistic(scaler, model)
    for data in (x, held_out):
        expected = model.predict_proba(scaler.transform(data))[:, 1]
        np.testing.assert_allclose(scorer.predict_proba(data), expected, rtol=0,
                                   atol=LOGISTIC_ATOL)
        np.testing.assert_allclose(scorer.decision_function(data),
                                   model.decision_function(scaler.transform(data)),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gain", [40.0, 800.0])
def test_logistic_extreme_logits(gain: float) -> None:
    """Logits of +-40 (P within 1e-17 of 0 or 1) and +-800 (exp overflows if done naively)."""
    x, y, held_out = _logistic_data(10, seed=2)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression().fit(scaler.transform(x), y)
    model.coef_ = model.coef_ * gain / np.abs(model.coef_).sum()
    model.intercept_ = np.array([0.25])
    scorer = export_logistic(scaler, model)
    logits = scorer.decision_function(held_out)
    assert logits.max() > gain / 4
    assert logits.min() < -gain / 4
    with np.errstate(over="raise"):
        p = scorer.predict_proba(held_out)
    expected = model.predict_proba(scaler.transform(held_out))[:, 1]
    np.testing.assert_allclose(p, expected, rtol=0, atol=LOGISTIC_ATOL)
    assert np.all((p >= 0.0) & (p <= 1.0))
    # Very negative logits keep relative precision (expit there rounds to 0 or a denormal).
    very_negative = stable_sigmoid([-700.0, -745.0])
    assert very_negative[0] == pytest.approx(np.exp(-700.0), rel=1e-12)
    assert very_negative[1] > 0.0


@pytest.mark.parametrize(
    "scaler_kind", ["none", "no-mean", "no-std"],
)
def test_logistic_scaler_variants_and_string_classes(scaler_kind: str) -> None:
    x, y, held_out = _logistic_data(5, seed=9)
    labels = np.where(y == 1, "deteriorating", "stable")  # classes_ = [deteriorating, stable]
    scaler = {
        "none": None,
        "no-mean": StandardScaler(with_mean=False).fit(x),
        "no-std": StandardScaler(with_std=False).fit(x),
    }[scaler_kind]
    features = x if scaler is None else scaler.transform(x)
    model = LogisticRegression(max_iter=2000).fit(features, labels)
    scorer = export_logistic(scaler, model)
    test_features = held_out if scaler is None else scaler.transform(held_out)
    expected = model.predict_proba(test_features)[:, 1]  # P(classes_[1]) = P("stable")
    np.testing.assert_allclose(scorer.predict_proba(held_out), expected, rtol=0,
                               atol=LOGISTIC_ATOL)


def test_logistic_contributions_explain_the_logit() -> None:
    x, y, held_out = _logistic_data(8, seed=4)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression().fit(scaler.transform(x), y)
    scorer = export_logistic(scaler, model)
    row = held_out[0]
    parts = scorer.contributions(row)
    assert parts.shape == (8,)
    np.testing.assert_allclose(parts, model.coef_[0] * scaler.transform(row[None])[0],
                               rtol=1e-15, atol=0)
    logit = scorer.decision_function(row[None])[0]
    assert scorer.intercept + parts.sum() == pytest.approx(logit, abs=1e-12)
    batch_parts = scorer.contributions(held_out)
    np.testing.assert_allclose(batch_parts.sum(axis=1) + scorer.intercept,
                               scorer.decision_function(held_out), rtol=0, atol=1e-11)
    # The factor that drove it: putting that one feature back at its training mean moves the
    # logit by exactly its contribution.
    top = int(np.argmax(np.abs(parts)))
    at_mean = row.copy()
    at_mean[top] = scaler.mean_[top]
    moved = logit - scorer.decision_function(at_mean[None])[0]
    assert moved == pytest.approx(parts[top], abs=1e-12)


def test_logistic_streaming_equals_batch() -> None:
    x, y, held_out = _logistic_data(60, seed=6)
    scaler = StandardScaler().fit(x)
    scorer = export_logistic(scaler, LogisticRegression().fit(scaler.transform(x), y))
    batch = scorer.predict_proba(held_out)
    streamed = np.array([scorer.update(row) for row in held_out])
    np.testing.assert_allclose(streamed, batch, rtol=0, atol=STREAM_ATOL)
    assert scorer.score(held_out).tolist() == batch.tolist()


def test_logistic_export_refuses_multiclass_and_mismatch() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y3 = rng.integers(0, 3, size=300)
    with pytest.raises(ExportError, match="3 classes; only binary"):
        export_logistic(None, LogisticRegression().fit(x, y3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    with pytest.raises(ExportError, match="scaler has 3 features, model has 4"):
        export_logistic(StandardScaler().fit(x[:, :3]), model)
    with pytest.raises(ModelError, match="scale is 0"):
        LogisticScorer(np.zeros(2), np.array([1.0, 0.0]), np.ones(2), 0.0)


# -- .npz files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorers() -> dict[str, IsolationForestScorer | DbscanScorer | LogisticScorer]:
    rng = np.random.default_rng(21)
    train = _blobs_with_outliers(rng, 500, 6)
    y = (train[:, 0] + rng.normal(size=500) > 0).astype(int)
    scaler = StandardScaler().fit(train)
    return {
        "iforest": export_isolation_forest(
            IsolationForest(n_estimators=30, max_features=0.5, contamination=0.1,
                            random_state=0).fit(train)
        ),
        "dbscan": export_dbscan(DBSCAN(eps=1.5, min_samples=5).fit(train), train),
        "logistic": export_logistic(scaler,
                                    LogisticRegression().fit(scaler.transform(train), y)),
    }


SCORER_CLASSES: dict[str, type[IsolationForestScorer | DbscanScorer | LogisticScorer]] = {
    "iforest": IsolationForestScorer,
    "dbscan": DbscanScorer,
    "logistic": LogisticScorer,
}


@pytest.mark.parametrize("name", sorted(SCORER_CLASSES))
def test_save_load_round_trip(name: str, scorers: dict, tmp_path: Path) -> None:
    scorer = scorers[name]
    path = tmp_path / f"{name}.npz"
    scorer.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    with np.load(path, allow_pickle=False) as npz:  # a plain archive, no pickle inside
        assert str(npz[FORMAT_KEY]).startswith("vigil.")
        contents = {k: npz[k] for k in npz.files}
    assert all(a.dtype.kind != "O" for a in contents.values())
    loaded = SCORER_CLASSES[name].load(path)
    for key, value in scorer.to_arrays().items():
        np.testing.assert_array_equal(loaded.to_arrays()[key], value)
    x = np.random.default_rng(1).normal(size=(40, 6)) * 3
    assert loaded.score(x).tolist() == scorer.score(x).tolist()
    scorer.save(path)  # overwriting an existing file is the same atomic replace
    assert SCORER_CLASSES[name].load(path).score(x).tolist() == scorer.score(x).tolist()


def _iforest_file(scorers: dict, tmp_path: Path) -> Path:
    path = tmp_path / "iforest.npz"
    scorers["iforest"].save(path)
    return path


def test_truncated_file_refused(scorers: dict, tmp_path: Path) -> None:
    path = _iforest_file(scorers, tmp_path)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 30):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=r"iforest\.npz.*(truncated|garbled|not a numpy)"):
            IsolationForestScorer.load(path)


def test_tampered_bytes_refused(scorers: dict, tmp_path: Path) -> None:
    path = _iforest_file(scorers, tmp_path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("threshold.npy")
    # Flip a byte inside the stored threshold data (after the local header and .npy header).
    position = info.header_offset + 30 + len(info.filename) + 200
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"iforest\.npz: array 'threshold' is truncated or "
                                             r"corrupt.*CRC"):
        IsolationForestScorer.load(path)


def test_object_array_refused(scorers: dict, tmp_path: Path) -> None:
    arrays = scorers["logistic"].to_arrays()
    path = tmp_path / "evil.npz"
    np.savez(path, vigil_format=np.array("vigil.logistic/1"),
             **{**arrays, "coef": np.array([{"__reduce__": "os.system"}], dtype=object)})
    with pytest.raises(ModelFileError, match=r"evil\.npz: array 'coef' is an object array"):
        LogisticScorer.load(path)
    with pytest.raises(ModelFileError, match="object and structured arrays"):
        save_arrays(tmp_path / "x.npz", coef=np.array([None], dtype=object))
    assert not (tmp_path / "x.npz").exists()


def test_missing_wrong_dtype_wrong_ndim_refused(scorers: dict, tmp_path: Path) -> None:
    good = scorers["iforest"].to_arrays()
    fmt = np.array("vigil.isolation_forest/1")
    path = tmp_path / "m.npz"
    save_arrays(path, vigil_format=fmt, **{k: v for k, v in good.items() if k != "threshold"})
    with pytest.raises(ModelFileError, match=r"m\.npz: missing array\(s\) threshold"):
        IsolationForestScorer.load(path)
    save_arrays(path, vigil_format=fmt, **{**good, "threshold": good["feature"]})
    with pytest.raises(ModelFileError, match="'threshold' has dtype int64, expected kind 'f'"):
        IsolationForestScorer.load(path)
    save_arrays(path, vigil_format=fmt, **{**good, "offset": np.array([0.5])})
    with pytest.raises(ModelFileError, match=r"'offset' has 1 dimension\(s\).*expected 0"):
        IsolationForestScorer.load(path)
    left = good["children_left"].copy()
    left[0, 0] = 10**6
    save_arrays(path, vigil_format=fmt, **{**good, "children_left": left})
    with pytest.raises(ModelFileError, match=r"m\.npz: isolation forest: children_left\[0, 0\]"):
        IsolationForestScorer.load(path)


def test_wrong_kind_of_file_refused(scorers: dict, tmp_path: Path) -> None:
    dbscan_path = tmp_path / "dbscan.npz"
    scorers["dbscan"].save(dbscan_path)
    with pytest.raises(ModelFileError, match=r"holds a 'vigil\.dbscan_core/1' model, "
                                             r"expected 'vigil\.isolation_forest/1'"):
        IsolationForestScorer.load(dbscan_path)
    with pytest.raises(ModelFileError, match="model file not found"):
        DbscanScorer.load(tmp_path / "absent.npz")
    pickled = tmp_path / "model.npz"
    pickled.write_bytes(b"\x80\x04\x95" + os.urandom(64))  # a pickle, as joblib would write
    with pytest.raises(ModelFileError, match=r"not a numpy \.npz archive"):
        LogisticScorer.load(pickled)
    npy = tmp_path / "plain.npz"
    with npy.open("wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(ModelFileError, match=r"single \.npy array"):
        load_arrays(npy, {"x": ("f", 1)})


# -- the device side needs no sklearn -------------------------------------------------------

_DEVICE_PROBE = """
import json, sys
for name in ("sklearn", "scipy", "pandas", "tensorflow", "joblib", "training"):
    sys.modules[name] = None  # any import of these now raises ImportError
import numpy as np
from models.dbscan import DbscanScorer
from models.iforest import IsolationForestScorer
from models.logistic import LogisticScorer

folder = sys.argv[1]
x = np.load(folder + "/x.npy", allow_pickle=False)
result = {}
for name, cls in (("iforest", IsolationForestScorer), ("dbscan", DbscanScorer),
                  ("logistic", LogisticScorer)):
    scorer = cls.load(folder + "/" + name + ".npz")
    result[name] = {"batch": scorer.score(x).tolist(),
                    "stream": [scorer.update(row) for row in x]}
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("sklearn", "scipy", "pandas", "tensorflow", "joblib")
               and sys.modules[m] is not None)
print(json.dumps({"scores": result, "heavy": heavy}))
"""


def test_device_loads_and_scores_without_sklearn(scorers: dict, tmp_path: Path) -> None:
    x = np.random.default_rng(8).normal(size=(25, 6)) * 3
    np.save(tmp_path / "x.npy", x)
    for name, scorer in scorers.items():
        scorer.save(tmp_path / f"{name}.npz")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _DEVICE_PROBE, str(tmp_path)], cwd=tmp_path,
                         capture_output=True, text=True, check=False, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    for name, scorer in scorers.items():
        expected = scorer.score(x)
        np.testing.assert_array_equal(report["scores"][name]["batch"], expected)
        np.testing.assert_allclose(report["scores"][name]["stream"], expected, rtol=0,
                                   atol=STREAM_ATOL)


def test_isolation_forest_scores_a_one_row_batch() -> None:
    """A batch of one row (one bed, one tick) goes through the single-row workspace."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5))
    forest = IsolationForest(n_estimators=10, random_state=0).fit(x)
    scorer = export_isolation_forest(forest)
    for row in x[:5]:
        one = scorer.score_samples(row[np.newaxis, :])
        assert one.shape == (1,)
        np.testing.assert_allclose(one, forest.score_samples(row[np.newaxis, :]), rtol=0, atol=1e-9)
        assert abs(one[0] - scorer.update(row)) <= 1e-12  # streaming sums in another order
