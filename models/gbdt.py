"""LightGBM gradient-boosted tree classifiers scored in numpy, equal to LightGBM's predict_proba.

Why: the device has numpy and the TFLite runtime only, no lightgbm (a C++ library with OpenMP
that we do not ship to a bedside Pi). `training.export.export_lightgbm` turns a fitted
``lightgbm.LGBMClassifier`` (or its ``Booster``) into the arrays below; this module scores them.

What LightGBM 4.x computes (``Tree::NumericalDecision``, ``GBDT::PredictRaw``, the binary and
multiclass objectives' ``ConvertOutput``, and the C API's dense-matrix row reader), and this
module reproduces:

- Input: a float64 matrix is read as is, any other dtype as float32 (the Python package's
  ``_np2d_to_np1d``), then widened to double; all comparisons are in double. The row reader
  keeps only values with ``|x| > kZeroThreshold`` or NaN: every value in
  ``[-kZeroThreshold, kZeroThreshold]`` reaches the trees as exactly 0.0. ``kZeroThreshold``
  is ``1e-35f``, a float literal widened to double (`ZERO_THRESHOLD`, 1.0000000180e-35).
- Each split is numerical, decision_type ``"<="``, with a ``missing_type`` and
  ``default_left``. Missing type None: NaN becomes 0.0, then ``x <= threshold`` goes left.
  Zero: NaN becomes 0.0; a value in ``[-kZeroThreshold, kZeroThreshold]`` (so 0.0 and NaN) goes
  to the default side, others compare. NaN: NaN goes to the default side, others (0.0
  included) compare. Categorical splits are refused at export.
- Raw score: tree ``t`` belongs to class ``t % trees_per_iteration`` (1 tree per iteration for
  binary, ``n_classes`` for multiclass); each class sums its trees' leaf values in tree order,
  starting from 0.0 (LightGBM folds ``boost_from_average`` into the first trees' leaves).
- Binary (``n_classes == 2``, objective ``binary``, sigmoid 1): ``p1 = 1 / (1 + exp(-raw))``,
  ``p0 = 1 - p1``. Multiclass (objective ``multiclass``, softmax): ``exp(raw - max)`` divided by
  its sum over classes taken in class order.

Equality: the leaf values, thresholds, summation order and transforms are LightGBM's, so the
probabilities agree to the last few ulp; the stated tolerance (and the one tested against
LightGBM's own ``predict_proba``) is 1e-12 absolute. `raw_score` is (n_rows, n_classes):
the class margins for multiclass, ``[0, raw]`` for binary, so that a softmax of any row gives
`predict_proba` in both cases.

Layout: T trees padded to M nodes each, in pre-order (children after their parent), padding
is leaves nothing points to. Per node: ``children_left`` / ``children_right`` (-1 at a leaf),
``feature``, ``threshold``, ``default_left``, ``missing_type`` (0 None, 1 Zero, 2 NaN, as
LightGBM's ``MissingType``) and ``leaf_value`` (used at leaves only). The walk is
`models.trees`, shared with `models.iforest`: every rule above becomes "``x > threshold`` goes
right, NaN goes to the node's NaN side" by preparing the input row once per call. Values in the
zero band become 0.0; if any split has missing type Zero, the row is followed by a copy of
itself with the zero band (and NaN) as NaN, which those splits read. NaN then goes to the
default side at Zero and NaN splits, and to ``0.0 > threshold`` at None splits. No Python loop
over trees or rows; buffers are kept per batch size, so a tick allocates only its result.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from models.npz import ArraySpec, NpzModel
from models.tflite import ModelError
from models.trees import (
    TREE_LEAF,
    BufferCache,
    TraversalBuffers,
    TreeTables,
    check_batch,
    check_nodes,
    chunks,
    has_nan,
    walk,
)

__all__ = [
    "FORMAT",
    "MISSING_NAN",
    "MISSING_NONE",
    "MISSING_ZERO",
    "ZERO_THRESHOLD",
    "GradientBoostedTrees",
]

FORMAT: Final = "vigil.gbdt/1"
"""Written into every file (`models.npz.FORMAT_KEY`); bump when the layout changes."""

ZERO_THRESHOLD: Final = float(np.float32(1e-35))
"""LightGBM's ``kZeroThreshold``: ``const double kZeroThreshold = 1e-35f`` (float, widened)."""

MISSING_NONE: Final = 0
MISSING_ZERO: Final = 1
MISSING_NAN: Final = 2

_REQUIRED: Final[dict[str, ArraySpec]] = {
    "children_left": ("i", 2),
    "children_right": ("i", 2),
    "feature": ("i", 2),
    "threshold": ("f", 2),
    "default_left": ("bu", 2),
    "missing_type": ("iu", 2),
    "leaf_value": ("f", 2),
    "n_features": ("iu", 0),
    "n_classes": ("iu", 0),
}

FloatArray = npt.NDArray[np.float64]


_NAME: Final = "gradient-boosted trees"
"""Prefix of this scorer's ModelError messages."""


def _model_error(message: str) -> ModelError:
    return ModelError(f"{_NAME}: {message}")


class _Workspace(TraversalBuffers):
    """`models.trees.TraversalBuffers` plus the prepared input and the per-tree leaf values."""

    __slots__ = ("acc", "leaf", "small", "x", "x32")

    def __init__(
        self, root_state: npt.NDArray[np.intp], rows: int, n_features: int, n_columns: int,
        trees_per_iteration: int,
    ) -> None:
        super().__init__(root_state, rows, n_columns)
        n_trees = root_state.shape[0]
        self.x32 = np.empty((rows, n_features), dtype=np.float32)
        self.x = np.empty((rows, n_columns), dtype=np.float64)
        self.small = np.empty((rows, n_features), dtype=np.bool_)
        self.leaf = np.empty(self.state.shape, dtype=np.float64)
        # Running sums over iterations, (iterations, trees_per_iteration, rows).
        self.acc: FloatArray = np.empty(
            (n_trees // trees_per_iteration, trees_per_iteration, rows), dtype=np.float64
        )


class GradientBoostedTrees(NpzModel):
    """A fitted LightGBM classifier as padded node arrays; ``predict_proba`` without lightgbm.

    Build with `training.export.export_lightgbm` (or `from_arrays` / `load`). Methods take
    (n_rows, n_features) and return new (n_rows, n_classes) float64 arrays; one row is as
    cheap as the walk allows (1-D buffers kept for it). Calls are serialized by a lock because
    the buffers are shared.
    """

    model_format: ClassVar[str] = FORMAT
    required_arrays: ClassVar[Mapping[str, ArraySpec]] = _REQUIRED
    model_name: ClassVar[str] = _NAME

    def __init__(
        self,
        *,
        children_left: npt.ArrayLike,
        children_right: npt.ArrayLike,
        feature: npt.ArrayLike,
        threshold: npt.ArrayLike,
        default_left: npt.ArrayLike,
        missing_type: npt.ArrayLike,
        leaf_value: npt.ArrayLike,
        n_features: int,
        n_classes: int,
    ) -> None:
        """Validate the arrays and build the traversal tables.

        Raises ModelError if shapes disagree, a child index is out of range or not after its
        parent, a split feature is outside ``[0, n_features)``, a split threshold is NaN, a
        missing type is not 0/1/2, a leaf value is not finite, ``n_classes < 2``, or the number
        of trees is not a multiple of the trees per iteration (1 binary, n_classes otherwise).
        """
        left = np.array(children_left, dtype=np.int64)
        right = np.array(children_right, dtype=np.int64)
        feat = np.array(feature, dtype=np.int64)
        thr = np.array(threshold, dtype=np.float64)
        dleft = np.array(default_left).astype(np.bool_)
        miss = np.array(missing_type, dtype=np.int64)
        leaves = np.array(leaf_value, dtype=np.float64)
        self._n_features = int(n_features)
        self._n_classes = int(n_classes)
        self._per_iteration = 1 if self._n_classes == 2 else self._n_classes
        self._validate(left, right, feat, thr, dleft, miss, leaves)
        self._left, self._right, self._feature, self._threshold = left, right, feat, thr
        self._default_left, self._missing_type, self._leaf_value = dleft, miss, leaves

        internal = left != TREE_LEAF
        reads_zero_copy = internal & (miss == MISSING_ZERO)
        self._has_zero_splits = bool(reads_zero_copy.any())
        n_columns = 2 * self._n_features if self._has_zero_splits else self._n_features
        column = feat + np.where(reads_zero_copy, self._n_features, 0)
        # NaN side: the default side at Zero and NaN splits; at None splits NaN is read as 0.0.
        nan_right = np.where(miss == MISSING_NONE, thr < 0.0, ~dleft) & internal
        self._tables = TreeTables(left, right, column, thr, nan_right)
        self._state_leaf_value = self._tables.leaf_state(leaves)
        root = self._tables.root_state
        per_iteration, nf = self._per_iteration, self._n_features
        self._lock = threading.Lock()
        self._workspaces: BufferCache[_Workspace] = BufferCache(
            lambda rows: _Workspace(root, rows, nf, n_columns, per_iteration)
        )

    def _validate(  # noqa: PLR0917 - the seven node arrays of one model
        self,
        left: npt.NDArray[np.int64],
        right: npt.NDArray[np.int64],
        feat: npt.NDArray[np.int64],
        thr: FloatArray,
        dleft: npt.NDArray[np.bool_],
        miss: npt.NDArray[np.int64],
        leaves: FloatArray,
    ) -> None:
        check_nodes(left, right, feat, thr,
                    per_node={"default_left": dleft, "missing_type": miss,
                              "leaf_value": leaves},
                    n_features=self._n_features, error=_model_error)
        if self._n_classes < 2:
            raise _model_error(f"n_classes must be >= 2, got {self._n_classes}")
        n_trees = left.shape[0]
        if n_trees % self._per_iteration:
            raise _model_error(
                f"{n_trees} trees is not a multiple of {self._per_iteration} trees per "
                f"iteration ({self._n_classes} classes)"
            )
        internal = left != TREE_LEAF
        bad_missing = internal & ((miss < MISSING_NONE) | (miss > MISSING_NAN))
        if bad_missing.any():
            t, j = np.argwhere(bad_missing)[0]
            raise _model_error(
                f"missing_type[{t}, {j}] = {miss[t, j]}: expected 0 (None), 1 (Zero) or 2 (NaN)"
            )
        if not np.isfinite(leaves[~internal]).all():
            raise _model_error("a leaf value is not finite")

    # -- properties -----------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        """Length of an input row."""
        return self._n_features

    @property
    def n_classes(self) -> int:
        """Number of classes: columns of `predict_proba` and `raw_score`."""
        return self._n_classes

    @property
    def n_trees(self) -> int:
        """Number of trees (iterations x trees per iteration)."""
        return self._tables.n_trees

    @property
    def max_depth(self) -> int:
        """Deepest leaf (root = 0): the number of traversal steps per call."""
        return self._tables.max_depth

    def __repr__(self) -> str:
        """Size of the model, for logs."""
        return (
            f"GradientBoostedTrees(n_trees={self.n_trees}, n_features={self._n_features}, "
            f"n_classes={self._n_classes}, max_depth={self.max_depth})"
        )

    # -- scoring --------------------------------------------------------------------------

    def _class_sums(self, ws: _Workspace, rows_in: npt.NDArray[Any]) -> FloatArray:
        """Raw score per tree-class of ``rows_in``: a (trees_per_iteration, rows) view."""
        nf = self._n_features
        plain = ws.x[:, :nf]
        if rows_in.dtype == np.float64:
            np.copyto(plain, rows_in)
        else:  # LightGBM's Python package hands any other dtype to C as float32
            np.copyto(ws.x32, rows_in, casting="unsafe")
            np.copyto(plain, ws.x32)
        # The C API's row reader drops |x| <= kZeroThreshold: the trees see 0.0.
        np.less_equal(np.abs(plain), ZERO_THRESHOLD, out=ws.small)
        np.copyto(plain, 0.0, where=ws.small)
        if self._has_zero_splits:
            zero_copy = ws.x[:, nf:]
            np.copyto(zero_copy, plain)
            np.copyto(zero_copy, np.nan, where=ws.small)
        x_flat = ws.x.reshape(-1)
        state = walk(self._tables, ws, x_flat, has_nan(x_flat))
        self._state_leaf_value.take(state, None, ws.leaf, "clip")
        # Sequential sums over iterations, as GBDT::PredictRaw adds tree after tree
        # (accumulate never reorders; a 1-D reduce would sum pairwise).
        np.add.accumulate(ws.leaf.reshape(ws.acc.shape), axis=0, out=ws.acc)
        sums: FloatArray = ws.acc[-1]
        return sums

    def _map_rows(self, x: npt.ArrayLike, probabilities: bool) -> FloatArray:
        arr = check_batch(x, self._n_features, _model_error)
        out = np.empty((arr.shape[0], self._n_classes), dtype=np.float64)
        with self._lock:
            for start, stop in chunks(arr.shape[0]):
                sums = self._class_sums(self._workspaces.get(stop - start), arr[start:stop])
                target = out[start:stop]
                if self._per_iteration == 1:
                    raw = sums[0]
                    if probabilities:
                        p1 = target[:, 1]
                        np.negative(raw, out=p1)
                        np.exp(p1, out=p1)
                        p1 += 1.0
                        np.divide(1.0, p1, out=p1)
                        np.subtract(1.0, p1, out=target[:, 0])
                    else:
                        target[:, 0] = 0.0
                        target[:, 1] = raw
                elif probabilities:
                    target[...] = _softmax(sums).T
                else:
                    target[...] = sums.T
        return out

    def raw_score(self, x: npt.ArrayLike) -> FloatArray:
        """(n_rows, n_classes) margins: per class the sum of its trees' leaf values for
        multiclass; ``[0, raw]`` for binary (LightGBM's single margin is column 1)."""
        return self._map_rows(x, probabilities=False)

    def predict_proba(self, x: npt.ArrayLike) -> FloatArray:
        """(n_rows, n_classes) class probabilities, LightGBM's ``predict_proba`` to 1e-12."""
        return self._map_rows(x, probabilities=True)

    def score(self, x: npt.ArrayLike) -> FloatArray:
        """The batch method of the scorer protocol (`models.bundle.Component`): same as
        `predict_proba`."""
        return self.predict_proba(x)

    # -- persistence ----------------------------------------------------------------------

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The model as plain arrays (copies), the inverse of `from_arrays`."""
        return {
            "children_left": self._left.copy(),
            "children_right": self._right.copy(),
            "feature": self._feature.copy(),
            "threshold": self._threshold.copy(),
            "default_left": self._default_left.copy(),
            "missing_type": self._missing_type.copy(),
            "leaf_value": self._leaf_value.copy(),
            "n_features": np.array(self._n_features, dtype=np.int64),
            "n_classes": np.array(self._n_classes, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.ArrayLike]) -> GradientBoostedTrees:
        """Rebuild from `to_arrays` output; raises ModelError if an array is missing or bad."""
        cls.check_arrays(arrays)
        return cls(
            children_left=arrays["children_left"],
            children_right=arrays["children_right"],
            feature=arrays["feature"],
            threshold=arrays["threshold"],
            default_left=arrays["default_left"],
            missing_type=arrays["missing_type"],
            leaf_value=arrays["leaf_value"],
            n_features=int(np.asarray(arrays["n_features"])),
            n_classes=int(np.asarray(arrays["n_classes"])),
        )




def _softmax(raw: FloatArray) -> FloatArray:
    """LightGBM's ``Common::Softmax`` over axis 0 of (n_classes, rows): subtract the max,
    exponentiate, divide by the sum taken in class order."""
    e: FloatArray = np.exp(raw - np.maximum.reduce(raw, axis=0))
    total = np.add.accumulate(e, axis=0)[-1]
    e /= total
    return e
