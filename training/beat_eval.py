"""Beat classification baselines on leave-records-out folds, and ECG5000 anomaly baselines.

Every model is trained and scored on the same patient-wise folds in the same run
(`training.ecg_data.record_folds`), on the same per-beat features (`models.beats`: the
128-point normalised shape window, its deviation from the running template, 9 RR features and
28 context scalars). Out-of-fold scores of all folds are also pooled. Models (fixed settings,
not tuned on these folds):

- ``lightgbm``: gradient-boosted trees, supervised on the AAMI classes N, S, V, F with
  balanced class weights (V and S are 2 % to 8 % of beats). Scores: abnormal = 1 - P(N),
  V = P(V), S = P(S); decision = the most probable class.
- ``knn``: k-nearest-neighbour vote (k = 15, Euclidean) on standardised features, the block of
  scalars (RR and context, 37 columns) weighted so that it counts as much as the 256 shape and
  deviation points (each scalar column times sqrt(256 / 37)). Scores and decision as for
  LightGBM, from the neighbours' class shares.
- ``knn_dist``: one-class; mean distance to the 5 nearest *normal* training beats (same
  feature scaling). One anomaly score serves every question; no class decision.
- ``iforest``: one-class IsolationForest on the normal training beats (200 trees, 256 samples
  each); score = minus sklearn's ``score_samples``. No class decision.

Metrics, per fold and pooled: AUROC and AUPRC (average precision) of abnormal (S, V, F) vs
normal (N), V vs rest and S vs rest; V sensitivity (Se) and positive predictivity (+P) at the
class decision, +P both strict (every V call that is not a V beat is false) and as ANSI/AAMI
EC57 counts it (``v_ppv_ec57``: WFDB ``bxb``'s VEB +P, where a fusion beat called V is not a
false positive: VFP = Nv + Sv); S Se at the class decision; and the highest S Se at which
+P >= 50 % on the S-score's precision-recall curve. That last threshold is chosen on the test
beats themselves: an upper bound for what a threshold fixed beforehand would give. Q beats are
left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.beats import AAMI_CLASSES, CONTEXT_FEATURE_NAMES, RR_FEATURE_NAMES
from training.ecg_data import BeatDataset, Ecg5000

__all__ = [
    "CLASS_MODELS",
    "MODELS",
    "FoldScores",
    "auroc_auprc",
    "concat_scores",
    "evaluate_ecg5000",
    "evaluate_folds",
    "lightgbm_fit",
    "lightgbm_probs",
    "metrics",
    "s_sensitivity_at_ppv",
    "scores_from_probs",
]

N_CODE: Final = AAMI_CLASSES.index("N")
S_CODE: Final = AAMI_CLASSES.index("S")
V_CODE: Final = AAMI_CLASSES.index("V")
F_CODE: Final = AAMI_CLASSES.index("F")
TRAIN_CLASSES: Final = (N_CODE, S_CODE, V_CODE, F_CODE)
MODELS: Final = ("lightgbm", "knn", "knn_dist", "iforest")
CLASS_MODELS: Final = ("lightgbm", "knn")
"""Models that decide a class (the others only score abnormality)."""
KNN_K: Final = 15
KNN_DIST_K: Final = 5
S_MIN_PPV: Final = 0.5


@dataclass
class FoldScores:
    """Out-of-fold scores of one model: per beat, abnormal/V/S scores and decided class."""

    abnormal: NDArray[np.float64]
    v: NDArray[np.float64]
    s: NDArray[np.float64]
    decision: NDArray[np.int8] | None = None


@dataclass
class _Scaler:
    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    weight: NDArray[np.float64] = field(default_factory=lambda: np.ones(1))

    @classmethod
    def fit(cls, x: NDArray[np.floating[Any]], n_rr: int) -> _Scaler:
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        n_shape = x.shape[1] - n_rr
        weight = np.ones(x.shape[1])
        weight[n_shape:] = math.sqrt(n_shape / n_rr)
        return cls(mean, np.where(std > 0, std, 1.0), weight)

    def __call__(self, x: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        return ((x - self.mean) / self.scale * self.weight).astype(np.float32)


def _class_probs(
    proba: NDArray[np.float64], classes: NDArray[np.integer[Any]]
) -> NDArray[np.float64]:
    """Probabilities as columns of `TRAIN_CLASSES`, zero for a class absent from training."""
    out = np.zeros((proba.shape[0], len(AAMI_CLASSES)))
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


def scores_from_probs(
    p: NDArray[np.floating[Any]], decision: NDArray[np.int8] | None = None
) -> FoldScores:
    """Scores of class probabilities (columns in `AAMI_CLASSES` order, N S V F at least):
    abnormal = 1 - P(N), V = P(V), S = P(S); ``decision`` (AAMI codes) defaults to the most
    probable class."""
    q = np.asarray(p, dtype=np.float64)
    if decision is None:
        decision = np.argmax(q, axis=1).astype(np.int8)
    return FoldScores(1.0 - q[:, N_CODE], q[:, V_CODE], q[:, S_CODE], decision)


N_TREE_CLASSES: Final = len(TRAIN_CLASSES)


def lightgbm_fit(
    x: NDArray[np.floating[Any]], y: NDArray[np.integer[Any]], *, seed: int, n_jobs: int
) -> Any:
    """A ``lightgbm.Booster`` with the settings of the module docstring, fitted on the rows of
    ``x`` whose AAMI code ``y`` is N, S, V or F (Q beats and non-beats are left out), multiclass
    over those four whether or not each occurs (a class with no training beat just gets a low
    score): the baseline here and the tree half of the shipped beat model
    (`training.beat_bundle`). Balanced class weights as scikit-learn computes them: n / (k n_c)
    over the k classes present."""
    import lightgbm as lgb  # noqa: PLC0415 - training-only dependency

    codes = np.asarray(y, dtype=np.int64)
    keep = np.isin(codes, TRAIN_CLASSES)
    labels = codes[keep]
    if labels.size == 0:
        raise ValueError("no N, S, V or F beat to fit")
    counts = np.bincount(labels, minlength=N_TREE_CLASSES)
    present = counts > 0
    weight_of = np.zeros(N_TREE_CLASSES)
    weight_of[present] = labels.size / (int(present.sum()) * counts[present])
    params = {
        "objective": "multiclass",
        "num_class": N_TREE_CLASSES,
        "learning_rate": 0.1,
        "num_leaves": 31,
        "max_bin": 63,
        "force_col_wise": True,
        "feature_fraction": 0.5,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "num_threads": n_jobs,
        "verbose": -1,
    }
    train = lgb.Dataset(np.asarray(x, dtype=np.float64)[keep], labels, weight=weight_of[labels],
                        params={"max_bin": 63, "verbose": -1})
    return lgb.train(params, train, num_boost_round=100)


def lightgbm_probs(
    train: BeatDataset, test: BeatDataset, *, seed: int, n_jobs: int
) -> NDArray[np.float64]:
    """The LightGBM baseline (module docstring) fitted on ``train``'s N, S, V, F beats: (n_test,
    5) class probabilities in `AAMI_CLASSES` order (Q's column 0)."""
    booster = lightgbm_fit(train.features, train.aami, seed=seed, n_jobs=n_jobs)
    proba = np.asarray(booster.predict(np.asarray(test.features, dtype=np.float64)))
    return _class_probs(proba, np.arange(N_TREE_CLASSES))


def _one_class(score: NDArray[np.float64]) -> FoldScores:
    return FoldScores(score, score, score, None)


def _fit_score_fold(
    train: BeatDataset, test: BeatDataset, *, seed: int, n_jobs: int
) -> dict[str, FoldScores]:
    from sklearn.ensemble import IsolationForest  # noqa: PLC0415 - training-only dependencies
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors  # noqa: PLC0415

    x_tr, y_tr = train.features, train.aami.astype(np.int64)
    x_te = test.features
    out: dict[str, FoldScores] = {}

    out["lightgbm"] = scores_from_probs(lightgbm_probs(train, test, seed=seed, n_jobs=n_jobs))

    scaler = _Scaler.fit(x_tr, len(RR_FEATURE_NAMES) + len(CONTEXT_FEATURE_NAMES))
    z_tr, z_te = scaler(x_tr), scaler(x_te)
    knn = KNeighborsClassifier(n_neighbors=KNN_K, algorithm="brute", n_jobs=n_jobs)
    knn.fit(z_tr, y_tr)
    out["knn"] = scores_from_probs(_class_probs(knn.predict_proba(z_te), knn.classes_))

    normal = y_tr == N_CODE
    nn = NearestNeighbors(n_neighbors=KNN_DIST_K, algorithm="brute", n_jobs=n_jobs)
    nn.fit(z_tr[normal])
    dist, _ = nn.kneighbors(z_te)
    out["knn_dist"] = _one_class(dist.mean(axis=1).astype(np.float64))

    iforest = IsolationForest(n_estimators=200, max_samples=256, random_state=seed, n_jobs=n_jobs)
    iforest.fit(x_tr[normal])
    out["iforest"] = _one_class(-iforest.score_samples(x_te).astype(np.float64))
    return out


def s_sensitivity_at_ppv(
    y: NDArray[np.bool_], score: NDArray[np.float64], min_ppv: float = S_MIN_PPV
) -> float:
    """Highest sensitivity over thresholds of ``score`` with positive predictivity >= min_ppv.

    0 when no threshold reaches it; NaN without positives. The threshold is an oracle's
    (chosen on these very beats).
    """
    from sklearn.metrics import precision_recall_curve  # noqa: PLC0415

    if not np.any(y):
        return math.nan
    precision, recall, _ = precision_recall_curve(y, score)
    ok = precision >= min_ppv
    return float(np.max(recall[ok])) if np.any(ok) else 0.0


def auroc_auprc(y: NDArray[np.bool_], score: NDArray[np.float64]) -> tuple[float, float]:
    """AUROC and AUPRC (average precision) of ``score`` for ``y``; NaN when one class only."""
    from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: PLC0415

    if np.all(y) or not np.any(y):
        return math.nan, math.nan
    return float(roc_auc_score(y, score)), float(average_precision_score(y, score))


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def metrics(aami: NDArray[np.int8], scores: FoldScores) -> dict[str, float]:
    """The figures of the module docstring for one set of beats (a fold or the pool)."""
    normal_or_abnormal = np.isin(aami, TRAIN_CLASSES)
    abnormal = np.isin(aami, (S_CODE, V_CODE, F_CODE))
    is_v, is_s = aami == V_CODE, aami == S_CODE
    m = normal_or_abnormal
    out: dict[str, float] = {}
    out["auroc_abnormal"], out["auprc_abnormal"] = auroc_auprc(abnormal[m], scores.abnormal[m])
    out["auroc_v"], out["auprc_v"] = auroc_auprc(is_v[m], scores.v[m])
    out["auroc_s"], out["auprc_s"] = auroc_auprc(is_s[m], scores.s[m])
    out["s_se_at_ppv50"] = s_sensitivity_at_ppv(is_s[m], scores.s[m])
    if scores.decision is not None:
        d = scores.decision
        v_tp = int(np.sum(is_v & (d == V_CODE)))
        out["v_se"] = _ratio(v_tp, int(np.sum(is_v)))
        out["v_ppv"] = _ratio(v_tp, int(np.sum(d == V_CODE)))
        # EC57 (bxb's VEB +P): false V calls are N and S beats called V, not F beats.
        v_fp = int(np.sum(np.isin(aami, (N_CODE, S_CODE)) & (d == V_CODE)))
        out["v_ppv_ec57"] = _ratio(v_tp, v_tp + v_fp)
        out["s_se"] = _ratio(int(np.sum(is_s & (d == S_CODE))), int(np.sum(is_s)))
        out["s_ppv"] = _ratio(int(np.sum(is_s & (d == S_CODE))), int(np.sum(d == S_CODE)))
    return out


def concat_scores(parts: Sequence[FoldScores]) -> FoldScores:
    """The scores of several folds, one after another (decisions only if every part has)."""
    decisions = [p.decision for p in parts]
    return FoldScores(
        np.concatenate([p.abnormal for p in parts]),
        np.concatenate([p.v for p in parts]),
        np.concatenate([p.s for p in parts]),
        None if any(d is None for d in decisions) else np.concatenate(decisions),  # type: ignore[arg-type]
    )


def evaluate_folds(
    data: BeatDataset,
    folds: Sequence[Sequence[str]],
    *,
    seed: int = 0,
    n_jobs: int = 2,
) -> dict[str, Any]:
    """Train every model on all folds but one, score the held-out one; per fold and pooled.

    Returns a JSON-ready dict: ``folds`` (records, beat counts per class, metrics per model)
    and ``pooled`` (the same over all out-of-fold beats).
    """
    all_records = [r for f in folds for r in f]
    if len(set(all_records)) != len(all_records):
        raise ValueError("a record appears in two folds")
    per_model: dict[str, list[FoldScores]] = {m: [] for m in MODELS}
    labels = []
    fold_reports = []
    for i, test_records in enumerate(folds):
        train_records = [r for j, f in enumerate(folds) if j != i for r in f]
        train, test = data.subset(train_records), data.subset(test_records)
        train = _drop_q(train)
        test = _drop_q(test)
        scored = _fit_score_fold(train, test, seed=seed + i, n_jobs=n_jobs)
        fold_reports.append(
            {
                "fold": i,
                "test_records": list(test_records),
                "train_beats": int(train.aami.size),
                "test_counts": test.counts(),
                "metrics": {m: metrics(test.aami, scored[m]) for m in MODELS},
            }
        )
        labels.append(test.aami)
        for m in MODELS:
            per_model[m].append(scored[m])
    pooled_labels = np.concatenate(labels)
    pooled = {
        "records": len(all_records),
        "counts": {c: int(np.sum(pooled_labels == k)) for k, c in enumerate(AAMI_CLASSES)},
        "metrics": {m: metrics(pooled_labels, concat_scores(per_model[m])) for m in MODELS},
    }
    return {"models": list(MODELS), "folds": fold_reports, "pooled": pooled}


def _drop_q(data: BeatDataset) -> BeatDataset:
    keep = np.isin(data.aami, TRAIN_CLASSES)
    return BeatDataset(
        data.features[keep], data.aami[keep], data.record[keep], data.r_samples[keep]
    )


def evaluate_ecg5000(
    ecg: Ecg5000, *, seed: int = 0, n_jobs: int = 2
) -> dict[str, Mapping[str, float]]:
    """Test-split AUROC/AUPRC of one-class scores trained on the training split's normals.

    kNN distance (nearest normal, and mean of the 5 nearest; Euclidean on the given
    z-normalised beats) and IsolationForest (200 trees).
    """
    from sklearn.ensemble import IsolationForest  # noqa: PLC0415
    from sklearn.neighbors import NearestNeighbors  # noqa: PLC0415

    normals = ecg.train_x[~Ecg5000.abnormal(ecg.train_y)]
    y = Ecg5000.abnormal(ecg.test_y)
    nn = NearestNeighbors(n_neighbors=KNN_DIST_K, algorithm="brute", n_jobs=n_jobs)
    nn.fit(normals)
    dist, _ = nn.kneighbors(ecg.test_x)
    iforest = IsolationForest(n_estimators=200, random_state=seed, n_jobs=n_jobs)
    iforest.fit(normals)
    scores = {
        "knn_dist_k1": dist[:, 0].astype(np.float64),
        "knn_dist_k5": dist.mean(axis=1).astype(np.float64),
        "iforest": -iforest.score_samples(ecg.test_x).astype(np.float64),
    }
    out: dict[str, Mapping[str, float]] = {}
    for name, score in scores.items():
        auroc, auprc = auroc_auprc(y, score)
        out[name] = {
            "auroc": auroc,
            "auprc": auprc,
            "train_normals": float(normals.shape[0]),
            "test_beats": float(y.size),
            "test_abnormal": float(np.sum(y)),
        }
    return out
