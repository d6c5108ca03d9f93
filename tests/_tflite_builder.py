"""Build tiny, real .tflite files for tests, without TensorFlow.

The product never builds models (training does, with TensorFlow); tests only need a known
model to push through the real interpreter. `ai_edge_litert` ships the TFLite flatbuffer schema
as generated Python (`schema_py_generated`, object API: ModelT, SubGraphT, ... with `.Pack`),
and `flatbuffers` is its dependency, so a one-layer model is a few objects packed into bytes.

Both builders make one FULLY_CONNECTED layer, y = x @ W.T + b (W is [units, features]):
- `dense_float32`: float32 in/out;
- `dense_int8`: int8 in/out with per-tensor (scale, zero_point), int8 symmetric weights and
  int32 bias at scale in_scale * w_scale, the layout TFLite's full-integer quantization uses.
  `int8_reference` computes what the int8 kernel should output, in float.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

_FILE_IDENTIFIER = b"TFL3"
_SCHEMA_VERSION = 3


@dataclass(frozen=True)
class QuantizedDense:
    """Quantized parameters of `dense_int8`, for computing the expected output."""

    in_scale: float
    in_zero_point: int
    w_scale: float
    w_q: np.ndarray  # int8 [units, features]
    b_q: np.ndarray  # int32 [units]
    out_scale: float
    out_zero_point: int


def _tensor(
    name: str,
    shape: list[int],
    tensor_type: int,
    buffer: int,
    *,
    scale: float | None = None,
    zero_point: int = 0,
) -> schema.TensorT:
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = shape
    tensor.type = tensor_type
    tensor.buffer = buffer
    if scale is not None:
        quant = schema.QuantizationParametersT()
        quant.scale = [scale]
        quant.zeroPoint = [zero_point]
        tensor.quantization = quant
    return tensor


def _buffer(data: np.ndarray | None) -> schema.BufferT:
    buf = schema.BufferT()
    if data is not None:
        buf.data = list(np.ascontiguousarray(data).view(np.uint8).ravel())
    return buf


def _pack(tensors: list[schema.TensorT], constants: list[np.ndarray]) -> bytes:
    """Tensors are [input, weights, bias, output]; buffers 0 (empty sentinel), 1, 2, 3, 4."""
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [0, 1, 2]
    op.outputs = [3]
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    options = schema.FullyConnectedOptionsT()
    options.fusedActivationFunction = schema.ActivationFunctionType.NONE
    op.builtinOptions = options

    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1

    subgraph = schema.SubGraphT()
    subgraph.tensors = tensors
    subgraph.inputs = [0]
    subgraph.outputs = [3]
    subgraph.operators = [op]
    subgraph.name = "main"

    model = schema.ModelT()
    model.version = _SCHEMA_VERSION
    model.operatorCodes = [code]
    model.subgraphs = [subgraph]
    model.description = "vigil test model"
    model.buffers = [_buffer(None), _buffer(None), *(_buffer(c) for c in constants), _buffer(None)]

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


def dense_float32(weights: np.ndarray, bias: np.ndarray, batch: int = 1) -> bytes:
    """A float32 FULLY_CONNECTED model: input [batch, features] -> output [batch, units]."""
    units, features = weights.shape
    tensors = [
        _tensor("input", [batch, features], schema.TensorType.FLOAT32, 1),
        _tensor("weights", [units, features], schema.TensorType.FLOAT32, 2),
        _tensor("bias", [units], schema.TensorType.FLOAT32, 3),
        _tensor("output", [batch, units], schema.TensorType.FLOAT32, 4),
    ]
    constants = [weights.astype(np.float32), bias.astype(np.float32)]
    return _pack(tensors, constants)


def quantize_dense(
    weights: np.ndarray,
    bias: np.ndarray,
    in_range: tuple[float, float],
    out_range: tuple[float, float],
) -> QuantizedDense:
    """Full-integer quantization parameters for given input and output value ranges."""

    def affine(lo: float, hi: float) -> tuple[float, int]:
        scale = (hi - lo) / 255.0
        return scale, int(np.clip(round(-128 - lo / scale), -128, 127))

    in_scale, in_zp = affine(*in_range)
    out_scale, out_zp = affine(*out_range)
    w_scale = float(np.abs(weights).max()) / 127.0
    w_q = np.clip(np.round(weights / w_scale), -127, 127).astype(np.int8)
    b_q = np.round(bias / (in_scale * w_scale)).astype(np.int32)
    return QuantizedDense(in_scale, in_zp, w_scale, w_q, b_q, out_scale, out_zp)


def dense_int8(q: QuantizedDense, batch: int = 1) -> bytes:
    """An int8 FULLY_CONNECTED model with the parameters of `quantize_dense`."""
    units, features = q.w_q.shape
    int8, int32 = schema.TensorType.INT8, schema.TensorType.INT32
    tensors = [
        _tensor("input", [batch, features], int8, 1, scale=q.in_scale, zero_point=q.in_zero_point),
        _tensor("weights", [units, features], int8, 2, scale=q.w_scale),
        _tensor("bias", [units], int32, 3, scale=q.in_scale * q.w_scale),
        _tensor("output", [batch, units], int8, 4, scale=q.out_scale, zero_point=q.out_zero_point),
    ]
    return _pack(tensors, [q.w_q, q.b_q])


def int8_reference(q: QuantizedDense, x: np.ndarray) -> np.ndarray:
    """What the int8 model computes for float input x, dequantized (integer arithmetic)."""
    x_q = np.clip(np.floor(x / q.in_scale + 0.5) + q.in_zero_point, -128, 127).astype(np.int64)
    acc = (x_q - q.in_zero_point) @ q.w_q.astype(np.int64).T + q.b_q
    y_q = np.clip(
        np.round(acc * (q.in_scale * q.w_scale / q.out_scale)) + q.out_zero_point, -128, 127
    )
    result: np.ndarray = ((y_q - q.out_zero_point) * q.out_scale).astype(np.float32)
    return result
