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
size, so a tick does no allocation beyond its result.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from os import PathLike
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.npz import ArraySpec, load_model, save_model
from models.tflite import ModelError

__all__ = ["IsolationForestScorer", "average_path_length"]

FORMAT: Final = "vigil.isolation_forest/1"
"""Written into every file (`models.npz.FORMAT_KEY`); bump when the layout changes."""

_TREE_LEAF: Final = -1  # sklearn's children_* value at a leaf
_UNDEFINED: Final = -2  # sklearn's feature value at a leaf
_MAX_CHUNK_ROWS: Final = 512  # rows per traversal; bounds the (trees x rows) buffers
_MAX_CACHED_WORKSPACES: Final = 4

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


class _Workspace:
    """Buffers for traversing ``rows`` rows through all trees; reused across calls.

    (trees, rows) arrays, or (trees,) for a single row: 1-D ufunc calls cost less, and a
    tick is one row.
    """

    __slots__ = ("depth", "gather", "go", "isnan", "leaf", "leaf_2d", "nan_right", "root",
                 "row_offset", "rows", "spare", "state", "thr", "vals", "x32", "x64")

    def __init__(self, root_state: IntArray, rows: int, n_features: int) -> None:
        n_trees = root_state.shape[0]
        shape: tuple[int, ...] = (n_trees,) if rows == 1 else (n_trees, rows)
        self.rows = rows
        self.x32 = np.empty((rows, n_features), dtype=np.float32)
        self.x64 = np.empty((rows, n_features), dtype=np.float64)
        self.root = np.empty(shape, dtype=np.intp)
        self.root.reshape(n_trees, rows)[...] = root_state[:, np.newaxis]
        self.state = np.empty(shape, dtype=np.intp)
        self.gather = np.empty(shape, dtype=np.intp)
        self.spare = np.empty(shape, dtype=np.intp)
        self.vals = np.empty(shape, dtype=np.float64)
        self.thr = np.empty(shape, dtype=np.float64)
        self.go = np.empty(shape, dtype=np.bool_)
        self.isnan = np.empty(shape, dtype=np.bool_)
        self.nan_right = np.empty(shape, dtype=np.bool_)
        self.leaf = np.empty(shape, dtype=np.float64)
        # (trees, rows) view of ``leaf`` even for one row, so the sum over trees fits ``depth``.
        self.leaf_2d = self.leaf.reshape(n_trees, rows)
        self.depth = np.empty(rows, dtype=np.float64)
        self.row_offset = (np.arange(rows, dtype=np.intp) * n_features)[np.newaxis, :]


def _model_error(message: str) -> ModelError:
    return ModelError(f"isolation forest: {message}")


class IsolationForestScorer:
    """A fitted IsolationForest as padded node arrays; scores like sklearn, without sklearn.

    Build with `training.export.export_isolation_forest` (or `from_arrays` / `load`). The
    arrays are (n_trees, max_nodes), padded with leaves; ``feature`` holds indices into the
    full input row (any ``max_features`` subsetting already mapped back). Batch methods take
    (n_rows, n_features) and return new arrays; `update` scores one row per tick. Calls are
    serialized by a lock because the buffers are shared.
    """

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
        n_trees, max_nodes = left.shape
        self._n_trees: int = int(n_trees)

        depth = self._node_depths(left, right)  # root = 0, -1 where unreachable
        self._max_depth: int = int(depth.max())
        is_leaf = left == _TREE_LEAF
        base = (np.arange(n_trees, dtype=np.int64) * max_nodes)[:, np.newaxis]
        node = base + np.arange(max_nodes, dtype=np.int64)[np.newaxis, :]
        # Next state per (state, go_right): 2 * child, or the node itself at a leaf.
        next_left = np.where(is_leaf, node, base + left) * 2
        next_right = np.where(is_leaf, node, base + right) * 2
        self._next = np.stack([next_left.ravel(), next_right.ravel()], axis=1).ravel()
        self._next = self._next.astype(np.intp)
        # Per state (even entries used; duplicated so the odd ones are harmless).
        self._state_feature = np.repeat(np.where(is_leaf, 0, feat).ravel(), 2).astype(np.intp)
        self._state_threshold = np.repeat(np.where(is_leaf, 0.0, thr).ravel(), 2)
        self._state_nan_right = np.repeat((~miss & ~is_leaf).ravel(), 2)
        # sklearn: decision_path_length[leaf] + average_path_length[leaf] - 1.0, root depth 1.
        depth1 = (np.maximum(depth, 0) + 1).astype(np.float64)
        leaf_value = (depth1 + average_path_length(samples)) - 1.0
        self._state_leaf_value = np.repeat(np.where(is_leaf, leaf_value, 0.0).ravel(), 2)
        self._root_state: IntArray = (base[:, 0] * 2).astype(np.intp)
        denominator = n_trees * average_path_length([self._max_samples])
        self._denominator = float(denominator[0])

        self._lock = threading.Lock()
        self._single = _Workspace(self._root_state, 1, self._n_features)
        self._workspaces: dict[int, _Workspace] = {}

    def _validate(  # noqa: PLR0917 - the six node arrays of one model
        self,
        left: npt.NDArray[np.int64],
        right: npt.NDArray[np.int64],
        feat: npt.NDArray[np.int64],
        thr: FloatArray,
        samples: npt.NDArray[np.int64],
        miss: npt.NDArray[np.bool_],
    ) -> None:
        if left.ndim != 2 or left.shape[0] < 1 or left.shape[1] < 1:
            raise _model_error(f"children_left must be (n_trees, max_nodes), got {left.shape}")
        for name, arr in (("children_right", right), ("feature", feat), ("threshold", thr),
                          ("n_node_samples", samples), ("missing_go_to_left", miss)):
            if arr.shape != left.shape:
                raise _model_error(f"{name} has shape {arr.shape}, expected {left.shape}")
        if self._n_features < 1:
            raise _model_error(f"n_features must be >= 1, got {self._n_features}")
        if self._max_samples < 1:
            raise _model_error(f"max_samples must be >= 1, got {self._max_samples}")
        if not np.isfinite(self._offset):
            raise _model_error(f"offset must be finite, got {self._offset}")
        max_nodes = left.shape[1]
        is_leaf = left == _TREE_LEAF
        if np.any(is_leaf != (right == _TREE_LEAF)):
            raise _model_error("a node has exactly one child")
        node = np.arange(max_nodes)[np.newaxis, :]
        internal = ~is_leaf
        for name, child in (("children_left", left), ("children_right", right)):
            bad = internal & ((child <= node) | (child >= max_nodes))
            if bad.any():
                t, j = np.argwhere(bad)[0]
                raise _model_error(
                    f"{name}[{t}, {j}] = {child[t, j]}: a child must come after its parent "
                    f"and be < {max_nodes}"
                )
        bad_feature = internal & ((feat < 0) | (feat >= self._n_features))
        if bad_feature.any():
            t, j = np.argwhere(bad_feature)[0]
            raise _model_error(
                f"feature[{t}, {j}] = {feat[t, j]} outside [0, {self._n_features})"
            )
        if np.isnan(thr[internal]).any():
            raise _model_error("a split threshold is NaN")
        if (samples < 0).any():
            raise _model_error("n_node_samples has a negative count")

    @staticmethod
    def _node_depths(
        left: npt.NDArray[np.int64], right: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Depth of every node below its root (0), -1 for nodes no root reaches (padding)."""
        n_trees, max_nodes = left.shape
        flat_left = (left + np.arange(n_trees)[:, np.newaxis] * max_nodes).ravel()
        flat_right = (right + np.arange(n_trees)[:, np.newaxis] * max_nodes).ravel()
        leaf = left.ravel() == _TREE_LEAF
        depth = np.full(n_trees * max_nodes, -1, dtype=np.int64)
        frontier = np.arange(n_trees) * max_nodes
        level = 0
        while frontier.size:
            depth[frontier] = level
            inner = frontier[~leaf[frontier]]
            frontier = np.concatenate([flat_left[inner], flat_right[inner]])
            level += 1
        return depth.reshape(n_trees, max_nodes)

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

    def _workspace(self, rows: int) -> _Workspace:
        ws = self._workspaces.get(rows)
        if ws is None:
            if len(self._workspaces) >= _MAX_CACHED_WORKSPACES:
                self._workspaces.clear()
            ws = _Workspace(self._root_state, rows, self._n_features)
            self._workspaces[rows] = ws
        return ws

    def _walk(self, ws: _Workspace, rows_in: npt.NDArray[Any]) -> IntArray:
        """Send every (tree, row) pair to its leaf, sklearn's way; returns the leaf states.

        The array methods (``a.take(idx, None, out, "clip")``) are used rather than the
        ``np.take`` function: same kernel, a third of the call overhead, which is most of the
        cost for one row. "clip" never clips: indices were validated at construction.
        """
        np.copyto(ws.x32, rows_in, casting="unsafe")  # sklearn scores float32 input
        np.copyto(ws.x64, ws.x32)
        x_flat = ws.x64.reshape(-1)
        # x.x is NaN exactly when some x is NaN (inf squares to inf, never to NaN).
        has_nan = bool(np.isnan(x_flat.dot(x_flat)))
        feature, threshold, nxt = self._state_feature, self._state_threshold, self._next
        state, spare, gather, vals, thr, go = ws.state, ws.spare, ws.gather, ws.vals, ws.thr, ws.go
        add_row_offset = ws.rows > 1
        np.copyto(state, ws.root)
        for _ in range(self._max_depth):
            feature.take(state, None, gather, "clip")
            if add_row_offset:
                np.add(gather, ws.row_offset, out=gather)
            x_flat.take(gather, None, vals, "clip")
            threshold.take(state, None, thr, "clip")
            np.greater(vals, thr, out=go)
            if has_nan:
                # NaN compares False; send it where the tree recorded (right if not left).
                np.isnan(vals, out=ws.isnan)
                self._state_nan_right.take(state, None, ws.nan_right, "clip")
                np.logical_and(ws.isnan, ws.nan_right, out=ws.isnan)
                np.logical_or(go, ws.isnan, out=go)
            np.add(state, go, out=state)
            nxt.take(state, None, spare, "clip")
            state, spare = spare, state
        return state

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

    def _check_batch(self, x: npt.ArrayLike) -> npt.NDArray[Any]:
        arr = np.asarray(x)
        if arr.ndim != 2 or arr.shape[1] != self._n_features:
            raise _model_error(
                f"input must be (n_rows, {self._n_features}), got shape {arr.shape}"
            )
        if arr.dtype.kind not in "fiub":
            raise _model_error(f"input must be numeric, got dtype {arr.dtype}")
        return arr

    def score_samples(self, x: npt.ArrayLike) -> FloatArray:
        """sklearn's ``score_samples``: the opposite of the anomaly score; lower = more abnormal.

        Equal to ``IsolationForest.score_samples`` to 1e-9 (in practice to a few ulp).
        """
        arr = self._check_batch(x)
        n_rows = arr.shape[0]
        out = np.empty(n_rows, dtype=np.float64)
        with self._lock:
            for start in range(0, n_rows, _MAX_CHUNK_ROWS):
                stop = min(start + _MAX_CHUNK_ROWS, n_rows)
                ws = self._workspace(stop - start)
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
        missing = sorted(set(_REQUIRED) - set(arrays))
        if missing:
            raise _model_error(f"missing array(s): {', '.join(missing)}")
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

    def save(self, path: str | PathLike[str]) -> None:
        """Write an ``.npz`` model file atomically (see `models.npz.save_model`)."""
        save_model(path, FORMAT, self.to_arrays())

    @classmethod
    def load(cls, path: str | PathLike[str]) -> IsolationForestScorer:
        """Load a file written by `save`; raises ModelFileError naming the file and problem."""
        return load_model(path, FORMAT, _REQUIRED, cls.from_arrays)
