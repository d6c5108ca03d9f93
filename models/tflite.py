"""One small adapter over whichever TFLite runtime the device has.

Why an adapter: `tflite-runtime` 2.14 was built against numpy 1 and fails at interpreter creation
under numpy 2 (``_ARRAY_API not found``). Its maintained successor LiteRT (`ai-edge-litert`,
module ``ai_edge_litert.interpreter``) runs on numpy 2 with Python 3.11 and is what
``vigil[edge]`` installs. Older Pi images may only have ``tflite_runtime``, and a training box
has full TensorFlow. The backends are tried in that order, lazily, on first use:

1. ``ai_edge_litert.interpreter`` (LiteRT)
2. ``tflite_runtime.interpreter``
3. ``tensorflow.lite`` (imported only when both others are absent: it is large and slow)

`load_interpreter` creates the interpreter once; the returned `TFLiteModel` is reused for every
call. It checks inputs against the model (shape and dtype, `ModelError` naming expected vs got),
quantizes float input for int8/uint8 models and dequantizes their output, using buffers
allocated once at load time. Calls are serialized by a lock: a TFLite interpreter must not be
invoked from two threads at once.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "BACKENDS",
    "ModelError",
    "NoBackendError",
    "TFLiteModel",
    "backend_name",
    "load_interpreter",
]

_log = logging.getLogger(__name__)

BACKENDS: Final = ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")
"""Runtime names `backend_name` can return, in the order they are tried."""

_QUANTIZED_DTYPES: Final = (np.dtype(np.int8), np.dtype(np.uint8))


class ModelError(Exception):
    """A model cannot be loaded or run: bad file, unsupported layout, or wrong input."""


class NoBackendError(ModelError):
    """None of the TFLite runtimes is installed."""


@dataclass(frozen=True, slots=True)
class _Backend:
    name: str
    interpreter_class: Any


def _import_backend(name: str) -> _Backend:
    """Import one backend; raises ImportError (or what a broken build raises) if unusable."""
    if name == "ai_edge_litert":
        module = importlib.import_module("ai_edge_litert.interpreter")
        return _Backend(name, module.Interpreter)
    if name == "tflite_runtime":
        module = importlib.import_module("tflite_runtime.interpreter")
        return _Backend(name, module.Interpreter)
    module = importlib.import_module("tensorflow")
    return _Backend(name, module.lite.Interpreter)


@functools.cache
def _find_backend() -> _Backend:
    failures: list[str] = []
    for name in BACKENDS:
        try:
            backend = _import_backend(name)
        except (ImportError, AttributeError) as exc:
            # AttributeError: a module built against numpy 1 can fail this way under numpy 2.
            failures.append(f"{name}: {exc}")
            continue
        _log.info("TFLite runtime: %s", name)
        return backend
    raise NoBackendError(
        "no TFLite runtime found; install ai-edge-litert (pip install 'vigil[edge]'). Tried "
        + "; ".join(failures)
    )


def backend_name() -> str:
    """Which runtime serves models: "ai_edge_litert", "tflite_runtime" or "tensorflow.lite".

    Raises NoBackendError if none is installed.
    """
    return _find_backend().name


def _shape(detail: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(d) for d in detail["shape"])


def _quantization(detail: dict[str, Any]) -> tuple[float, int]:
    """(scale, zero_point) of a tensor; scale 0.0 means not quantized."""
    params = detail.get("quantization_parameters") or {}
    scales = params.get("scales")
    if scales is not None and len(scales) > 1:
        raise ModelError(
            f"tensor {detail['name']!r} is quantized per axis ({len(scales)} scales); "
            "only per-tensor quantization is supported on model inputs and outputs"
        )
    scale, zero_point = detail["quantization"]
    return float(scale), int(zero_point)


class TFLiteModel:
    """A loaded single-input, single-output TFLite model; create with `load_interpreter`.

    `predict(x)` takes real values: float32 for float models and for int8/uint8 models with
    quantization parameters (the adapter quantizes), or the raw integer dtype for integer
    models without them. It returns float32 for float and quantized models.
    """

    def __init__(self, interpreter: Any, path: Path, backend: str) -> None:
        """Wrap an interpreter whose tensors are allocated; validates the model's layout."""
        self.path = path
        self.backend = backend
        self._interpreter = interpreter
        self.input_details: list[dict[str, Any]] = list(interpreter.get_input_details())
        self.output_details: list[dict[str, Any]] = list(interpreter.get_output_details())
        if len(self.input_details) != 1 or len(self.output_details) != 1:
            raise ModelError(
                f"{path}: expected a model with 1 input and 1 output, got "
                f"{len(self.input_details)} inputs and {len(self.output_details)} outputs"
            )
        inp, out = self.input_details[0], self.output_details[0]
        self._in_index: int = int(inp["index"])
        self._out_index: int = int(out["index"])
        self._in_dtype = np.dtype(inp["dtype"])
        self._out_dtype = np.dtype(out["dtype"])
        self.input_shape: tuple[int, ...] = _shape(inp)
        self.output_shape: tuple[int, ...] = _shape(out)
        self._in_scale, self._in_zero = _quantization(inp)
        self._out_scale, self._out_zero = _quantization(out)
        self._quantize_in = self._in_dtype in _QUANTIZED_DTYPES and self._in_scale > 0
        if self._quantize_in:
            info = np.iinfo(self._in_dtype)
            self._in_lo, self._in_hi = np.float32(info.min), np.float32(info.max)
            self._in_scale_f = np.float32(self._in_scale)
            self._in_zero_f = np.float32(self._in_zero)
        self._dequantize_out = self._out_dtype in _QUANTIZED_DTYPES and self._out_scale > 0
        self.expected_dtype = np.dtype(np.float32) if self._quantize_in else self._in_dtype
        # Preallocated: the quantized input, float scratch and rounding terms for quantizing, a
        # finiteness mask, the float output. A call allocates no array.
        self._in_buf = np.zeros(self.input_shape, dtype=self._in_dtype)
        self._scratch = np.zeros(self.input_shape, dtype=np.float32)
        self._round = np.zeros(self.input_shape, dtype=np.float32)
        self._finite = np.zeros(self.input_shape, dtype=np.bool_)
        self._out_buf = np.zeros(
            self.output_shape, dtype=np.float32 if self._dequantize_out else self._out_dtype
        )
        # Accessors of the input and output tensors as numpy views (made once, called per run).
        self._in_tensor = interpreter.tensor(self._in_index)
        self._out_tensor = interpreter.tensor(self._out_index)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        """Path, backend and tensor signature, for logs."""
        return (
            f"TFLiteModel({str(self.path)!r}, backend={self.backend!r}, "
            f"input={self.expected_dtype}{list(self.input_shape)}, "
            f"output={self._out_buf.dtype}{list(self.output_shape)})"
        )

    def _check(self, x: npt.NDArray[Any]) -> None:
        if not isinstance(x, np.ndarray):
            raise ModelError(f"{self.path.name}: input must be a numpy array, got {type(x)}")
        if x.shape != self.input_shape or x.dtype != self.expected_dtype:
            raise ModelError(
                f"{self.path.name}: input expected {self.expected_dtype} of shape "
                f"{self.input_shape}, got {x.dtype} of shape {x.shape}"
            )
        if self._quantize_in and not np.isfinite(x, out=self._finite).all():
            # NaN/inf have no int8 value; casting them is undefined rather than an error.
            raise ModelError(f"{self.path.name}: input contains NaN or infinity")

    def _quantize(self, x: npt.NDArray[np.float32]) -> None:
        """x / scale + zero_point, rounded half away from zero (as TFLite's QUANTIZE)."""
        s = self._scratch
        np.divide(x, self._in_scale_f, out=s)
        np.copysign(np.float32(0.5), s, out=self._round)
        np.add(s, self._round, out=s)
        np.trunc(s, out=s)
        np.add(s, self._in_zero_f, out=s)
        np.maximum(s, self._in_lo, out=s)
        np.minimum(s, self._in_hi, out=s)
        self._in_buf[...] = s

    def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Run the model on one input array; returns a new array (safe to keep).

        Raises ModelError if `x` does not have the model's input shape and dtype
        (see `input_shape`, `expected_dtype`), or if the runtime fails.
        """
        return self.predict_into(x).copy()

    def predict_into(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """`predict` without allocating: returns the model's own output buffer.

        For the per-tick hot path. The buffer is overwritten by the next call: copy what must
        be kept. Same checks and same numbers as `predict`; ``x`` may be a strided view.
        """
        self._check(x)
        with self._lock:
            src = x
            if self._quantize_in:
                self._quantize(x)
                src = self._in_buf
            # Through tensor views, not set_tensor/get_tensor (get_tensor copies the output).
            # A view must be gone before the next invoke, as the interpreter requires.
            view = self._in_tensor()
            view[...] = src
            del view
            try:
                self._interpreter.invoke()
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"{self.path.name}: inference failed: {exc}") from exc
            raw = self._out_tensor()
            if self._dequantize_out:
                np.subtract(raw, self._out_zero, out=self._out_buf, dtype=np.float32)
                np.multiply(self._out_buf, np.float32(self._out_scale), out=self._out_buf)
            else:
                self._out_buf[...] = raw
            del raw
            return self._out_buf


def load_interpreter(path: str | PathLike[str], num_threads: int = 1) -> TFLiteModel:
    """Load a .tflite file with the best available runtime and allocate its tensors.

    ``num_threads``: CPU threads for the kernels (1 keeps the Pi's other cores free for the
    serial reader and MQTT). Raises ModelError naming the path if the file is missing or not a
    valid model, NoBackendError if no runtime is installed.
    """
    model_path = Path(path)
    if num_threads < 1:
        raise ModelError(f"num_threads must be >= 1, got {num_threads}")
    if not model_path.is_file():
        raise ModelError(f"model file not found: {model_path}")
    backend = _find_backend()
    try:
        interpreter = backend.interpreter_class(model_path=str(model_path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError, AttributeError, OSError) as exc:
        # ValueError: not a flatbuffer / bad model; RuntimeError: unsupported op or allocation;
        # AttributeError: tflite_runtime built for numpy 1 under numpy 2 (_ARRAY_API).
        raise ModelError(
            f"cannot load model {model_path} with {backend.name}: {str(exc).strip()}"
        ) from exc
    model = TFLiteModel(interpreter, model_path, backend.name)
    _log.info("loaded %r", model)
    return model
