"""Writing a model bundle (the format and its checks are in `models.bundle`).

The bundle is staged in a temporary directory beside the destination and renamed into place
only when complete, so a crash mid-write never leaves something that looks like a bundle.
Golden outputs are what the training side computed (Keras, scikit-learn or the TFLite
interpreter); the device must reproduce them within ``atol`` through its own loaders.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.bundle import (
    GOLDEN_FILE,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    content_digest,
    sha256_file,
)

__all__ = ["ComponentFile", "Golden", "build_time", "write_bundle"]


@dataclass(frozen=True, slots=True)
class ComponentFile:
    """A component to ship: its loader kind and its file (copied under ``name``)."""

    kind: str
    source: Path
    name: str


@dataclass(frozen=True, slots=True)
class Golden:
    """Reference input and output of one component, and how close the device must come."""

    input: npt.NDArray[Any]
    output: npt.NDArray[Any]
    atol: float


def build_time() -> datetime:
    """Now, or ``SOURCE_DATE_EPOCH`` when set (reproducible builds: `make bundle`)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)


def write_bundle(
    dest: str | Path,
    *,
    bundle_version: str,
    components: Mapping[str, ComponentFile],
    golden: Mapping[str, Golden],
    feature_spec: Mapping[str, Any] | None = None,
    scaler: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, float] | None = None,
    training_data: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    requires: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
    created: datetime | None = None,
) -> Path:
    """Write a complete bundle directory at ``dest`` (which must not exist yet); ``created``
    defaults to `build_time`."""
    target = Path(dest)
    if target.exists():
        raise FileExistsError(f"{target} exists; a bundle is never written over another")
    missing = set(components) - set(golden)
    if missing:
        raise ValueError(f"components without golden vectors: {', '.join(sorted(missing))}")
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for comp in components.values():
            shutil.copyfile(comp.source, stage / comp.name)
        arrays = {}
        for name, g in golden.items():
            arrays[f"{name}.input"] = np.asarray(g.input)
            arrays[f"{name}.output"] = np.asarray(g.output)
        np.savez(stage / GOLDEN_FILE, **arrays)  # type: ignore[arg-type]
        files = {
            p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(stage.iterdir())
        }
        manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "bundle_version": bundle_version,
            "created": (created or build_time()).isoformat(timespec="seconds"),
            "files": files,
            "components": {n: {"kind": c.kind, "file": c.name} for n, c in components.items()},
            "golden": {n: {"atol": g.atol} for n, g in golden.items()},
            "feature_spec": dict(feature_spec or {}),
            "scaler": dict(scaler or {}),
            "thresholds": dict(thresholds or {}),
            "training_data": dict(training_data or {}),
            "metrics": dict(metrics or {}),
            "requires": dict(requires or {}),
            "extra": dict(extra or {}),
        }
        manifest["content_sha256"] = content_digest(manifest)
        (stage / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        for p in stage.iterdir():
            with p.open("rb") as f:
                os.fsync(f.fileno())
        stage.chmod(0o755)  # mkdtemp makes it private; a bundle is read by the service user
        stage.rename(target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return target
