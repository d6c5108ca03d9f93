"""Reading and writing model arrays as ``.npz`` files, safely.

Why not pickle/joblib: a pickle runs code when it is loaded, ties a model file to the exact
library versions that wrote it, and would pull scikit-learn onto the device. A model here is a
handful of plain numeric arrays in an ``.npz`` archive, loaded with ``allow_pickle=False``.

Rules of this module:

- `save_arrays` writes atomically: a temporary file in the target directory, flushed and
  fsync'ed, then renamed over the target (and the directory fsync'ed). A reader, or a device
  that loses power mid-write, sees either the old file or the new one, never half of one.
  Object arrays are refused at write time, so every file written here loads without pickle.
- `load_arrays` reads every required array eagerly (an ``NpzFile`` is lazy, and a problem found
  on first use at run time is a crash on the ward) and checks each one's presence, dtype kind
  and number of dimensions. Every failure is a `ModelFileError` naming the file and the problem.
  Arrays the caller did not ask for are ignored, so a newer writer can add fields.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar, Final, Self, TypeVar

import numpy as np
import numpy.typing as npt

from models.tflite import ModelError

__all__ = [
    "FORMAT_KEY",
    "ArraySpec",
    "ModelFileError",
    "NpzModel",
    "load_arrays",
    "load_model",
    "save_arrays",
    "save_model",
]

ArraySpec = tuple[str, int]
"""(accepted dtype kinds, ndim): e.g. ``("f", 2)`` float matrix, ``("iu", 1)`` integer vector,
``("U", 0)`` a string scalar. Kinds are numpy's ``dtype.kind`` letters."""

_REFUSED_KINDS: Final = frozenset("OV")  # object (pickled) and void/structured arrays

FORMAT_KEY: Final = "vigil_format"
"""Name of the 0-d string array that says which scorer (and layout version) wrote a file, so
that, say, a DBSCAN file handed to the IsolationForest loader is refused by name."""


class ModelFileError(ModelError):
    """A model file is missing, unreadable, or does not hold the arrays its scorer needs."""


def _check_saveable(path: Path, name: str, array: npt.NDArray[Any]) -> None:
    if not name.isidentifier():
        raise ModelFileError(f"{path}: array name {name!r} is not a valid identifier")
    if array.dtype.kind in _REFUSED_KINDS or array.dtype.hasobject:
        raise ModelFileError(
            f"{path}: array {name!r} has dtype {array.dtype}; object and structured arrays "
            "would need pickle to load and are refused"
        )


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_arrays(path: str | PathLike[str], /, **arrays: npt.ArrayLike) -> None:
    """Write ``arrays`` to an uncompressed ``.npz`` at ``path``, atomically.

    The archive is written member by member with ``allow_pickle=False`` (as `numpy.savez` does,
    but without `numpy.savez` reserving keyword names). Raises ModelFileError for an object
    array or an unusable name, OSError if the directory is not writable.
    """
    target = Path(path)
    converted = {name: np.asarray(value) for name, value in arrays.items()}
    for name, array in converted.items():
        _check_saveable(target, name, array)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED) as archive:
                for name, array in converted.items():
                    with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(target.parent)


def _read_member(path: Path, npz: Any, name: str) -> npt.NDArray[Any]:
    try:
        array = npz[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ModelFileError(
                f"{path}: array {name!r} is an object array (pickled data); refused"
            ) from exc
        raise ModelFileError(f"{path}: array {name!r} is garbled: {exc}") from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        # BadZipFile: CRC mismatch (tampered bytes); EOFError/OSError: cut short.
        raise ModelFileError(
            f"{path}: array {name!r} is truncated or corrupt: {exc}"
        ) from exc
    if not isinstance(array, np.ndarray):  # pragma: no cover - npz members are arrays
        raise ModelFileError(f"{path}: member {name!r} is not an array")
    return array


def _check_spec(path: Path, name: str, array: npt.NDArray[Any], spec: ArraySpec) -> None:
    kinds, ndim = spec
    if array.dtype.hasobject or array.dtype.kind in _REFUSED_KINDS:
        raise ModelFileError(f"{path}: array {name!r} has dtype {array.dtype}; refused")
    if array.dtype.kind not in kinds:
        raise ModelFileError(
            f"{path}: array {name!r} has dtype {array.dtype}, expected kind "
            f"{' or '.join(kinds)!r}"
        )
    if array.ndim != ndim:
        raise ModelFileError(
            f"{path}: array {name!r} has {array.ndim} dimension(s) {array.shape}, "
            f"expected {ndim}"
        )


def load_arrays(
    path: str | PathLike[str],
    required: Mapping[str, ArraySpec],
    *,
    model_format: str | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Load the ``required`` arrays from an ``.npz`` file, validated; never unpickles.

    ``required`` maps array name to (accepted dtype kinds, ndim), see `ArraySpec`. Returns the
    arrays in native byte order, keyed by name. Raises ModelFileError naming the file and the
    problem: file missing, not an ``.npz`` archive, truncated or tampered with, an array missing,
    an object array, or a dtype kind or dimension count other than required. With
    ``model_format``, the file's `FORMAT_KEY` string must equal it (and is not returned).
    """
    file = Path(path)
    if model_format is not None:
        required = {**required, FORMAT_KEY: ("U", 0)}
    if not file.is_file():
        raise ModelFileError(f"model file not found: {file}")
    try:
        npz_cm = np.load(file, allow_pickle=False)
    except ValueError as exc:
        # numpy falls back to unpickling anything that is neither .npy nor .npz (which
        # includes an .npz cut off within its first bytes).
        raise ModelFileError(
            f"{file}: not a numpy .npz archive, or truncated to {file.stat().st_size} bytes "
            f"({exc})"
        ) from exc
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{file}: truncated or garbled .npz archive: {exc}") from exc
    except OSError as exc:
        raise ModelFileError(f"{file}: cannot read: {exc}") from exc
    if not isinstance(npz_cm, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{file}: holds a single .npy array, expected an .npz archive")
    loaded: dict[str, npt.NDArray[Any]] = {}
    with npz_cm as npz:
        if model_format is not None and FORMAT_KEY in npz.files:
            # First, so that the wrong kind of model is named as such, not as missing arrays.
            tag = _read_member(file, npz, FORMAT_KEY)
            found = str(tag) if tag.dtype.kind == "U" and tag.ndim == 0 else repr(tag)
            if found != model_format:
                raise ModelFileError(
                    f"{file}: holds a {found!r} model, expected {model_format!r}"
                )
        missing = sorted(set(required) - set(npz.files))
        if missing:
            raise ModelFileError(
                f"{file}: missing array(s) {', '.join(missing)} (has: {', '.join(npz.files)})"
            )
        for name, spec in required.items():
            array = _read_member(file, npz, name)
            _check_spec(file, name, array, spec)
            loaded[name] = np.array(array, dtype=array.dtype.newbyteorder("="), order="C")
    if model_format is not None:
        del loaded[FORMAT_KEY]
    return loaded


_Model = TypeVar("_Model")


def save_model(
    path: str | PathLike[str], model_format: str, arrays: Mapping[str, npt.ArrayLike]
) -> None:
    """Write a model's arrays with its format tag, atomically (see `save_arrays`)."""
    save_arrays(path, vigil_format=np.array(model_format), **arrays)


def load_model(
    path: str | PathLike[str],
    model_format: str,
    required: Mapping[str, ArraySpec],
    build: Callable[[dict[str, npt.NDArray[Any]]], _Model],
) -> _Model:
    """Load a file written by `save_model` and build the model from its arrays.

    A file of another format, a missing or malformed array, or arrays the model refuses
    (``build`` raising ModelError) all raise ModelFileError naming the file and the problem.
    """
    arrays = load_arrays(path, required, model_format=model_format)
    try:
        return build(arrays)
    except ModelError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc


class NpzModel:
    """Save / load of a model held as named arrays (the numpy scorers), in one place.

    A subclass sets `model_format` (the file's format tag), `required_arrays` (what `load`
    checks) and `model_name` (the prefix of its ModelError messages), and implements
    `to_arrays` and `from_arrays`; `from_arrays` starts with `check_arrays`.
    """

    model_format: ClassVar[str]
    required_arrays: ClassVar[Mapping[str, ArraySpec]]
    model_name: ClassVar[str]

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The model as plain arrays (copies), the inverse of `from_arrays`."""
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.ArrayLike]) -> Self:
        """Rebuild from `to_arrays` output; raises ModelError if an array is missing or bad."""
        raise NotImplementedError

    @classmethod
    def check_arrays(cls, arrays: Mapping[str, npt.ArrayLike]) -> None:
        """ModelError naming every required array that ``arrays`` lacks."""
        missing = sorted(set(cls.required_arrays) - set(arrays))
        if missing:
            raise ModelError(f"{cls.model_name}: missing array(s): {', '.join(missing)}")

    def save(self, path: str | PathLike[str]) -> None:
        """Write an ``.npz`` model file atomically (see `save_model`)."""
        save_model(path, self.model_format, self.to_arrays())

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Self:
        """Load a file written by `save`; raises ModelFileError naming the file and problem."""
        return load_model(path, cls.model_format, cls.required_arrays, cls.from_arrays)
