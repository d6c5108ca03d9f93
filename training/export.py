"""Fitted scikit-learn models -> the numpy scorers in `models` (the device side).

This is the only place that knows sklearn's fitted attributes. Each function reads them, checks
that the configuration is one the scorer reproduces exactly, and returns a scorer; call its
``save(path)`` to write the ``.npz`` the device loads. Configurations a scorer cannot reproduce
are refused with `ExportError` saying why and what to change, never approximated:

- IsolationForest: any ``n_estimators``, ``max_samples``, ``contamination``, ``bootstrap``; with
  ``max_features < 1.0`` each tree saw a feature subset, and its split features are mapped back
  through ``estimators_features_`` to columns of the full row. Refused: not fitted, feature
  bootstrapping (``bootstrap_features=True``, not an IsolationForest parameter but inherited).
- DBSCAN: Euclidean distance only (``metric="euclidean"``, or Minkowski with p = 2), at least
  one core sample; ``X_train`` must be the data it was fitted on (checked).
- LogisticRegression: binary only (multiclass is a softmax or one-vs-rest over several
  coefficient rows: refused), dense coefficients, with an optional fitted StandardScaler.
- LightGBM (``LGBMClassifier`` or its ``Booster``, read through ``dump_model()``): objective
  ``binary`` (sigmoid 1) or ``multiclass`` (softmax, 3+ classes), numerical splits. Refused:
  not fitted, categorical splits, linear trees, random-forest averaging, other objectives
  (``multiclassova``, ``cross_entropy``, custom, regression/ranking). lightgbm is imported only
  inside `export_lightgbm`: it is a training-only dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.cluster import DBSCAN
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from models.dbscan import DbscanScorer
from models.gbdt import MISSING_NAN, MISSING_NONE, MISSING_ZERO, GradientBoostedTrees
from models.iforest import IsolationForestScorer
from models.logistic import LogisticScorer

__all__ = [
    "ExportError",
    "export_dbscan",
    "export_isolation_forest",
    "export_lightgbm",
    "export_logistic",
]

_TREE_LEAF = -1
_UNDEFINED = -2


class ExportError(ValueError):
    """A fitted model cannot be exported exactly; the message says why and what to change."""


def _require_fitted(model: Any, attribute: str, kind: str) -> None:
    if not hasattr(model, attribute):
        raise ExportError(f"{kind} is not fitted (no {attribute}); call fit() first")


def export_isolation_forest(model: IsolationForest) -> IsolationForestScorer:
    """Pack every tree of a fitted IsolationForest into padded arrays; returns the scorer.

    Split features are stored as column indices of the full input row: when sklearn trained a
    tree on a feature subset (``max_features < 1.0``), ``estimators_features_[i]`` maps the
    tree's column j back to the original column, exactly as sklearn does when it scores.
    """
    if not isinstance(model, IsolationForest):
        raise ExportError(f"expected a fitted IsolationForest, got {type(model).__name__}")
    _require_fitted(model, "estimators_", "IsolationForest")
    if getattr(model, "bootstrap_features", False):
        raise ExportError("IsolationForest with bootstrap_features=True is not supported")
    n_features = int(model.n_features_in_)
    trees = [estimator.tree_ for estimator in model.estimators_]
    n_trees = len(trees)
    max_nodes = max(int(tree.node_count) for tree in trees)
    left = np.full((n_trees, max_nodes), _TREE_LEAF, dtype=np.int64)
    right = np.full((n_trees, max_nodes), _TREE_LEAF, dtype=np.int64)
    feature = np.full((n_trees, max_nodes), _UNDEFINED, dtype=np.int64)
    threshold = np.full((n_trees, max_nodes), float(_UNDEFINED), dtype=np.float64)
    n_node_samples = np.zeros((n_trees, max_nodes), dtype=np.int64)
    missing_left = np.zeros((n_trees, max_nodes), dtype=np.bool_)
    for i, (tree, columns) in enumerate(zip(trees, model.estimators_features_, strict=True)):
        n = int(tree.node_count)
        left[i, :n] = tree.children_left
        right[i, :n] = tree.children_right
        tree_feature = np.asarray(tree.feature, dtype=np.int64)
        split = tree_feature >= 0
        # sklearn indexes X[:, features] only when a tree saw fewer than all columns
        # (`_max_features != n_features`); otherwise estimators_features_ is not applied.
        columns_a = np.asarray(columns, dtype=np.int64)
        if columns_a.size != n_features:
            tree_feature = tree_feature.copy()
            tree_feature[split] = columns_a[tree_feature[split]]
        feature[i, :n] = tree_feature
        threshold[i, :n] = tree.threshold
        n_node_samples[i, :n] = tree.n_node_samples
        missing = getattr(tree, "missing_go_to_left", None)
        if missing is not None:
            missing_left[i, :n] = np.asarray(missing).astype(np.bool_)
    # `_max_samples` is what sklearn normalises by (`_compute_score_samples`); it equals the
    # public `max_samples_` in every configuration we know, but read the one it uses.
    max_samples = int(getattr(model, "_max_samples", model.max_samples_))
    return IsolationForestScorer(
        children_left=left,
        children_right=right,
        feature=feature,
        threshold=threshold,
        n_node_samples=n_node_samples,
        missing_go_to_left=missing_left,
        max_samples=max_samples,
        offset=float(model.offset_),
        n_features=n_features,
    )


def _is_euclidean(model: DBSCAN) -> bool:
    metric = model.metric
    if metric in ("euclidean", "l2"):
        return True
    if metric == "minkowski":
        p = model.p if model.p is not None else 2
        params = model.metric_params or {}
        return float(params.get("p", p)) == 2.0 and set(params) <= {"p"}
    return False


def export_dbscan(model: DBSCAN, X_train: npt.ArrayLike) -> DbscanScorer:  # noqa: N803
    """Core samples ``X_train[core_sample_indices_]`` and ``eps`` of a fitted DBSCAN.

    ``X_train`` must be the data the model was fitted on, in the same units; it is checked
    against ``components_`` (sklearn's copy of the core rows) so a mismatched array is caught.
    """
    if not isinstance(model, DBSCAN):
        raise ExportError(f"expected a fitted DBSCAN, got {type(model).__name__}")
    _require_fitted(model, "core_sample_indices_", "DBSCAN")
    if not _is_euclidean(model):
        raise ExportError(
            f"DBSCAN metric {model.metric!r} (p={model.p}) is not supported: the device scorer "
            "searches Euclidean distance; refit with metric='euclidean'"
        )
    data = np.asarray(X_train, dtype=np.float64)
    n_fitted = len(model.labels_)
    if data.ndim != 2 or data.shape[0] != n_fitted:
        raise ExportError(
            f"X_train has shape {data.shape}, but the DBSCAN was fitted on {n_fitted} rows"
        )
    indices = np.asarray(model.core_sample_indices_, dtype=np.intp)
    if indices.size == 0:
        raise ExportError(
            "DBSCAN found no core samples (every training row is noise), so every new point "
            "would be an outlier; lower min_samples or raise eps"
        )
    core = data[indices]
    components = np.asarray(model.components_, dtype=np.float64)
    if components.shape != core.shape or not np.array_equal(components, core):
        raise ExportError("X_train is not the data this DBSCAN was fitted on (core rows differ)")
    return DbscanScorer(core, float(model.eps))


def export_logistic(
    scaler: StandardScaler | None, model: LogisticRegression
) -> LogisticScorer:
    """Scaler statistics and binary logistic coefficients; returns the scorer.

    ``scaler`` may be None when the model was fitted on unscaled features. The scorer's
    probability is P(``model.classes_[1]``).
    """
    if not isinstance(model, LogisticRegression):
        raise ExportError(f"expected a fitted LogisticRegression, got {type(model).__name__}")
    _require_fitted(model, "coef_", "LogisticRegression")
    n_classes = len(model.classes_)
    if n_classes != 2:
        raise ExportError(
            f"LogisticRegression has {n_classes} classes; only binary models are supported "
            "(the device scores one risk probability). Train one binary model per risk."
        )
    coef = model.coef_
    if not isinstance(coef, np.ndarray):
        raise ExportError("sparse coefficients (after sparsify()) are not supported; densify()")
    coef = np.asarray(coef, dtype=np.float64)
    if coef.shape[0] != 1:
        raise ExportError(f"binary LogisticRegression with coef_ of shape {coef.shape}")
    n_features = coef.shape[1]
    intercept = float(np.asarray(model.intercept_, dtype=np.float64).reshape(-1)[0])
    if scaler is None:
        mean = np.zeros(n_features)
        scale = np.ones(n_features)
    else:
        if not isinstance(scaler, StandardScaler):
            raise ExportError(f"expected a fitted StandardScaler, got {type(scaler).__name__}")
        _require_fitted(scaler, "n_features_in_", "StandardScaler")
        if scaler.n_features_in_ != n_features:
            raise ExportError(
                f"scaler has {scaler.n_features_in_} features, model has {n_features}"
            )
        mean = (
            np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean
            else np.zeros(n_features)
        )
        scale = (
            np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std
            else np.ones(n_features)
        )
    return LogisticScorer(mean, scale, coef[0], intercept)


_LIGHTGBM_MISSING = {"None": MISSING_NONE, "Zero": MISSING_ZERO, "NaN": MISSING_NAN}


def _lightgbm_booster(model: Any) -> Any:
    import lightgbm as lgb  # noqa: PLC0415 - training-only dependency

    if isinstance(model, lgb.Booster):
        return model
    if isinstance(model, lgb.LGBMClassifier):
        try:
            return model.booster_
        except (AttributeError, lgb.compat.LGBMNotFittedError) as exc:
            raise ExportError("LGBMClassifier is not fitted (no booster_); call fit() first") \
                from exc
    raise ExportError(
        f"expected a fitted lightgbm.LGBMClassifier or Booster, got {type(model).__name__}"
    )


def _lightgbm_classes(dump: Mapping[str, Any]) -> int:
    """Number of classes from the dump's objective, refusing what the scorer cannot do."""
    objective = str(dump.get("objective", ""))
    name, *params = objective.split()
    options = dict(p.split(":", 1) for p in params if ":" in p)
    if name == "binary":
        sigmoid = float(options.get("sigmoid", "1"))
        if sigmoid != 1.0:
            raise ExportError(
                f"binary objective with sigmoid:{sigmoid} is not supported (the device applies "
                "1 / (1 + exp(-raw))); train with the default sigmoid=1.0"
            )
        return 2
    if name == "multiclass":
        n_classes = int(dump["num_class"])
        if n_classes < 3:
            raise ExportError(
                f"multiclass objective with {n_classes} classes is not supported; train a "
                "binary objective for two classes (LGBMClassifier does)"
            )
        return n_classes
    raise ExportError(
        f"objective {objective or '(none)'!r} is not supported: only 'binary' and "
        "'multiclass' (softmax) classifiers are exported"
    )


class _TreePacker:
    """Flattens one dumped LightGBM tree (nested dicts) into pre-order node rows."""

    def __init__(self, tree_index: int) -> None:
        self.tree_index = tree_index
        self.rows: list[tuple[int, int, int, float, bool, int, float]] = []

    def add(self, node: Mapping[str, Any]) -> int:
        """Append ``node`` and its subtree; returns its index (children come after it)."""
        index = len(self.rows)
        if "leaf_value" in node or "split_feature" not in node:
            if "leaf_coeff" in node or "leaf_const" in node:
                raise ExportError("linear trees (linear_tree=True) are not supported")
            self.rows.append((_TREE_LEAF, _TREE_LEAF, _UNDEFINED, 0.0, False, MISSING_NONE,
                              float(node["leaf_value"])))
            return index
        decision = node.get("decision_type")
        if decision != "<=":
            raise ExportError(
                f"tree {self.tree_index}: split with decision_type {decision!r} (categorical) "
                "is not supported; pass categorical features as numbers or one-hot columns"
            )
        missing = _LIGHTGBM_MISSING.get(str(node.get("missing_type")))
        if missing is None:
            raise ExportError(
                f"tree {self.tree_index}: unknown missing_type {node.get('missing_type')!r}"
            )
        self.rows.append((_TREE_LEAF, _TREE_LEAF, int(node["split_feature"]),
                          float(node["threshold"]), bool(node["default_left"]), missing, 0.0))
        left = self.add(node["left_child"])
        right = self.add(node["right_child"])
        self.rows[index] = (left, right, *self.rows[index][2:])
        return index


def export_lightgbm(model: Any) -> GradientBoostedTrees:
    """Pack every tree of a fitted LightGBM classifier into padded arrays; returns the scorer.

    ``model`` is a fitted ``lightgbm.LGBMClassifier`` or ``lightgbm.Booster``. The trees are
    those ``predict_proba`` uses (``dump_model()`` and ``predict`` both stop at
    ``best_iteration`` after early stopping). Columns of the scorer's ``predict_proba`` are
    LightGBM's class indices, i.e. ``LGBMClassifier.classes_`` in order.
    """
    booster = _lightgbm_booster(model)
    dump = booster.dump_model()
    n_classes = _lightgbm_classes(dump)
    if dump.get("average_output"):
        raise ExportError("random-forest boosting (average_output) is not supported")
    if dump.get("is_linear") or dump.get("linear_tree"):
        raise ExportError("linear trees (linear_tree=True) are not supported")
    tree_info = dump.get("tree_info") or []
    if not tree_info:
        raise ExportError("LightGBM model has no trees; call fit() first")
    packed = []
    for i, tree in enumerate(tree_info):
        if int(tree.get("num_cat", 0)):
            raise ExportError(
                f"tree {i} has categorical splits; pass categorical features as numbers"
            )
        packer = _TreePacker(i)
        packer.add(tree["tree_structure"])
        packed.append(packer.rows)
    max_nodes = max(len(rows) for rows in packed)
    columns: list[npt.NDArray[Any]] = [
        np.full((len(packed), max_nodes), fill, dtype=dtype)
        for fill, dtype in ((_TREE_LEAF, np.int64), (_TREE_LEAF, np.int64),
                            (_UNDEFINED, np.int64), (0.0, np.float64), (False, np.bool_),
                            (MISSING_NONE, np.int8), (0.0, np.float64))
    ]
    for t, rows in enumerate(packed):
        for k, values in enumerate(zip(*rows, strict=True)):
            columns[k][t, : len(rows)] = values
    left, right, feature, threshold, default_left, missing, leaf_value = columns
    return GradientBoostedTrees(
        children_left=left,
        children_right=right,
        feature=feature,
        threshold=threshold,
        default_left=default_left,
        missing_type=missing,
        leaf_value=leaf_value,
        n_features=int(dump["max_feature_idx"]) + 1,
        n_classes=n_classes,
    )
