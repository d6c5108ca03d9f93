"""The forecaster's one output vector (models/BUNDLE.md): what it holds and how to read it.

The device adapter runs single-output models, so the LSTM's two heads travel packed in one
int8 tensor: ``[forecast (horizon_steps x n_vitals, row-major: step, then vital) ...,
event_logit / logit_scale]``. The event head is packed as a scaled LOGIT, not a probability:
one int8 tensor has one scale, and TFLite's int8 sigmoid has a fixed 1/256 step, so a packed
probability kept fewer than 200 distinct levels, almost all of them tied in the two tails
where an alert threshold sits (validation AUROC fell by 0.007-0.010 from float to int8 on
the tiny preset, entirely from that rounding). A logit spreads the tails out; dividing it by
``logit_scale`` (`EVENT_LOGIT_SCALE` when training writes a bundle, read back from
``extra.forecaster.logit_scale``) keeps it in the forecast's range, so neither head coarsens
the other's step. Readers recover ``p_event = sigmoid(logit_scale * value)``.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.logistic import stable_sigmoid

__all__ = ["EVENT_LOGIT_SCALE", "event_probability", "split_packed"]

EVENT_LOGIT_SCALE: Final = 8.0
"""What training divides the event logit by before packing (logits of +-8 map to +-1)."""


def event_probability(value: float, logit_scale: float) -> float:
    """``sigmoid(logit_scale * value)`` for one packed event value (no array, no overflow)."""
    x = logit_scale * value
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def split_packed(
    packed: npt.NDArray[np.floating[Any]], horizon_steps: int, n_vitals: int, logit_scale: float
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.float64]]:
    """Packed outputs (batch, horizon_steps * n_vitals + 1) -> (forecast, p_event).

    forecast is (batch, horizon_steps, n_vitals) in the input's scaled units; p_event (batch,).
    """
    width = horizon_steps * n_vitals
    if packed.ndim != 2 or packed.shape[1] != width + 1:
        raise ValueError(
            f"expected packed output of shape (batch, {width + 1}), got {packed.shape}"
        )
    if not logit_scale > 0:
        raise ValueError(f"logit_scale must be > 0, got {logit_scale}")
    forecast = packed[:, :width].reshape(-1, horizon_steps, n_vitals)
    return forecast, stable_sigmoid(logit_scale * packed[:, width].astype(np.float64))
