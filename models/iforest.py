"""IsolationForest scoring in numpy, equal to scikit-learn's, from flat per-tree arrays.

Why: the device has no scikit-learn, and sklearn's per-sample scoring walks 100 Python-level
trees per call (tens of milliseconds a tick). `training.export.export_isolation_forest` turns a
fitted `sklearn.ensemble.IsolationForest` into the arrays below; this module scores them.

What sklearn computes (sklearn/ensemble/_iforest.py, 1.9), and this module reproduces:

- Input is cast to float32 (``validate_data(..., dtype=np.float32)``); each split compares the
  float32 value with a float64 threshold: ``x <= threshold`` goes left. NaN goes to the side
  the tree recorded in ``missing_go_to_left`` (random splitters record a side even when no
  NaN was seen in training, so NaN input is handled, not refused).
- Per tree, a row reaching leaf ``l`` contributes ``depth1[l] + c(n_node_samples[l]) - 1``
  where ``depth1`` is `compute_node_depths` (root = 1) and ``c(n)`` is
  `average_path_length`: 0 for n <= 1, 1 for n == 2, else
  ``2 (ln(n - 1) + euler_gamma) - 2 (n - 1) / n``.
- ``score_samples = -2 ** (-sum_over_trees / (n_trees * c(max_samples)))`` (``-0.5`` if the
  denominator is 0), ``decision_function = score_samples - offset_`` and ``predict`` is -1
  where the decision function is < 0, else 1. Lower ``score_samples`` = more abnormal.

Layout: T trees padded to M nodes each, as sklearn numbers them (children after their parent).
Padding is leaves nothing points to. For scoring, node ``j`` of tree ``t`` becomes state
``s = 2 (t M + j)``; per state we keep the feature, threshold and, at ``s + 1`` (go right)
and ``s`` (go left), the next state; a leaf's next state is itself. Traversal then steps every
(tree, row) pair at once, ``max_depth`` times: gather feature values, compare, ``s += go_right``,
``s = next[s]``. No Python loop over trees or rows, and buffers are allocated once per batch
size, so a tick does no allocation beyond its result. The tables and the walk are
`models.trees`, shared with the LightGBM scorer `models.gbdt`.
"""

from __future__ import annotations

import math
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

__all__ = ["IsolationForestScorer", "average_path_length"]

FORMAT: Final = "vigil.isolation_forest/1"
"""Written into every file (`models.npz.FORMAT_KEY`); bump when the layout changes."""


_REQUIRED: Final[dict[str, ArraySpec]] = {
    "children_left": ("i", 2),
    "children_right": ("i", 2),
    "feature": ("i", 2),
    "threshold": ("f", 2),
    "n_node_samples": ("iu", 2),
    "missing_go_to_left": ("bu", 2),
    "max_samples": ("iu", 0),
    "offset": ("f", 0),
    "n_features": ("iu", 0),
}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


def average_path_length(n_samples: npt.ArrayLike) -> FloatArray:
    """c(n): average path length of an unsuccessful search in a binary search tree of n nodes.

    The expected depth still to go below a leaf holding n training samples; the same operations
    as sklearn's private ``_average_path_length``, so results are bit-identical.
    """
    n = np.asarray(n_samples, dtype=np.float64)
    out = np.zeros(n.shape, dtype=np.float64)
    out[n == 2] = 1.0
    big = n > 2
    nb = n[big]
    out[big] = 2.0 * (np.log(nb - 1.0) + np.euler_gamma) - 2.0 * (nb - 1.0) / nb
    return out


class _Workspace(TraversalBuffers):
    """`models.trees.TraversalBuffers` plus this scorer's input copies and leaf sums."""

    __slots__ = ("depth", "leaf", "leaf_2d", "x32", "x64")

    def __init__(self, root_state: IntArray, rows: int, n_features: int) -> None:
        super().__init__(root_state, rows, n_features)
        n_trees = root_state.shape[0]
        self.x32 = np.empty((rows, n_features), dtype=np.float32)
        self.x64 = np.empty((rows, n_features), dtype=np.float64)
        self.leaf = np.empty(self.state.shape, dtype=np.float64)
        # (trees, rows) view of ``leaf`` even for one row, so the sum over trees fits ``depth``.
        self.leaf_2d = self.leaf.reshape(n_trees, rows)
        self.depth = np.empty(rows, dtype=np.float64)


_NAME: Final = "isolation forest"
"""Prefix of this scorer's ModelError messages."""


def _model_error(message: str) -> ModelError:
    return ModelError(f"{_NAME}: {message}")


class IsolationForestScorer(NpzModel):
    """A fitted IsolationForest as padded node arrays; scores like sklearn, without sklearn.

    Build with `training.export.export_isolation_forest` (or `from_arrays` / `load`). The
    arrays are (n_trees, max_nodes), padded with leaves; ``feature`` holds indices into the
    full input row (any ``max_features`` subsetting already mapped back). Batch methods take
    (n_rows, n_features) and return new arrays; `update` scores one row per tick. Calls are
    serialized by a lock because the buffers are shared.
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
        n_node_samples: npt.ArrayLike,
        missing_go_to_left: npt.ArrayLike | None = None,
        max_samples: int,
        offset: float,
        n_features: int,
    ) -> None:
        """Validate the arrays and build the flat traversal tables.

        Raises ModelError if shapes disagree, a child index is out of range or not after its
        parent (sklearn's order, which also rules out cycles), a split feature is outside
        ``[0, n_features)``, or a split threshold is NaN.
        """
        left = np.array(children_left, dtype=np.int64)
        right = np.array(children_right, dtype=np.int64)
        feat = np.array(feature, dtype=np.int64)
        thr = np.array(threshold, dtype=np.float64)
        samples = np.array(n_node_samples, dtype=np.int64)
        if missing_go_to_left is None:
            missing_go_to_left = np.zeros(left.shape, dtype=np.bool_)
        miss = np.array(missing_go_to_left).astype(np.bool_)
        self._n_features = int(n_features)
        self._max_samples = int(max_samples)
        self._offset = float(offset)
        self._validate(left, right, feat, thr, samples, miss)
        self._left, self._right, self._feature = left, right, feat
        self._threshold, self._n_node_samples, self._missing_left = thr, samples, miss
        is_leaf = left == TREE_LEAF
        self._tables = TreeTables(left, right, feat, thr, ~miss & ~is_leaf)
        self._n_trees: int = self._tables.n_trees
        depth = self._tables.depth  # root = 0, -1 where unreachable
        self._max_depth: int = self._tables.max_depth
        # sklearn: decision_path_length[leaf] + average_path_length[leaf] - 1.0, root depth 1.
        depth1 = (np.maximum(depth, 0) + 1).astype(np.float64)
        leaf_value = (depth1 + average_path_length(samples)) - 1.0
        self._state_leaf_value = self._tables.leaf_state(leaf_value)
        self._root_state: IntArray = self._tables.root_state
        n_trees = self._n_trees
        denominator = n_trees * average_path_length([self._max_samples])
        self._denominator = float(denominator[0])

        self._lock = threading.Lock()
        self._single = _Workspace(self._root_state, 1, self._n_features)
        self._workspaces: BufferCache[_Workspace] = BufferCache(
            lambda rows: _Workspace(self._root_state, rows, self._n_features)
        )

    def _validate(  # noqa: PLR0917 - the six node arrays of one model
        self,
        left: npt.NDArray[np.int64],
        right: npt.NDArray[np.int64],
        feat: npt.NDArray[np.int64],
        thr: FloatArray,
        samples: npt.NDArray[np.int64],
        miss: npt.NDArray[np.bool_],
    ) -> None:
        check_nodes(left, right, feat, thr,
                    per_node={"n_node_samples": samples, "missing_go_to_left": miss},
                    n_features=self._n_features, error=_model_error)
        if self._max_samples < 1:
            raise _model_error(f"max_samples must be >= 1, got {self._max_samples}")
        if not np.isfinite(self._offset):
            raise _model_error(f"offset must be finite, got {self._offset}")
        if (samples < 0).any():
            raise _model_error("n_node_samples has a negative count")

    # -- properties -----------------------------------------------------------------------

    @property
    def n_trees(self) -> int:
        """Number of trees (sklearn's ``len(estimators_)``)."""
        return self._n_trees

    @property
    def n_features(self) -> int:
        """Length of an input row."""
        return self._n_features

    @property
    def max_samples(self) -> int:
        """Samples per tree at training (sets the normalisation c(max_samples))."""
        return self._max_samples

    @property
    def offset(self) -> float:
        """sklearn's ``offset_``: ``decision_function = score_samples - offset``."""
        return self._offset

    @property
    def max_depth(self) -> int:
        """Deepest leaf (root = 0): the number of traversal steps per call."""
        return self._max_depth

    def __repr__(self) -> str:
        """Size of the forest, for logs."""
        return (
            f"IsolationForestScorer(n_trees={self._n_trees}, n_features={self._n_features}, "
            f"max_samples={self._max_samples}, max_depth={self._max_depth}, "
            f"offset={self._offset:.6g})"
        )

    # -- scoring --------------------------------------------------------------------------

    def _walk(self, ws: _Workspace, rows_in: npt.NDArray[Any]) -> IntArray:
        """Send every (tree, row) pair to its leaf, sklearn's way; returns the leaf states."""
        np.copyto(ws.x32, rows_in, casting="unsafe")  # sklearn scores float32 input
        np.copyto(ws.x64, ws.x32)
        x_flat = ws.x64.reshape(-1)
        return walk(self._tables, ws, x_flat, has_nan(x_flat))

    def _traverse(self, ws: _Workspace, rows_in: npt.NDArray[Any], out: FloatArray) -> None:
        """``score_samples`` of ``rows_in`` (ws.rows x n_features) into ``out`` (ws.rows,)."""
        state = self._walk(ws, rows_in)
        self._state_leaf_value.take(state, None, ws.leaf, "clip")
        # Sum over trees: axis 0, tree after tree, as sklearn accumulates.
        np.add.reduce(ws.leaf_2d, axis=0, out=ws.depth)
        if self._denominator != 0.0:
            np.divide(ws.depth, self._denominator, out=out)
        else:  # a single training sample: sklearn sets the ratio to 1
            out.fill(1.0)
        np.negative(out, out=out)
        np.power(2.0, out, out=out)
        np.negative(out, out=out)

    def score_samples(self, x: npt.ArrayLike) -> FloatArray:
        """sklearn's ``score_samples``: the opposite of the anomaly score; lower = more abnormal.

        Equal to ``IsolationForest.score_samples`` to 1e-9 (in practice to a few ulp).
        """
        arr = check_batch(x, self._n_features, _model_error)
        out = np.empty(arr.shape[0], dtype=np.float64)
        with self._lock:
            for start, stop in chunks(arr.shape[0]):
                ws = self._workspaces.get(stop - start)
                self._traverse(ws, arr[start:stop], out[start:stop])
        return out

    def score(self, x: npt.ArrayLike) -> FloatArray:
        """The batch method of the scorer protocol: same as `score_samples`."""
        return self.score_samples(x)

    def decision_function(self, x: npt.ArrayLike) -> FloatArray:
        """``score_samples(x) - offset``: negative means outlier at the trained contamination."""
        scores = self.score_samples(x)
        scores -= self._offset
        return scores

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """-1 for outliers, 1 for inliers, as sklearn's ``predict``."""
        return np.where(self.decision_function(x) < 0, -1, 1).astype(np.int64)

    def update(self, sample: npt.ArrayLike) -> float:
        """Score one row (n_features,) for this tick; equals ``score_samples([sample])[0]``.

        Uses buffers allocated at construction: no allocation other than the input check.
        """
        arr = np.asarray(sample)
        if arr.shape != (self._n_features,):
            raise _model_error(f"sample must be ({self._n_features},), got shape {arr.shape}")
        with self._lock:
            state = self._walk(self._single, arr.reshape(1, -1))
            leaf = self._single.leaf
            self._state_leaf_value.take(state, None, leaf, "clip")
            ratio = float(leaf.sum()) / self._denominator if self._denominator != 0.0 else 1.0
        # math.pow is the same C pow() that np.power calls.
        return -math.pow(2.0, -ratio)

    # -- persistence ----------------------------------------------------------------------

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The model as plain arrays (copies), the inverse of `from_arrays`."""
        return {
            "children_left": self._left.copy(),
            "children_right": self._right.copy(),
            "feature": self._feature.copy(),
            "threshold": self._threshold.copy(),
            "n_node_samples": self._n_node_samples.copy(),
            "missing_go_to_left": self._missing_left.copy(),
            "max_samples": np.array(self._max_samples, dtype=np.int64),
            "offset": np.array(self._offset, dtype=np.float64),
            "n_features": np.array(self._n_features, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.ArrayLike]) -> IsolationForestScorer:
        """Rebuild from `to_arrays` output; raises ModelError if an array is missing or bad."""
        cls.check_arrays(arrays)
        return cls(
            children_left=arrays["children_left"],
            children_right=arrays["children_right"],
            feature=arrays["feature"],
            threshold=arrays["threshold"],
            n_node_samples=arrays["n_node_samples"],
            missing_go_to_left=arrays["missing_go_to_left"],
            max_samples=int(np.asarray(arrays["max_samples"])),
            offset=float(np.asarray(arrays["offset"])),
            n_features=int(np.asarray(arrays["n_features"])),
        )


