"""DBSCAN novelty rule in numpy: a point is an outlier when no core sample is within eps.

Why this rule: DBSCAN fitted on windows of normal physiology has no ``predict``; a new point
would join a cluster only if it lies within ``eps`` of one of the cluster's core samples
(that is how DBSCAN grows clusters, and sklearn's neighbourhoods include the boundary,
``distance <= eps``). So the model kept on the device is the core samples and eps, and the
score is ``distance to the nearest core sample / eps``: > 1 means outlier. Refitting DBSCAN on
a window every tick (the naive way) is both slow and a different question.

How: a real nearest-neighbour search, exact, vectorized. Squared distances are expanded as
``|x|^2 - 2 x.c + |c|^2`` with the core norms precomputed, so a block of rows costs one matrix
product; rows are processed in blocks that keep the (rows x cores) matrix small. The expansion
loses precision by cancellation, so it only picks the nearest core; the distance to that core
is then recomputed directly from the differences. The returned distance is therefore exact
(to rounding) for the chosen core, and the chosen core can differ from the true nearest only
between cores whose distances tie to within ~1e-16 * (|x|^2 + |c|^2).

`update` (one row per tick, the edge's hot path) searches a float32 copy first: half the
bytes of the core matrix, which is what a matrix-vector product is bound by (4,000 cores of 84
features: 72 us in float64, 16 us in float32, one core). It keeps that choice only when the
runner-up trails by more than `_F32_SLACK` x (n_features + 6) x (|x|^2 + max |c|^2), above a
worst-case bound on the float32 error of the difference of two compared values (input and core
rounding plus n_features products summed); otherwise it repeats the float64 search. So it
picks the core the float64 search picks, and `update(x) == score([x])[0]` up to the last bit
of the final sum, whatever the data.
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

__all__ = ["DbscanScorer"]

FORMAT: Final = "vigil.dbscan_core/1"
"""Written into every file (`models.npz.FORMAT_KEY`); bump when the layout changes."""

_BLOCK_ELEMENTS: Final = 1 << 16  # rows x cores per block: 512 KiB of float64 scratch
_F32_SLACK: Final = 2.0 * float(np.finfo(np.float32).eps)
_MAX_CACHED_WORKSPACES: Final = 4

_REQUIRED: Final[dict[str, ArraySpec]] = {
    "core_samples": ("f", 2),
    "eps": ("f", 0),
}

FloatArray = npt.NDArray[np.float64]


_NAME: Final = "dbscan"
"""Prefix of this scorer's ModelError messages."""


def _model_error(message: str) -> ModelError:
    return ModelError(f"{_NAME}: {message}")


class _Workspace:
    """Buffers for one block of ``rows`` rows against all cores; reused across calls."""

    __slots__ = ("best", "diff", "gram", "nearest", "rows", "x")

    def __init__(self, rows: int, n_cores: int, n_features: int) -> None:
        self.rows = rows
        self.x = np.empty((rows, n_features), dtype=np.float64)
        self.gram = np.empty((rows, n_cores), dtype=np.float64)
        self.nearest = np.empty(rows, dtype=np.intp)
        self.diff = np.empty((rows, n_features), dtype=np.float64)
        self.best = np.empty(rows, dtype=np.float64)


class DbscanScorer(NpzModel):
    """Distance to the nearest DBSCAN core sample, in units of eps.

    ``core_samples`` (n_cores, n_features) are the training rows DBSCAN marked as core (in the
    units the model was fitted in: scale the input the same way); ``eps`` is its radius.
    Batch methods take (n_rows, n_features) and return new arrays; `update` scores one row per
    tick. Calls are serialized by a lock because the buffers are shared.
    """

    model_format: ClassVar[str] = FORMAT
    required_arrays: ClassVar[Mapping[str, ArraySpec]] = _REQUIRED
    model_name: ClassVar[str] = _NAME

    def __init__(self, core_samples: npt.ArrayLike, eps: float) -> None:
        """Copy and check the model; raises ModelError if it is empty, non-finite or eps <= 0.

        No core samples would make every point an outlier: refused rather than alarming forever.
        """
        core = np.array(core_samples, dtype=np.float64, order="C")
        if core.ndim != 2 or core.shape[0] < 1 or core.shape[1] < 1:
            raise _model_error(
                f"core_samples must be (n_cores >= 1, n_features >= 1), got shape {core.shape}"
            )
        if not np.isfinite(core).all():
            raise _model_error("core_samples contain NaN or infinity")
        eps_value = float(eps)
        if not (np.isfinite(eps_value) and eps_value > 0.0):
            raise _model_error(f"eps must be finite and > 0, got {eps_value}")
        self._core = core
        self._core.setflags(write=False)
        self._eps = eps_value
        n_cores, n_features = core.shape
        # -2 c^T: scaling by a power of two is exact, and saves a pass over the block.
        self._core_t_m2 = np.ascontiguousarray(-2.0 * core.T)
        self._core_sq = np.einsum("ij,ij->i", core, core)
        self._block_rows = max(1, _BLOCK_ELEMENTS // n_cores)
        self._lock = threading.Lock()
        self._single = _Workspace(1, n_cores, n_features)
        self._workspaces: dict[int, _Workspace] = {}
        # float32 first pass of `update` (module doc): copies of the search terms, buffers.
        self._core_t_m2_32 = self._core_t_m2.astype(np.float32)
        self._core_sq_32 = self._core_sq.astype(np.float32)
        self._x32 = np.empty(n_features, dtype=np.float32)
        self._gram32 = np.empty(n_cores, dtype=np.float32)
        self._slack = _F32_SLACK * (n_features + 6)
        self._max_core_sq = float(self._core_sq.max())

    @property
    def core_samples(self) -> FloatArray:
        """The core samples (read-only view)."""
        return self._core

    @property
    def eps(self) -> float:
        """DBSCAN's neighbourhood radius, in input units."""
        return self._eps

    @property
    def n_features(self) -> int:
        """Length of an input row."""
        return int(self._core.shape[1])

    @property
    def n_cores(self) -> int:
        """Number of core samples searched."""
        return int(self._core.shape[0])

    def __repr__(self) -> str:
        """Size and radius, for logs."""
        return (
            f"DbscanScorer(n_cores={self.n_cores}, n_features={self.n_features}, "
            f"eps={self._eps:.6g})"
        )

    def _workspace(self, rows: int) -> _Workspace:
        ws = self._workspaces.get(rows)
        if ws is None:
            if len(self._workspaces) >= _MAX_CACHED_WORKSPACES:
                self._workspaces.clear()
            ws = _Workspace(rows, self.n_cores, self.n_features)
            self._workspaces[rows] = ws
        return ws

    def _nearest_block(self, ws: _Workspace, rows_in: npt.NDArray[Any], out: FloatArray) -> None:
        """Exact distance from each of ws.rows rows to its nearest core, into ``out``."""
        np.copyto(ws.x, rows_in, casting="unsafe")
        # argmin_j |x - c_j|^2 = argmin_j (|c_j|^2 - 2 x.c_j): |x|^2 is constant per row.
        np.matmul(ws.x, self._core_t_m2, out=ws.gram)
        ws.gram += self._core_sq
        np.argmin(ws.gram, axis=1, out=ws.nearest)
        np.take(self._core, ws.nearest, axis=0, out=ws.diff, mode="clip")
        np.subtract(ws.x, ws.diff, out=ws.diff)
        np.square(ws.diff, out=ws.diff)
        np.sum(ws.diff, axis=1, out=ws.best)
        np.sqrt(ws.best, out=out)

    def _check_batch(self, x: npt.ArrayLike) -> npt.NDArray[Any]:
        arr = np.asarray(x)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise _model_error(f"input must be (n_rows, {self.n_features}), got shape {arr.shape}")
        if arr.dtype.kind not in "fiub":
            raise _model_error(f"input must be numeric, got dtype {arr.dtype}")
        return arr

    def nearest_distance(self, x: npt.ArrayLike) -> FloatArray:
        """Euclidean distance from each row to its nearest core sample (NaN rows give NaN)."""
        arr = self._check_batch(x)
        n_rows = arr.shape[0]
        out = np.empty(n_rows, dtype=np.float64)
        with self._lock:
            for start in range(0, n_rows, self._block_rows):
                stop = min(start + self._block_rows, n_rows)
                self._nearest_block(self._workspace(stop - start), arr[start:stop], out[start:stop])
        return out

    def score(self, x: npt.ArrayLike) -> FloatArray:
        """``nearest_distance / eps``: > 1 means no cluster would take the row (outlier)."""
        scores = self.nearest_distance(x)
        scores /= self._eps
        return scores

    def is_outlier(self, x: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """True where the nearest core sample is farther than eps (NaN rows count as outliers)."""
        distance = self.nearest_distance(x)
        return ~(distance <= self._eps)

    def update(self, sample: npt.ArrayLike) -> float:
        """Score one row (n_features,) for this tick; equals ``score([sample])[0]``.

        The same search as the batch path on 1-D buffers allocated at construction.
        """
        arr = np.asarray(sample)
        if arr.shape != (self.n_features,):
            raise _model_error(f"sample must be ({self.n_features},), got shape {arr.shape}")
        ws = self._single
        x = ws.x[0]
        diff = ws.diff[0]
        with self._lock:
            np.copyto(x, arr, casting="unsafe")
            best = self._nearest_f32(x)
            if best < 0:
                gram = ws.gram[0]
                x.dot(self._core_t_m2, gram)
                gram += self._core_sq
                best = int(gram.argmin())
            np.subtract(x, self._core[best], out=diff)
            distance = math.sqrt(float(diff.dot(diff)))
        return distance / self._eps

    def _nearest_f32(self, x: FloatArray) -> int:
        """Index of the nearest core by the float32 search, or -1 when it cannot be trusted."""
        if self._gram32.size < 2:
            return -1
        np.copyto(self._x32, x, casting="same_kind")
        gram = self._gram32
        self._x32.dot(self._core_t_m2_32, gram)
        gram += self._core_sq_32
        best = int(gram.argmin())
        first = float(gram[best])
        gram[best] = np.inf
        runner_up = float(gram[int(gram.argmin())])
        tolerance = self._slack * (float(x.dot(x)) + self._max_core_sq)
        return best if runner_up - first > tolerance else -1

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The model as plain arrays (copies), the inverse of `from_arrays`."""
        return {
            "core_samples": self._core.copy(),
            "eps": np.array(self._eps, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.ArrayLike]) -> DbscanScorer:
        """Rebuild from `to_arrays` output; raises ModelError if an array is missing or bad."""
        cls.check_arrays(arrays)
        return cls(arrays["core_samples"], float(np.asarray(arrays["eps"])))


