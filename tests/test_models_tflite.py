"""models.tflite against real .tflite files run by the real interpreter.

The models are one FULLY_CONNECTED layer built in tests/_tflite_builder.py from the flatbuffer
schema that ai-edge-litert ships (no TensorFlow). Tolerances:
- float32 model vs numpy float64 `x @ W.T + b`: 1e-5 absolute (float32 accumulation of 8 terms);
- int8 model vs an integer reference of the same quantized arithmetic: 1 output LSB (TFLite
  requantizes with a fixed-point multiplier, the reference with float rounding);
- int8 model vs the float math: 1 output LSB + half an input step times sum|W| + half a weight
  step times sum|x| (the quantization error the int8 model is allowed).
The fallback order is checked by hiding modules in sys.modules and offering LiteRT's own
Interpreter class under the older backends' module names.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is in vigil[edge]")

from _tflite_builder import (
    QuantizedDense,
    dense_float32,
    dense_int8,
    int8_reference,
    quantize_dense,
)
from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter

from models import tflite
from models.tflite import ModelError, NoBackendError, load_interpreter

FEATURES, UNITS, BATCH = 8, 3, 4
# Asymmetric ranges, so that zero points are not 0 and their handling is exercised.
IN_RANGE, OUT_RANGE = (-2.0, 6.0), (-28.0, 12.0)


@pytest.fixture(autouse=True)
def _fresh_backend_cache() -> Iterator[None]:
    tflite._find_backend.cache_clear()
    yield
    tflite._find_backend.cache_clear()


@pytest.fixture(scope="module")
def layer() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    weights = rng.normal(0.0, 0.5, size=(UNITS, FEATURES)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, size=UNITS).astype(np.float32)
    return weights, bias


@pytest.fixture
def float_model_path(tmp_path: Path, layer: tuple[np.ndarray, np.ndarray]) -> Path:
    path = tmp_path / "dense_f32.tflite"
    path.write_bytes(dense_float32(*layer, batch=BATCH))
    return path


@pytest.fixture(scope="module")
def quantized(layer: tuple[np.ndarray, np.ndarray]) -> QuantizedDense:
    weights, bias = layer
    # Every output reachable from inputs in IN_RANGE lies inside OUT_RANGE (no saturation).
    lo, hi = IN_RANGE
    reach_hi = np.maximum(weights * lo, weights * hi).sum(axis=1) + bias
    reach_lo = np.minimum(weights * lo, weights * hi).sum(axis=1) + bias
    assert OUT_RANGE[0] < reach_lo.min()
    assert reach_hi.max() < OUT_RANGE[1]
    q = quantize_dense(weights, bias, IN_RANGE, OUT_RANGE)
    assert q.in_zero_point != 0
    assert q.out_zero_point != 0
    return q


@pytest.fixture
def int8_model_path(tmp_path: Path, quantized: QuantizedDense) -> Path:
    path = tmp_path / "dense_int8.tflite"
    path.write_bytes(dense_int8(quantized, batch=BATCH))
    return path


def test_litert_is_the_backend_here_and_tensorflow_is_not_imported() -> None:
    already = "tensorflow" in sys.modules
    assert tflite.backend_name() == "ai_edge_litert"
    if not already:
        assert "tensorflow" not in sys.modules


def test_float_model_matches_numpy(
    float_model_path: Path, layer: tuple[np.ndarray, np.ndarray]
) -> None:
    weights, bias = layer
    model = load_interpreter(float_model_path)
    assert model.backend == "ai_edge_litert"
    assert model.input_shape == (BATCH, FEATURES)
    assert model.output_shape == (BATCH, UNITS)
    assert model.expected_dtype == np.float32
    assert model.input_details[0]["name"] == "input"
    assert model.output_details[0]["name"] == "output"
    rng = np.random.default_rng(1)
    for _ in range(20):  # one interpreter, reused
        x = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
        want = x.astype(np.float64) @ weights.T.astype(np.float64) + bias
        got = model.predict(x)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_int8_model_quantizes_and_dequantizes(
    int8_model_path: Path, quantized: QuantizedDense, layer: tuple[np.ndarray, np.ndarray]
) -> None:
    weights, bias = layer
    model = load_interpreter(int8_model_path, num_threads=2)
    assert model.input_details[0]["dtype"] == np.int8
    assert model.expected_dtype == np.float32  # the caller passes real values
    rng = np.random.default_rng(2)
    q = quantized
    for _ in range(50):
        x = rng.uniform(*IN_RANGE, size=(BATCH, FEATURES)).astype(np.float32)
        got = model.predict(x)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, int8_reference(q, x), rtol=0, atol=q.out_scale * 1.001)
        bound = (
            q.out_scale
            + 0.5 * q.in_scale * np.abs(weights).sum(axis=1)
            + 0.5 * q.w_scale * np.abs(x).sum(axis=1, keepdims=True)
        )
        assert np.all(np.abs(got - (x @ weights.T + bias)) <= bound)


def test_int8_input_saturates_instead_of_wrapping(
    int8_model_path: Path, quantized: QuantizedDense
) -> None:
    model = load_interpreter(int8_model_path)
    x = np.full((BATCH, FEATURES), 100.0, dtype=np.float32)  # far beyond IN_RANGE
    x[1] = -100.0
    clipped = np.clip(x, *IN_RANGE).astype(np.float32)
    np.testing.assert_allclose(
        model.predict(x), int8_reference(quantized, clipped), rtol=0, atol=quantized.out_scale
    )


def test_int8_input_rounds_half_away_from_zero(tmp_path: Path) -> None:
    """As TFLite's QUANTIZE does. An identity layer with input step 0.25 (exact in binary)
    returns the quantized input itself, so inputs exactly between two steps show the rounding.
    """
    eye = np.eye(4, dtype=np.float32)
    q = quantize_dense(eye, np.zeros(4, np.float32), (-16.0, 47.75), (-16.0, 47.75))
    assert q.in_scale == q.out_scale == 0.25
    path = tmp_path / "identity_int8.tflite"
    path.write_bytes(dense_int8(q, batch=2))
    model = load_interpreter(path)
    x = np.array([[0.125, 0.375, -0.125, -0.375], [2.625, -2.625, 1.0, -15.875]], np.float32)
    want = np.array([[0.25, 0.5, -0.25, -0.5], [2.75, -2.75, 1.0, -16.0]], np.float32)
    np.testing.assert_array_equal(model.predict(x), want)


def test_results_are_not_overwritten_by_the_next_call(float_model_path: Path) -> None:
    model = load_interpreter(float_model_path)
    first = model.predict(np.ones((BATCH, FEATURES), dtype=np.float32))
    keep = first.copy()
    model.predict(np.zeros((BATCH, FEATURES), dtype=np.float32))
    np.testing.assert_array_equal(first, keep)


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (np.zeros((BATCH, FEATURES), dtype=np.float64), "got float64"),
        (np.zeros((FEATURES,), dtype=np.float32), f"got float32 of shape ({FEATURES},)"),
        (np.zeros((1, FEATURES), dtype=np.float32), f"shape (1, {FEATURES})"),
        (np.zeros((BATCH, FEATURES), dtype=np.int8), "got int8"),
    ],
)
def test_wrong_input_names_expected_and_got(
    float_model_path: Path, x: np.ndarray, fragment: str
) -> None:
    model = load_interpreter(float_model_path)
    with pytest.raises(ModelError, match=r"expected float32 of shape \(4, 8\)") as info:
        model.predict(x)
    assert fragment in str(info.value)
    assert float_model_path.name in str(info.value)


def test_non_finite_input_to_a_quantized_model_is_refused(int8_model_path: Path) -> None:
    model = load_interpreter(int8_model_path)
    x = np.zeros((BATCH, FEATURES), dtype=np.float32)
    x[0, 0] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        model.predict(x)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tflite"
    with pytest.raises(ModelError, match=r"nope\.tflite"):
        load_interpreter(missing)


@pytest.mark.parametrize("content", ["empty", "garbage", "truncated"])
def test_garbled_file_names_the_path(tmp_path: Path, float_model_path: Path, content: str) -> None:
    data = {
        "empty": b"",
        "garbage": np.random.default_rng(3).bytes(600),
        "truncated": float_model_path.read_bytes()[:200],
    }[content]
    path = tmp_path / f"{content}.tflite"
    path.write_bytes(data)
    with pytest.raises(ModelError, match=rf"{content}\.tflite"):
        load_interpreter(path)


def test_bad_thread_count_is_refused(float_model_path: Path) -> None:
    with pytest.raises(ModelError, match="num_threads"):
        load_interpreter(float_model_path, num_threads=0)


# ---- fallback order -------------------------------------------------------------------------


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: object) -> None:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def _hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError


def test_falls_back_to_tflite_runtime(
    monkeypatch: pytest.MonkeyPatch, float_model_path: Path
) -> None:
    _hide(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "tensorflow")
    _fake_module(monkeypatch, "tflite_runtime")
    _fake_module(monkeypatch, "tflite_runtime.interpreter", Interpreter=LiteRTInterpreter)
    assert tflite.backend_name() == "tflite_runtime"
    model = load_interpreter(float_model_path)
    assert model.backend == "tflite_runtime"
    assert model.predict(np.zeros((BATCH, FEATURES), dtype=np.float32)).shape == (BATCH, UNITS)


def test_falls_back_to_tensorflow_lite_last(
    monkeypatch: pytest.MonkeyPatch, float_model_path: Path
) -> None:
    _hide(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter")
    _hide(monkeypatch, "tflite_runtime", "tflite_runtime.interpreter")
    lite = types.SimpleNamespace(Interpreter=LiteRTInterpreter)
    _fake_module(monkeypatch, "tensorflow", lite=lite)
    assert tflite.backend_name() == "tensorflow.lite"
    assert load_interpreter(float_model_path).backend == "tensorflow.lite"


def test_no_backend_at_all(monkeypatch: pytest.MonkeyPatch, float_model_path: Path) -> None:
    _hide(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter")
    _hide(monkeypatch, "tflite_runtime", "tflite_runtime.interpreter", "tensorflow")
    with pytest.raises(NoBackendError, match="ai-edge-litert"):
        tflite.backend_name()
    with pytest.raises(ModelError, match="no TFLite runtime"):
        load_interpreter(float_model_path)


def test_numpy1_tflite_runtime_failure_becomes_model_error(
    monkeypatch: pytest.MonkeyPatch, float_model_path: Path
) -> None:
    """What tflite-runtime 2.14 does under numpy 2: it imports, then fails on creation."""

    class BrokenInterpreter:
        def __init__(self, **_kwargs: object) -> None:
            raise AttributeError("_ARRAY_API not found")

    _hide(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter")
    _fake_module(monkeypatch, "tflite_runtime")
    _fake_module(monkeypatch, "tflite_runtime.interpreter", Interpreter=BrokenInterpreter)
    with pytest.raises(ModelError, match=r"dense_f32\.tflite with tflite_runtime.*_ARRAY_API"):
        load_interpreter(float_model_path)
