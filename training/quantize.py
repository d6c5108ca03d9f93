"""Keras model -> TFLite bytes (float32 reference and full int8), checked for builtin ops only.

Rules of this module:
- The device runs LiteRT without TensorFlow select ("Flex") ops or custom ops, so every
  conversion is restricted to builtin op sets, and `assert_builtin_only` re-checks the
  flatbuffer itself (operator codes) so a file from anywhere can be refused before it ships.
- int8 is *full* integer: int8 input and output tensors and ``TFLITE_BUILTINS_INT8`` only, so
  the converter fails rather than leaving float ops behind; the device adapter quantizes the
  float input and dequantizes the output with the tensors' (scale, zero_point).
- Convert the conversion-shaped copy (`training.nets.inference_copy`), not the training model:
  an LSTM with a dynamic batch fails with ``TensorListReserve ... element_shape to be static``.
- A recurrent layer that is not unrolled is refused *before* int8 conversion: with TF 2.21 the
  converter's full-integer pass dies with SIGSEGV on the batch-1 WHILE form of an LSTM,
  taking the Python process with it, so no exception could be caught.
- Converter failures are re-raised as `ConversionError` carrying only the MLIR ``error:``
  lines; the raw message is kilobytes of source locations.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Collection, Iterator
from typing import Any, Final

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema

__all__ = [
    "DEFAULT_CALIBRATION_SAMPLES",
    "ConversionError",
    "NonBuiltinOpError",
    "assert_builtin_only",
    "builtin_ops",
    "io_types",
    "to_tflite_float",
    "to_tflite_int8",
]

DEFAULT_CALIBRATION_SAMPLES: Final = 1000
"""Representative samples for int8 calibration. More than TFLite's usual "a few hundred":
on the test autoencoder, calibrating on 256 of 2000 training vectors clipped the tails and
doubled the int8-vs-float reconstruction error (RMS 0.031 vs 0.018); calibrating costs only
one float inference per sample."""

_OPERATOR_NAMES: Final = {
    code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
_TENSOR_TYPE_NAMES: Final = {
    code: name for name, code in vars(schema.TensorType).items() if not name.startswith("_")
}
_CUSTOM_PREFIX: Final = "CUSTOM:"
_ERROR_LINE: Final = re.compile(r"error: (.+)")


class ConversionError(RuntimeError):
    """The TFLite converter refused the model; the message keeps only its error lines."""


class NonBuiltinOpError(ValueError):
    """A .tflite model uses ops the device runtime does not have (custom/Flex, or forbidden)."""

    def __init__(self, ops: Collection[str], reason: str) -> None:
        """Keep the offending op names in `ops` for callers and tests."""
        self.ops = tuple(sorted(ops))
        super().__init__(f"{reason}: {', '.join(self.ops)}")


def _representative_batches(
    representative: npt.NDArray[Any], batch: int, n_samples: int
) -> list[npt.NDArray[np.float32]]:
    """Evenly spaced calibration batches: deterministic, and spanning a time-ordered set."""
    n_batches = max(1, min(n_samples, len(representative)) // batch)
    starts = np.unique(np.linspace(0, len(representative) - batch, n_batches).round().astype(int))
    return [np.ascontiguousarray(representative[s : s + batch], dtype=np.float32) for s in starts]


def _strip_location(line: str) -> str:
    """Drop a leading MLIR ``loc(...)``: "loc(callsite(...)): 'tf.X' op ..." -> "'tf.X' op ..."."""
    if not line.startswith("loc("):
        return line
    depth = 0
    for i, char in enumerate(line[3:], start=3):  # from the "(" of "loc("
        depth += (char == "(") - (char == ")")
        if depth == 0:
            return line[i + 1 :].lstrip(": ")
    return line


def _convert(converter: Any) -> bytes:
    """Run the converter quietly; Keras export prints the SavedModel endpoints to stdout."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # About the legacy mean/std input statistics; a representative dataset replaces them.
            warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
            result = converter.convert()
    except Exception as exc:  # ConverterError and friends share no public base class
        found = (_strip_location(m.group(1).strip()) for m in _ERROR_LINE.finditer(str(exc)))
        lines = list(dict.fromkeys(found))
        summary = "; ".join(lines) if lines else str(exc).strip()[-2000:]
        raise ConversionError(f"TFLite conversion failed: {summary}") from exc
    return bytes(result)


def to_tflite_float(model: keras.Model) -> bytes:
    """float32 TFLite bytes with builtin ops only: the reference the int8 model is judged by.

    No optimizations, so the weights stay float32 and the output matches Keras to ~1e-6.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    tflite = _convert(converter)
    assert_builtin_only(tflite)
    return tflite


def to_tflite_int8(
    model: keras.Model,
    representative: npt.NDArray[Any],
    *,
    n_samples: int = DEFAULT_CALIBRATION_SAMPLES,
) -> bytes:
    """Full-integer TFLite bytes: int8 weights, activations, input and output.

    `representative` is an array of model inputs (samples on axis 0, float, the same scaling
    as at run time, typically the training or validation windows); up to `n_samples` evenly
    spaced ones calibrate the activation ranges. They are fed in the model's batch size (1
    for a dynamic batch), since the inference copy has a fixed batch.
    """
    input_shape = tuple(model.inputs[0].shape)
    if representative.ndim != len(input_shape) or representative.shape[1:] != input_shape[1:]:
        raise ValueError(
            f"representative samples must have shape (n, {', '.join(map(str, input_shape[1:]))})"
            f", got {representative.shape}"
        )
    if not np.isfinite(representative).all():
        raise ValueError("representative samples contain NaN or infinity")
    _refuse_looped_recurrence(model)
    batch = input_shape[0] or 1
    if len(representative) < batch or n_samples < 1:
        raise ValueError(f"need at least {batch} representative samples and n_samples >= 1")
    batches = _representative_batches(representative, batch, n_samples)

    def dataset() -> Iterator[list[npt.NDArray[np.float32]]]:
        for sample in batches:
            yield [sample]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    tflite = _convert(converter)
    assert_builtin_only(tflite)
    inputs, outputs = io_types(tflite)
    if set(inputs) | set(outputs) != {"INT8"}:
        raise ConversionError(f"not fully int8: inputs {inputs}, outputs {outputs}")
    return tflite


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Layers of a model and of the models nested in it."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _refuse_looped_recurrence(model: keras.Model) -> None:
    """Raise before the converter segfaults on a WHILE-loop LSTM (see module docstring)."""
    looped = [layer.name for layer in _all_layers(model) if getattr(layer, "unroll", True) is False]
    if looped:
        raise ConversionError(
            f"recurrent layers {looped} are not unrolled; full-int8 conversion of the WHILE "
            "form crashes the TF 2.21 converter. Convert inference_copy(model, unroll=True)."
        )


def _model(tflite_bytes: bytes) -> Any:
    try:
        return schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    except Exception as exc:  # flatbuffers raises struct.error, IndexError, ...
        raise ValueError(f"not a TFLite flatbuffer ({len(tflite_bytes)} bytes): {exc}") from exc


def builtin_ops(tflite_bytes: bytes) -> list[str]:
    """Names of the operator codes a .tflite model uses, sorted, e.g. ["FULLY_CONNECTED", ...].

    Custom ops (including TensorFlow select ops, which TFLite stores as custom ops named
    ``Flex<TfOp>``) appear as ``"CUSTOM:<name>"``. Reads the flatbuffer with the schema
    LiteRT ships, so it needs no TensorFlow.
    """
    names: set[str] = set()
    for code in _model(tflite_bytes).operatorCodes or []:
        # Schema rule: the real code is the larger of the two fields (the deprecated int8
        # field saturates at PLACEHOLDER_FOR_GREATER_OP_CODES = 127).
        value = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if value == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode.decode() if code.customCode else "?"
            names.add(_CUSTOM_PREFIX + custom)
        else:
            names.add(_OPERATOR_NAMES.get(value, f"UNKNOWN_{value}"))
    return sorted(names)


def assert_builtin_only(tflite_bytes: bytes, *, forbidden: Collection[str] = ()) -> list[str]:
    """Refuse a model using custom/select ops, or any of the `forbidden` builtin op names.

    Returns the op names (as `builtin_ops`) when the model passes. Raises NonBuiltinOpError
    listing every offending op. Use ``forbidden={"WHILE"}`` to insist on an unrolled LSTM.
    """
    ops = builtin_ops(tflite_bytes)
    custom = [op for op in ops if op.startswith(_CUSTOM_PREFIX) or op.startswith("UNKNOWN_")]
    if custom:
        raise NonBuiltinOpError(
            custom, "model uses ops the device runtime lacks (custom or TensorFlow select ops)"
        )
    refused = [op for op in ops if op in set(forbidden)]
    if refused:
        raise NonBuiltinOpError(refused, "model uses forbidden builtin ops")
    return ops


def io_types(tflite_bytes: bytes) -> tuple[list[str], list[str]]:
    """Tensor type names (e.g. "INT8", "FLOAT32") of the main subgraph's inputs and outputs."""
    subgraph = _model(tflite_bytes).subgraphs[0]

    def names(indices: Any) -> list[str]:
        return [_TENSOR_TYPE_NAMES[int(subgraph.tensors[i].type)] for i in indices]

    return names(subgraph.inputs), names(subgraph.outputs)
