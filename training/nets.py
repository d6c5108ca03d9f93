"""Keras model builders: the reconstruction autoencoder and the LSTM + attention forecaster.

Rules of this module:
- Every layer must convert to *builtin* TFLite ops, in float32 and in full int8: the device
  runs LiteRT without TensorFlow's select ops. That is why attention is written as
  Dense score -> Softmax -> Dot (FULLY_CONNECTED, SOFTMAX, BATCH_MATMUL) and not with
  `keras.layers.Attention`/`MultiHeadAttention` or a `Lambda`.
- Training and inference use different shapes of the same network. Training wants a dynamic
  batch and a symbolic LSTM loop; the converter needs a fixed batch and an unrolled LSTM
  (TensorFlow 2.21 / Keras 3: a dynamic batch fails on ``TensorListReserve``; a batch-1 WHILE
  loop converts in float but not to full int8; ``unroll=True`` converts to int8 and runs about
  4x faster). `inference_copy` rebuilds the twin from the model's config and copies weights.
- The device adapter (`models.tflite`) takes exactly one input and one output, so the
  forecaster's two heads are packed into one output vector by `inference_copy`:
  ``[forecast (horizon_steps x n_vitals, row-major: step, then vital)..., event logit /
  EVENT_LOGIT_SCALE]`` (models/forecaster.py says why a scaled logit and not the
  probability). `models.forecaster.split_packed` undoes that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import keras
from keras import layers

from models.forecaster import EVENT_LOGIT_SCALE

__all__ = [
    "EVENT_OUTPUT",
    "FORECAST_OUTPUT",
    "PACKED_OUTPUT",
    "build_autoencoder",
    "build_forecaster",
    "inference_copy",
]

FORECAST_OUTPUT: Final = "forecast"
"""Name of the forecaster's regression head: (batch, horizon_steps, n_vitals)."""
EVENT_OUTPUT: Final = "event"
"""Name of the forecaster's event head: (batch, 1), probability of an event in the horizon."""
EVENT_LOGIT: Final = "event_logit"
"""The layer before the event head's sigmoid: what the packed output carries (scaled)."""
PACKED_OUTPUT: Final = "packed"
"""Name of the single output of a multi-output model's inference copy."""

_RECURRENT_LAYERS: Final = frozenset({"LSTM", "GRU", "SimpleRNN"})


def build_autoencoder(
    n_features: int,
    latent: int,
    dropout: float,
    hidden: Sequence[int] = (32,),
) -> keras.Model:
    """Dense autoencoder: (batch, n_features) -> reconstruction of the same shape.

    The input is a feature vector or a flattened short window, already scaled; the anomaly
    score is the reconstruction MSE, so the output layer is linear. `latent` and `dropout`
    are the hyper-parameters chosen on validation; dropout sits after each hidden encoder
    and decoder layer and is the identity at inference (the converter drops it).
    """
    if n_features < 1 or latent < 1:
        raise ValueError(f"n_features and latent must be >= 1, got {n_features}, {latent}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    inputs = keras.Input((n_features,), name="features")
    x = inputs
    for i, units in enumerate(hidden):
        x = layers.Dense(units, activation="relu", name=f"enc_{i}")(x)
        x = layers.Dropout(dropout, name=f"enc_{i}_dropout")(x)
    x = layers.Dense(latent, name="latent")(x)
    for i, units in enumerate(reversed(hidden)):
        x = layers.Dense(units, activation="relu", name=f"dec_{i}")(x)
        x = layers.Dropout(dropout, name=f"dec_{i}_dropout")(x)
    outputs = layers.Dense(n_features, name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="autoencoder")


def build_forecaster(
    window_steps: int,
    n_vitals: int,
    horizon_steps: int,
    units: int,
    *,
    batch_size: int | None = None,
    unroll: bool = False,
    dropout: float = 0.0,
) -> keras.Model:
    """LSTM with attention over its time steps; two outputs, named and in this order:

    - ``forecast``: (batch, horizon_steps, n_vitals), the next minutes of (scaled) vitals;
    - ``event``: (batch, 1), sigmoid probability of an event within the horizon.

    Attention: a Dense(1) score per time step, softmax over time, and the score-weighted sum
    of the LSTM states (a batched matmul). The heads see that context and the last LSTM
    state, so attention adds to what a plain LSTM would know rather than replacing it.
    Train with the defaults (dynamic batch, symbolic loop); convert `inference_copy` of it.
    """
    if min(window_steps, n_vitals, horizon_steps, units) < 1:
        raise ValueError("window_steps, n_vitals, horizon_steps and units must be >= 1")
    inputs = keras.Input((window_steps, n_vitals), batch_size=batch_size, name="vitals")
    states, last, _ = layers.LSTM(
        units, return_sequences=True, return_state=True, unroll=unroll, name="lstm"
    )(inputs)
    scores = layers.Dense(1, name="attention_score")(states)  # (batch, steps, 1)
    scores = layers.Flatten(name="attention_flat")(scores)  # softmax runs on the last axis
    weights = layers.Softmax(name="attention_weights")(scores)  # (batch, steps)
    context = layers.Dot(axes=1, name="attention_context")([weights, states])  # (batch, units)
    summary = layers.Concatenate(name="summary")([context, last])
    if dropout > 0.0:
        summary = layers.Dropout(dropout, name="summary_dropout")(summary)
    forecast = layers.Dense(horizon_steps * n_vitals, name="forecast_flat")(summary)
    forecast = layers.Reshape((horizon_steps, n_vitals), name=FORECAST_OUTPUT)(forecast)
    logit = layers.Dense(1, name=EVENT_LOGIT)(summary)
    event = layers.Activation("sigmoid", name=EVENT_OUTPUT)(logit)
    return keras.Model(inputs, [forecast, event], name="forecaster")


def inference_copy(model: keras.Model, batch_size: int = 1, unroll: bool = True) -> keras.Model:
    """The conversion-shaped twin of a functional model, with the trained weights copied.

    The twin has a fixed batch of `batch_size` and its recurrent layers unrolled (see the
    module docstring for why the converter needs both). A model with several outputs gets
    one output, ``packed``: each output flattened and concatenated in the model's output
    order, because the device adapter runs single-output models only; an ``event`` output is
    packed as its logit divided by `EVENT_LOGIT_SCALE` (models/forecaster.py).
    """
    config: dict[str, Any] = model.get_config()
    for layer in config["layers"]:
        layer_config = layer["config"]
        if layer["class_name"] == "InputLayer":
            layer_config["batch_shape"] = (batch_size, *tuple(layer_config["batch_shape"])[1:])
        elif layer["class_name"] in _RECURRENT_LAYERS:
            layer_config["unroll"] = unroll
    twin = keras.Model.from_config(config)
    twin.set_weights(model.get_weights())
    if len(twin.outputs) == 1:
        return twin
    outputs = list(twin.outputs)
    for i, name in enumerate(twin.output_names):
        if name == EVENT_OUTPUT:
            logit = twin.get_layer(EVENT_LOGIT).output
            outputs[i] = layers.Rescaling(1.0 / EVENT_LOGIT_SCALE, name="event_logit_scaled")(logit)
    flat = [
        layers.Flatten(name=f"{PACKED_OUTPUT}_{i}")(output) for i, output in enumerate(outputs)
    ]
    packed = layers.Concatenate(name=PACKED_OUTPUT)(flat)
    return keras.Model(twin.inputs, packed, name=f"{model.name}_packed")
