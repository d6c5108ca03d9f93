"""Running trained models on the device (the product only loads and runs them; training builds).

numpy and the TFLite runtime only: nothing here imports TensorFlow, scikit-learn or pandas.
"""

from models.bundle import Bundle, BundleError, load_bundle
from models.dbscan import DbscanScorer
from models.features import (
    FEATURE_SPEC_VERSION,
    VITAL_NAMES,
    FeatureSpec,
    FeatureSpecError,
    FeatureStream,
    MultiBedFeatureStream,
    compute_features,
)
from models.iforest import IsolationForestScorer
from models.logistic import LogisticScorer
from models.npz import ModelFileError
from models.scaler import ScalerError, Standardizer
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
    "FEATURE_SPEC_VERSION",
    "VITAL_NAMES",
    "Bundle",
    "BundleError",
    "DbscanScorer",
    "FeatureSpec",
    "FeatureSpecError",
    "FeatureStream",
    "IsolationForestScorer",
    "LogisticScorer",
    "ModelError",
    "ModelFileError",
    "MultiBedFeatureStream",
    "NoBackendError",
    "ScalerError",
    "Standardizer",
    "TFLiteModel",
    "backend_name",
    "compute_features",
    "load_bundle",
    "load_interpreter",
]
