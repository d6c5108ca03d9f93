"""The model bundle: what training hands to the device, and the checks before it is used.

A bundle is a directory::

    manifest.json      schema and bundle version, creation time, feature spec, scaler,
                       thresholds, every file with its sha256 and size, the components and
                       their kinds, training-data fingerprint, metrics, golden tolerances,
                       and content_sha256 over all of that
    golden.npz         for each component C: arrays "C.input" and "C.output"
    <component files>  .tflite (TFLite, run by models.tflite) and .npz (numpy scorers)

`load_bundle` refuses a bundle — raising BundleError that names what failed — unless the
manifest parses and is of a schema this code knows, every listed file is there with its size
and sha256, no component lacks a file or a loader, and every component reproduces its golden
outputs within the stated tolerance through the device's own loaders. Nothing is swapped in
before all of that holds, so a bad bundle never replaces a good one. Thresholds and scaler
statistics live only here; the device has no second copy of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from models.beat_classifier import ROW_KIND, TREES_KIND, RowModel
from models.dbscan import DbscanScorer
from models.gbdt import GradientBoostedTrees
from models.iforest import IsolationForestScorer
from models.logistic import LogisticScorer

__all__ = [
    "GOLDEN_FILE",
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleError",
    "Component",
    "FileEntry",
    "Manifest",
    "bundle_location",
    "content_digest",
    "load_bundle",
    "packaged_bundle",
    "register_loader",
    "sha256_file",
    "verify_files",
]

_log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
MANIFEST_FILE: Final = "manifest.json"
GOLDEN_FILE: Final = "golden.npz"
_HASH_CHUNK: Final = 1 << 20


class BundleError(Exception):
    """A bundle that must not be used; the message names the file, field or component."""


class Component(Protocol):
    """A loaded model part: scores a batch of rows (shape and meaning per kind)."""

    def score(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Scores for the rows of ``x``."""
        ...


Loader = Callable[[Path], Component]
_LOADERS: dict[str, Loader] = {}


def register_loader(kind: str, loader: Loader) -> None:
    """Make component kind ``kind`` loadable (the numpy scorers register themselves)."""
    _LOADERS[kind] = loader


class _TFLiteComponent:
    def __init__(self, path: Path) -> None:
        from models.tflite import load_interpreter  # noqa: PLC0415 - only when a bundle has one

        self.model = load_interpreter(path)

    def score(self, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return self.model.predict(x)


register_loader("tflite", _TFLiteComponent)
register_loader("iforest", IsolationForestScorer.load)
register_loader("dbscan", DbscanScorer.load)
register_loader("logistic", LogisticScorer.load)
register_loader(ROW_KIND, RowModel)
register_loader(TREES_KIND, GradientBoostedTrees.load)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file of the bundle as the manifest records it."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """The parsed manifest.json; `from_dict` validates every field it reads."""

    schema_version: int
    bundle_version: str
    created: str
    files: Mapping[str, FileEntry]
    components: Mapping[str, Mapping[str, str]]
    golden: Mapping[str, Mapping[str, float]]
    feature_spec: Mapping[str, Any] = field(default_factory=dict)
    scaler: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    training_data: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    requires: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any) -> Manifest:
        """Validate a decoded manifest; BundleError names the first bad field."""
        if not isinstance(raw, dict):
            raise BundleError("manifest.json: top level must be a JSON object")
        version = _field(raw, "schema_version", int)
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"manifest.json: schema_version {version} is not supported "
                f"(this device reads {SCHEMA_VERSION})"
            )
        bundle_version = _field(raw, "bundle_version", str)
        created = _field(raw, "created", str)
        files = {}
        for name, entry in _field(raw, "files", dict).items():
            where = f"files.{name}"
            if not isinstance(entry, dict):
                raise BundleError(f"manifest.json: {where} must be an object")
            sha = _field(entry, "sha256", str, where)
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise BundleError(f"manifest.json: {where}.sha256 is not a sha256 hex digest")
            if "/" in name or "\\" in name or name.startswith("."):
                raise BundleError(f"manifest.json: {where}: file names must be plain names")
            files[name] = FileEntry(name, sha, _field(entry, "size", int, where))
        components = {}
        for name, comp in _field(raw, "components", dict).items():
            where = f"components.{name}"
            if not isinstance(comp, dict):
                raise BundleError(f"manifest.json: {where} must be an object")
            components[name] = {
                "kind": _field(comp, "kind", str, where),
                "file": _field(comp, "file", str, where),
            }
        golden = {}
        for name, tol in _field(raw, "golden", dict).items():
            where = f"golden.{name}"
            if not isinstance(tol, dict):
                raise BundleError(f"manifest.json: {where} must be an object")
            golden[name] = {"atol": float(_field(tol, "atol", (int, float), where))}
        thresholds = {
            k: float(v) for k, v in _field(raw, "thresholds", dict, default={}).items()
        }
        return cls(
            schema_version=version,
            bundle_version=bundle_version,
            created=created,
            files=files,
            components=components,
            golden=golden,
            feature_spec=_field(raw, "feature_spec", dict, default={}),
            scaler=_field(raw, "scaler", dict, default={}),
            thresholds=thresholds,
            training_data=_field(raw, "training_data", dict, default={}),
            metrics=_field(raw, "metrics", dict, default={}),
            requires=_field(raw, "requires", dict, default={}),
            extra=_field(raw, "extra", dict, default={}),
        )


def _field(
    raw: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: str = "",
    *,
    default: Any = None,
) -> Any:
    path = f"{where}.{key}" if where else key
    if key not in raw:
        if default is not None:
            return default
        raise BundleError(f"manifest.json: {path} is missing")
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise BundleError(f"manifest.json: {path} must be {names}, got {value!r}")
    return value


def content_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without its own ``content_sha256`` field.

    Stored in the manifest, it makes any later edit (a threshold, a scaler value, a hash)
    visible. It protects against accidents, not attackers: bundle signatures do that.
    """
    body = {k: v for k, v in manifest.items() if k != "content_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Every listed file is present with its size and sha256; components and golden agree."""
    for entry in manifest.files.values():
        path = directory / entry.name
        if not path.is_file():
            raise BundleError(f"{entry.name}: listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.size:
            raise BundleError(f"{entry.name}: {size} bytes, the manifest says {entry.size}")
        if sha256_file(path) != entry.sha256:
            raise BundleError(f"{entry.name}: sha256 differs from the manifest (file changed)")
    for name, comp in manifest.components.items():
        if comp["file"] not in manifest.files:
            raise BundleError(f"component {name}: file {comp['file']} is not in the manifest")
        if comp["kind"] not in _LOADERS:
            raise BundleError(
                f"component {name}: kind {comp['kind']!r} cannot be loaded here "
                f"(known: {', '.join(sorted(_LOADERS))})"
            )
        if name not in manifest.golden:
            raise BundleError(f"component {name}: no golden vectors in the manifest")
    if manifest.golden and GOLDEN_FILE not in manifest.files:
        raise BundleError(f"{GOLDEN_FILE} is not listed in the manifest")


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle: its manifest and its loaded components, ready to score."""

    path: Path
    manifest: Manifest
    components: Mapping[str, Component]

    @property
    def version(self) -> str:
        """The bundle version alerts carry, so every alarm traces to the model that raised it."""
        return self.manifest.bundle_version


def _check_golden(directory: Path, manifest: Manifest, comps: Mapping[str, Component]) -> None:
    if not manifest.golden:
        return
    try:
        with np.load(directory / GOLDEN_FILE, allow_pickle=False) as golden:
            arrays = {k: golden[k] for k in golden.files}
    except (OSError, ValueError) as exc:
        raise BundleError(f"{GOLDEN_FILE}: unreadable ({exc})") from exc
    for name, tol in manifest.golden.items():
        x, want = arrays.get(f"{name}.input"), arrays.get(f"{name}.output")
        if x is None or want is None:
            raise BundleError(f"{GOLDEN_FILE}: no {name}.input / {name}.output arrays")
        try:
            got = np.asarray(comps[name].score(x))
        except Exception as exc:
            raise BundleError(f"component {name}: failed on its golden input: {exc}") from exc
        if got.shape != want.shape:
            raise BundleError(
                f"component {name}: golden output shape {got.shape}, expected {want.shape}"
            )
        diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0))
        if not diff <= tol["atol"]:
            raise BundleError(
                f"component {name}: golden outputs differ by {diff:.3g} "
                f"(tolerance {tol['atol']:.3g})"
            )


PACKAGED: Final = "default"
"""Configuration value naming the bundle shipped inside the package (models/bundles/default)."""


def packaged_bundle(name: str = PACKAGED) -> Path:
    """Directory of a bundle shipped in the package (``make bundle`` rebuilds ``default``)."""
    return Path(str(resources.files("models").joinpath("bundles", name)))


def bundle_location(setting: str | Path) -> Path:
    """Where a configured ``[model] bundle`` value points: `PACKAGED` is the shipped bundle,
    anything else a directory path."""
    return packaged_bundle() if str(setting) == PACKAGED else Path(setting)


def load_bundle(directory: str | Path) -> Bundle:
    """Parse, verify and self-test a bundle; BundleError (naming the problem) if anything fails."""
    root = Path(directory)
    try:
        raw = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{root}: no {MANIFEST_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{MANIFEST_FILE}: not valid JSON ({exc})") from exc
    manifest = Manifest.from_dict(raw)
    if raw.get("content_sha256") != content_digest(raw):
        raise BundleError(
            f"{MANIFEST_FILE}: edited after the bundle was written (content_sha256 differs); "
            "thresholds, scaler or file hashes cannot be trusted"
        )
    verify_files(root, manifest)
    comps: dict[str, Component] = {}
    for name, comp in manifest.components.items():
        try:
            comps[name] = _LOADERS[comp["kind"]](root / comp["file"])
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(f"component {name}: cannot be loaded: {exc}") from exc
    _check_golden(root, manifest, comps)
    _log.info("bundle %s verified: %d component(s)", manifest.bundle_version, len(comps))
    return Bundle(root, manifest, comps)
