"""Vectorised traversal of padded binary decision trees, shared by the tree scorers.

Why: `models.iforest` (sklearn IsolationForest) and `models.gbdt` (LightGBM) both score a
forest of binary ``x <= threshold`` trees on the device, where a Python loop over trees or rows
costs milliseconds per tick. The walk is the same for both; only what a leaf is worth, how the
input row is prepared, and where NaN goes differ, and those stay in each scorer.

Layout: T trees padded to M nodes each, numbered so children come after their parent (the
order sklearn uses, and the pre-order the LightGBM exporter writes), which rules out cycles.
``children_left == children_right == -1`` marks a leaf; padding is leaves nothing points to.
For scoring, node ``j`` of tree ``t`` becomes state ``s = 2 (t M + j)``; per state we keep the
input column and threshold, whether NaN goes right, and, at ``s`` (go left) and ``s + 1``
(go right), the next state; a leaf's next state is itself. `walk` then steps every (tree, row)
pair at once, ``max_depth`` times: gather the values, ``go_right = value > threshold`` (NaN
compares False, then takes the node's NaN side), ``s += go_right``, ``s = next[s]``. The column
is an index into the prepared input row, which may be wider than the model's feature vector
(`models.gbdt` appends a second, transformed copy of the features).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from models.tflite import ModelError

__all__ = ["MAX_CHUNK_ROWS", "TREE_LEAF", "BufferCache", "TraversalBuffers", "TreeTables",
           "check_batch", "check_nodes", "chunks", "has_nan", "node_depths", "walk"]

TREE_LEAF: Final = -1
"""children_left / children_right value at a leaf (sklearn's ``TREE_LEAF``)."""

MAX_CHUNK_ROWS: Final = 512
"""Rows per traversal; bounds the (trees x rows) buffers of a large batch."""

_MAX_CACHED_BUFFERS: Final = 4

IntArray = npt.NDArray[np.intp]
Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def check_nodes(
    left: Int64Array,
    right: Int64Array,
    feature: Int64Array,
    threshold: FloatArray,
    *,
    per_node: Mapping[str, npt.NDArray[Any]],
    n_features: int,
    error: Callable[[str], ModelError],
) -> None:
    """Raise ``error(message)`` unless the arrays describe valid padded trees.

    Checked: (n_trees, max_nodes) shape shared by every per-node array (``threshold``,
    ``feature``, ``children_right`` and the scorer's own ``per_node`` ones), ``n_features >= 1``,
    no node with exactly one child, children after their parent and inside the tree, split
    features in ``[0, n_features)``, no NaN split threshold.
    """
    if left.ndim != 2 or left.shape[0] < 1 or left.shape[1] < 1:
        raise error(f"children_left must be (n_trees, max_nodes), got {left.shape}")
    shaped = {"children_right": right, "feature": feature, "threshold": threshold, **per_node}
    for name, arr in shaped.items():
        if arr.shape != left.shape:
            raise error(f"{name} has shape {arr.shape}, expected {left.shape}")
    if n_features < 1:
        raise error(f"n_features must be >= 1, got {n_features}")
    max_nodes = left.shape[1]
    is_leaf = left == TREE_LEAF
    if np.any(is_leaf != (right == TREE_LEAF)):
        raise error("a node has exactly one child")
    node = np.arange(max_nodes)[np.newaxis, :]
    internal = ~is_leaf
    for name, child in (("children_left", left), ("children_right", right)):
        bad = internal & ((child <= node) | (child >= max_nodes))
        if bad.any():
            t, j = np.argwhere(bad)[0]
            raise error(
                f"{name}[{t}, {j}] = {child[t, j]}: a child must come after its parent "
                f"and be < {max_nodes}"
            )
    bad_feature = internal & ((feature < 0) | (feature >= n_features))
    if bad_feature.any():
        t, j = np.argwhere(bad_feature)[0]
        raise error(f"feature[{t}, {j}] = {feature[t, j]} outside [0, {n_features})")
    if np.isnan(threshold[internal]).any():
        raise error("a split threshold is NaN")


def node_depths(left: Int64Array, right: Int64Array) -> Int64Array:
    """Depth of every node below its root (0), -1 for nodes no root reaches (padding)."""
    n_trees, max_nodes = left.shape
    flat_left = (left + np.arange(n_trees)[:, np.newaxis] * max_nodes).ravel()
    flat_right = (right + np.arange(n_trees)[:, np.newaxis] * max_nodes).ravel()
    leaf = left.ravel() == TREE_LEAF
    depth = np.full(n_trees * max_nodes, -1, dtype=np.int64)
    frontier = np.arange(n_trees) * max_nodes
    level = 0
    while frontier.size:
        depth[frontier] = level
        inner = frontier[~leaf[frontier]]
        frontier = np.concatenate([flat_left[inner], flat_right[inner]])
        level += 1
    return depth.reshape(n_trees, max_nodes)


class TreeTables:
    """The per-state tables `walk` reads, built once from validated node arrays.

    ``column`` is the index into the prepared input row each split reads, ``nan_right``
    whether NaN goes right at that split; both are ignored at leaves.
    """

    __slots__ = ("depth", "is_leaf", "max_depth", "n_trees", "next", "root_state",
                 "state_column", "state_nan_right", "state_threshold")

    def __init__(
        self,
        left: Int64Array,
        right: Int64Array,
        column: Int64Array,
        threshold: FloatArray,
        nan_right: BoolArray,
    ) -> None:
        """Arrays as `check_nodes` accepted them (``column`` may exceed n_features)."""
        n_trees, max_nodes = left.shape
        self.n_trees: int = int(n_trees)
        self.depth: Int64Array = node_depths(left, right)  # root = 0, -1 where unreachable
        self.max_depth: int = int(self.depth.max())
        is_leaf = left == TREE_LEAF
        self.is_leaf: BoolArray = is_leaf
        base = (np.arange(n_trees, dtype=np.int64) * max_nodes)[:, np.newaxis]
        node = base + np.arange(max_nodes, dtype=np.int64)[np.newaxis, :]
        # Next state per (state, go_right): 2 * child, or the node itself at a leaf.
        next_left = np.where(is_leaf, node, base + left) * 2
        next_right = np.where(is_leaf, node, base + right) * 2
        self.next: IntArray = np.stack(
            [next_left.ravel(), next_right.ravel()], axis=1
        ).ravel().astype(np.intp)
        # Per state (even entries used; duplicated so the odd ones are harmless).
        self.state_column: IntArray = self.per_state(column, 0).astype(np.intp)
        self.state_threshold: FloatArray = self.per_state(threshold, 0.0)
        self.state_nan_right: BoolArray = self.per_state(nan_right, False)
        self.root_state: IntArray = (base[:, 0] * 2).astype(np.intp)

    def per_state(self, values: npt.NDArray[Any], leaf_fill: float | bool) -> npt.NDArray[Any]:
        """A (n_trees, max_nodes) per-split array as a flat per-state table, ``leaf_fill`` at
        leaves (a leaf's entries are read but never change its state)."""
        return np.repeat(np.where(self.is_leaf, leaf_fill, values).ravel(), 2)

    def leaf_state(self, values: FloatArray) -> FloatArray:
        """A (n_trees, max_nodes) per-leaf array (leaf outputs) as a flat per-state table,
        0.0 at internal nodes, to ``take`` with the states `walk` returns."""
        return np.repeat(np.where(self.is_leaf, values, 0.0).ravel(), 2)


class TraversalBuffers:
    """Buffers for walking ``rows`` rows through all trees; a scorer keeps and reuses them.

    (trees, rows) arrays, or (trees,) for a single row: 1-D ufunc calls cost less, and a
    tick is one row. ``n_columns`` is the width of the prepared input row.
    """

    __slots__ = ("gather", "go", "isnan", "nan_right", "root", "row_offset", "rows", "spare",
                 "state", "thr", "vals")

    def __init__(self, root_state: IntArray, rows: int, n_columns: int) -> None:
        """Allocate for ``rows`` rows of ``n_columns`` values."""
        n_trees = root_state.shape[0]
        shape: tuple[int, ...] = (n_trees,) if rows == 1 else (n_trees, rows)
        self.rows = rows
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
        self.row_offset = (np.arange(rows, dtype=np.intp) * n_columns)[np.newaxis, :]


def has_nan(x_flat: FloatArray) -> bool:
    """Whether any value is NaN, cheaply: x.x is NaN exactly when some x is NaN (inf squares
    to inf, never to NaN). Lets `walk` skip the NaN fix-up on clean input."""
    return bool(np.isnan(x_flat.dot(x_flat)))


def walk(tables: TreeTables, buf: TraversalBuffers, x_flat: FloatArray, nan: bool) -> IntArray:
    """Send every (tree, row) pair to its leaf; returns the leaf states (a view of ``buf``).

    ``x_flat`` is the prepared (buf.rows, n_columns) float64 input, raveled; ``nan`` says
    whether it may hold NaN (`has_nan`). ``value > threshold`` goes right, NaN goes to the
    node's ``nan_right`` side. The array methods (``a.take(idx, None, out, "clip")``) are used
    rather than the ``np.take`` function: same kernel, a third of the call overhead, which is
    most of the cost for one row. "clip" never clips: indices were validated at construction.
    """
    column, threshold, nxt = tables.state_column, tables.state_threshold, tables.next
    state, spare, gather = buf.state, buf.spare, buf.gather
    vals, thr, go = buf.vals, buf.thr, buf.go
    add_row_offset = buf.rows > 1
    np.copyto(state, buf.root)
    for _ in range(tables.max_depth):
        column.take(state, None, gather, "clip")
        if add_row_offset:
            np.add(gather, buf.row_offset, out=gather)
        x_flat.take(gather, None, vals, "clip")
        threshold.take(state, None, thr, "clip")
        np.greater(vals, thr, out=go)
        if nan:
            # NaN compares False (left); send it right where the node says so.
            np.isnan(vals, out=buf.isnan)
            tables.state_nan_right.take(state, None, buf.nan_right, "clip")
            np.logical_and(buf.isnan, buf.nan_right, out=buf.isnan)
            np.logical_or(go, buf.isnan, out=go)
        np.add(state, go, out=state)
        nxt.take(state, None, spare, "clip")
        state, spare = spare, state
    return state


Buffers = TypeVar("Buffers", bound=TraversalBuffers)


class BufferCache(Generic[Buffers]):
    """Buffers per batch size, made by ``make(rows)`` on first use and then reused.

    A monitor scores the same batch sizes tick after tick, so after the first call a tick
    allocates only its result. At most a few sizes are kept (a batch is cut into `chunks`).
    """

    def __init__(self, make: Callable[[int], Buffers]) -> None:
        """``make(rows)`` allocates buffers for ``rows`` rows."""
        self._make = make
        self._cached: dict[int, Buffers] = {}

    def get(self, rows: int) -> Buffers:
        """The buffers for ``rows`` rows (not thread-safe: callers hold their lock)."""
        buffers = self._cached.get(rows)
        if buffers is None:
            if len(self._cached) >= _MAX_CACHED_BUFFERS:
                self._cached.clear()
            buffers = self._make(rows)
            self._cached[rows] = buffers
        return buffers


def chunks(n_rows: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive blocks of at most `MAX_CHUNK_ROWS` rows."""
    for start in range(0, n_rows, MAX_CHUNK_ROWS):
        yield start, min(start + MAX_CHUNK_ROWS, n_rows)


def check_batch(
    x: npt.ArrayLike, n_features: int, error: Callable[[str], ModelError]
) -> npt.NDArray[Any]:
    """``x`` as an (n_rows, n_features) numeric array, or ``error(message)`` naming the shape
    or dtype that is wrong."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise error(f"input must be (n_rows, {n_features}), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise error(f"input must be numeric, got dtype {arr.dtype}")
    return arr
