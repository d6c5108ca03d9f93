"""The device's model store: install a bundle, switch to it, keep the last few, roll back.

Why a module of its own: a bad or half-written bundle must never take a monitor down, and a
power cut at any instant must leave it running one complete bundle, old or new, never a mix and
never nothing. Everything here is files and renames; the runtime decides when to swap.

Layout under ``[model] store_dir``::

    bundles/<id>/    installed bundles, each complete: moved into place by one rename after
                     every file was written and fsynced. ``<id>`` = version + content digest.
    staging/         copies in progress; whatever is here at start was interrupted: removed
    active.json      the pointer (`Pointer`): active id, previous ids (newest first), state

Rules
-----

1. **Verify before touching anything** (`STEPS`: ``verify``): the signature by a trusted key
   (models/signing.py), then ``check`` on the source: `models.bundle.load_bundle` (every
   file's sha256 and size, golden vectors through the real TFLite runtime and numpy scorers)
   and the edge's own refusal rules (feature spec and protocol versions it can run). Any
   failure raises `InstallError` naming the step and the reason; the store is unchanged.
2. **Stage** (``stage``): copy into ``staging/``, fsync every file and the directory, rename
   into ``bundles/<id>``, fsync ``bundles/``. The same bundle already installed is reused.
3. **Self-test** (``self-test``): ``check`` again on the staged copy, the files that will run.
4. **Switch** (``switch``): ``active.json`` written to a temporary file, fsynced, renamed over
   the old one, directory fsynced. That rename is the commit point: a crash before it leaves
   the old bundle active, after it the new one. The new one starts in state ``trial``.
5. **Trial** (`boot`, `confirm`): each start counts a boot of a ``trial`` bundle; once the
   runtime has run it for a while (`edge.runtime`), `confirm` marks it ``good``. A bundle that
   started more than ``max_trial_boots`` times without being confirmed (it crashes the edge)
   is rolled back automatically at the next start, with the reason kept in the pointer.
6. **Keep** ``keep`` previous bundles (newest first) for `rollback`; older ones are deleted
   after a switch. `rollback` with none left returns to the configured bundle (``active``
   null): the store never leaves the device without a model to fall back on.
7. **A pointer that names a missing bundle** (deleted by hand, disk damage) is repaired at
   start by the previous bundle that is still complete, or the configured one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from models.bundle import MANIFEST_FILE, BundleError
from models.signing import SignatureError, TrustedKey, verify_signature

__all__ = [
    "POINTER_FILE",
    "STEPS",
    "InstallError",
    "Installed",
    "ModelStore",
    "Pointer",
    "describe",
]

_log = logging.getLogger(__name__)

POINTER_FILE: Final = "active.json"
STEPS: Final = ("verify", "stage", "self-test", "switch")
"""Install steps, in order; ``fault`` is called after each (crash tests)."""
_BUNDLES: Final = "bundles"
_STAGING: Final = "staging"
_TRIAL, _GOOD = "trial", "good"

Check = Callable[[Path], str]
"""Loads a bundle the way the runtime would and returns its version; raises on refusal."""


class InstallError(Exception):
    """A bundle refused: ``step`` is where (one of `STEPS`), the message says why."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Pointer:
    """What ``active.json`` says. ``active`` None: the configured ``[model] bundle`` runs."""

    active: str | None = None
    previous: tuple[str, ...] = ()
    state: str = _GOOD
    boots: int = 0
    activated: float | None = None
    reason: str = ""
    """Why the last change happened (``installed``, ``rolled back: ...``)."""

    def to_json(self) -> bytes:
        """The file's bytes."""
        body = asdict(self)
        body["previous"] = list(self.previous)
        return (json.dumps(body, indent=1) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Pointer:
        """Parse the file; ValueError when it is not a pointer."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        return cls(
            active=raw.get("active"), previous=tuple(raw.get("previous", ())),
            state=str(raw.get("state", _GOOD)), boots=int(raw.get("boots", 0)),
            activated=raw.get("activated"), reason=str(raw.get("reason", "")),
        )


@dataclass(frozen=True, slots=True)
class Installed:
    """The outcome of `ModelStore.install`: the bundle now active and the one before it."""

    bundle_id: str
    path: Path
    version: str
    before: str | None
    reused: bool = False
    durations_s: dict[str, float] = field(default_factory=dict)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _bundle_id(source: Path) -> str:
    try:
        raw = json.loads((source / MANIFEST_FILE).read_text(encoding="utf-8"))
        version, digest = str(raw["bundle_version"]), str(raw["content_sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InstallError(STEPS[0], f"{MANIFEST_FILE}: unreadable ({exc})") from exc
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in version)
    return f"{safe}-{digest[:12]}"


class ModelStore:
    """Bundles on disk under ``root`` and the pointer to the active one (module rules)."""

    def __init__(
        self, root: str | Path, *, keep: int = 3, max_trial_boots: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: at least 1")
        self.root = Path(root).expanduser()
        self.keep = keep
        self.max_trial_boots = max_trial_boots
        self._clock = clock
        self.bundles = self.root / _BUNDLES
        self.staging = self.root / _STAGING
        self.bundles.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)

    # -- the pointer -------------------------------------------------------------------------

    def pointer(self) -> Pointer:
        """The pointer as on disk; no file (or an unreadable one, logged) = nothing installed."""
        path = self.root / POINTER_FILE
        try:
            return Pointer.from_json(path.read_bytes())
        except FileNotFoundError:
            return Pointer()
        except (OSError, ValueError) as exc:
            _log.error("%s unreadable (%s): running the configured bundle", path, exc)
            return Pointer(reason=f"pointer unreadable: {exc}")

    def pointer_stamp(self) -> tuple[int, int, int] | None:
        """(mtime ns, size, inode) of ``active.json``, None without one: every write replaces
        the file, so a running process sees a switch by a stat instead of a read."""
        try:
            st = (self.root / POINTER_FILE).stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _write_pointer(self, pointer: Pointer) -> None:
        """Rule 4: temporary file, fsync, rename over, fsync the directory."""
        tmp = self.root / f".{POINTER_FILE}.{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(pointer.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / POINTER_FILE)
        _fsync_dir(self.root)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise pointer changes between processes (the running edge confirms a bundle
        while ``vigil-edge model install`` switches to another): an flock on ``.lock``."""
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def path_of(self, bundle_id: str) -> Path:
        """Directory of an installed bundle."""
        return self.bundles / bundle_id

    def active(self) -> Path | None:
        """Directory of the active bundle, None for the configured one."""
        bid = self.pointer().active
        return None if bid is None else self.path_of(bid)

    def installed(self) -> list[str]:
        """Ids of the complete bundles on disk, sorted."""
        return sorted(p.name for p in self.bundles.iterdir() if (p / MANIFEST_FILE).is_file())

    # -- start-up (rules 5 and 7) ------------------------------------------------------------

    def boot(self) -> Pointer:
        """Call once per start, before loading the active bundle: clears ``staging/``, repairs
        a pointer to a missing bundle, counts a trial boot and rolls back a bundle that keeps
        crashing the edge. Returns the pointer to run with."""
        with self._locked():
            return self._boot()

    def _boot(self) -> Pointer:
        for leftover in self.staging.iterdir():
            _log.warning("removing interrupted install %s", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        ptr = self.pointer()
        if ptr.active is not None and not (self.path_of(ptr.active) / MANIFEST_FILE).is_file():
            ptr = self._fallback(ptr, f"bundle {ptr.active} missing on disk")
        if ptr.active is not None and ptr.state == _TRIAL:
            if ptr.boots >= self.max_trial_boots:
                ptr = self._fallback(ptr, f"bundle {ptr.active} started {ptr.boots} times "
                                          "without running long enough to be confirmed")
            else:
                ptr = replace(ptr, boots=ptr.boots + 1)
                self._write_pointer(ptr)
        return ptr

    def _fallback(self, ptr: Pointer, reason: str) -> Pointer:
        keep = [b for b in ptr.previous if (self.path_of(b) / MANIFEST_FILE).is_file()]
        new = Pointer(active=keep[0] if keep else None, previous=tuple(keep[1:]), state=_GOOD,
                      activated=self._clock(), reason=f"rolled back: {reason}")
        _log.error("model store: %s; now running %s", reason, new.active or "the configured "
                   "bundle")
        self._write_pointer(new)
        return new

    def confirm(self) -> None:
        """The active bundle ran long enough: ``good`` (rule 5). No-op when it already is."""
        with self._locked():
            ptr = self.pointer()
            if ptr.active is not None and ptr.state == _TRIAL:
                self._write_pointer(replace(ptr, state=_GOOD, boots=0))

    def rollback(self, reason: str = "asked") -> Pointer:
        """Back to the previous bundle (or the configured one when none is left)."""
        with self._locked():
            ptr = self.pointer()
            if ptr.active is None:
                raise InstallError("rollback", "nothing to roll back: the configured bundle "
                                   "runs")
            return self._fallback(ptr, reason)

    # -- install (rules 1-4, 6) --------------------------------------------------------------

    def install(
        self, source: str | Path, *, trusted: Sequence[TrustedKey], check: Check,
        fault: Callable[[str], None] | None = None,
    ) -> Installed:
        """Verify, stage, self-test and switch to the bundle in ``source`` (module rules).

        ``check`` loads a bundle as the runtime would (version out, exception = refusal).
        ``fault`` (tests) is called with each step's name once it is done.
        """
        src = Path(source)
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        bundle_id = _bundle_id(src)
        try:
            signer = verify_signature(src, trusted).key_id
            version = check(src)
        except SignatureError as exc:
            raise InstallError("verify", str(exc)) from exc
        except Exception as exc:
            raise InstallError("verify", _reason(exc)) from exc
        times["verify"] = time.perf_counter() - t0
        _step(fault, "verify")

        before = self.pointer().active
        target = self.path_of(bundle_id)
        if before == bundle_id:
            _log.info("model store: %s is already active", bundle_id)
            return Installed(bundle_id, target, version, before, True, times)
        t0 = time.perf_counter()
        reused = (target / MANIFEST_FILE).is_file()
        if not reused:
            self._stage(src, bundle_id)
        times["stage"] = time.perf_counter() - t0
        _step(fault, "stage")

        t0 = time.perf_counter()
        try:
            check(target)
            verify_signature(target, trusted)
        except Exception as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise InstallError("self-test", _reason(exc)) from exc
        times["self-test"] = time.perf_counter() - t0
        _step(fault, "self-test")

        t0 = time.perf_counter()
        with self._locked():
            ptr = self.pointer()
            before = ptr.active
            previous = tuple(b for b in (before, *ptr.previous) if b and b != bundle_id)
            kept, dropped = previous[: self.keep], previous[self.keep:]
            self._write_pointer(Pointer(
                active=bundle_id, previous=kept, state=_TRIAL, boots=0, activated=self._clock(),
                reason=f"installed {version}: signed by trusted key {signer}; files, golden "
                       "vectors and edge compatibility verified; self-test of the staged copy "
                       "passed"))
        times["switch"] = time.perf_counter() - t0
        _step(fault, "switch")
        for old in dropped:
            shutil.rmtree(self.path_of(old), ignore_errors=True)
        _log.info("model store: %s active (was %s)", bundle_id, before or "configured bundle")
        return Installed(bundle_id, target, version, before, reused, times)

    def _stage(self, src: Path, bundle_id: str) -> None:
        work = self.staging / f"{bundle_id}.{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(src, work)
            for path in sorted(work.iterdir()):
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            _fsync_dir(work)
            os.replace(work, self.path_of(bundle_id))
            _fsync_dir(self.bundles)
        except OSError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise InstallError("stage", f"copy into {self.bundles} failed: {exc}") from exc

def _step(fault: Callable[[str], None] | None, name: str) -> None:
    if fault is not None:
        fault(name)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, BundleError | ValueError) else f"{type(exc).__name__}: {exc}"


def describe(pointer: Pointer) -> dict[str, Any]:
    """The pointer as a JSON-safe dict (``vigil-edge model list``, ``model/state``)."""
    return asdict(pointer) | {"previous": list(pointer.previous)}
