"""Running trained models on the device (the product only loads and runs them; training builds)."""

from models.tflite import (
    BACKENDS,
    ModelError,
    NoBackendError,
    TFLiteModel,
    backend_name,
    load_interpreter,
)

__all__ = [
    "BACKENDS",
    "ModelError",
    "NoBackendError",
    "TFLiteModel",
    "backend_name",
    "load_interpreter",
]
