"""Which model the running edge scores with, and switching it without a pause in scoring.

Why a module of its own: the model store (edge/modelstore.py) decides *what* is active on
disk; this decides *when* the running process follows, on the runtime thread, so the runtime
loop only asks it between two ticks. Rules:

1. **At start** the store's `ModelStore.boot` runs first (interrupted installs cleared, a
   bundle that keeps crashing the edge rolled back), then the active bundle loads, or the
   configured ``[model] bundle`` when the store has none. A store bundle the runtime refuses
   at start is rolled back and the next one tried, down to the configured bundle.
2. **Following the store.** `poll` looks at ``active.json`` (a stat, every `POLL_S`); when it
   names another bundle (``vigil-edge model install``, a rollback, an install over MQTT), the
   new bundle loads on a worker thread and warms up on a copy of every bed's vitals history
   while the old one keeps scoring; `poll` then swaps the detectors in between two ticks
   (`edge.runtime.EdgeCore.reconfigure`). The new detector goes on from where the copy ended,
   so no vitals row is skipped and learned alerts carry on without a warm-up gap.
3. **A bundle that fails to load** after the switch is rolled back in the store (the reason
   kept) and the running detectors stay: the monitor never scores with nothing.
4. **Confirmation.** A ``trial`` bundle that has run ``[model] confirm_after_s`` is confirmed
   (`ModelStore.confirm`); one that crashes the edge first is rolled back at the next start.
5. **Reporting.** `state_payload` is the retained ``model/state``: what runs, from where, its
   files' sha256, the store pointer and the last swap.
6. **Bundles over MQTT** (docs/flashing.md): `transfer_message` feeds ``model/offer`` and
   ``model/chunk`` to `edge.transfer.TransferReceiver`; `transfer_tick` installs a complete
   transfer through the same `ModelStore.install` on a worker thread and answers with the
   store's outcome. The switch is then followed like any other (rule 2).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from edge.bedstate import BedState
from edge.config import EdgeConfig
from edge.learned import LearnedDetector, LearnedSetup, check_bundle, load_learned
from edge.modelstore import InstallError, ModelStore, describe
from edge.payloads import iso_utc
from edge.transfer import TransferError, TransferReceiver
from models.bundle import MANIFEST_FILE, bundle_location
from models.signing import TrustedKey, load_public_key

__all__ = ["KILL_AT_ENV", "POLL_S", "ModelManager"]

_log = logging.getLogger(__name__)

POLL_S: Final = 2.0
"""How often the store's pointer is looked at (s): a switch is followed within this."""
KILL_AT_ENV: Final = "VIGIL_TEST_KILL_AT"
"""Crash tests only: an install step (`edge.modelstore.STEPS`, or ``report``: installed, the
answer not yet sent) after which the edge process kills itself with SIGKILL, as a power cut
would stop it there. Unset, it does nothing."""


def _crash_hook() -> Callable[[str], None] | None:
    step = os.environ.get(KILL_AT_ENV)
    if not step:
        return None
    _log.warning("%s=%s: this process will kill itself after that install step", KILL_AT_ENV,
                 step)

    def fault(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return fault


def _files(bundle_dir: str) -> dict[str, str]:
    """name -> sha256 of the bundle's files, from its manifest ({} when there is none)."""
    try:
        raw = json.loads((bundle_location(bundle_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))
        return {name: str(entry["sha256"]) for name, entry in raw["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _keys(config: EdgeConfig) -> list[TrustedKey]:
    out: list[TrustedKey] = []
    for path in config.model.trusted_keys:
        try:
            out.append(load_public_key(path))
        except ValueError as exc:  # a bad key file trusts nothing; it does not stop the edge
            _log.error("model.trusted_keys: %s", exc)
    return out


class ModelManager:
    """The learned model of a running edge (module rules); used by the runtime thread only,
    except the loading worker, which touches nothing but its own new detector."""

    def __init__(self, config: EdgeConfig, *, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        cfg = config.model
        self.store = (ModelStore(cfg.store_dir, keep=cfg.keep, max_trial_boots=cfg.max_trial_boots)
                      if cfg.store_dir else None)
        self.trusted = _keys(config)
        if self.store is not None:
            self.store.boot()
        # Bundles sent over MQTT (docs/flashing.md), installed through the same store.
        self.receiver = (TransferReceiver(self.store.root / "incoming", device=config.device.id)
                         if self.store is not None else None)
        self._installs: queue.SimpleQueue[tuple[str, bool, str | None, str | None, str]] = (
            queue.SimpleQueue())
        self._stat: tuple[int, int, int] | None = None
        self._last_poll = -float("inf")
        self._since = monotonic()
        self._confirmed = False
        self._loading: threading.Thread | None = None
        self._again = False
        self._done: queue.SimpleQueue[tuple[LearnedSetup | None, str, str]] = queue.SimpleQueue()
        self.last_swap: dict[str, Any] = {}
        self._files_of: tuple[tuple[str, str | None], dict[str, str]] = (("", None), {})
        self.running_id: str | None = None
        self.setup = self._load_at_start(config)

    def reload_keys(self, config: EdgeConfig) -> None:
        """``[model] trusted_keys`` again (a configuration reload)."""
        self.trusted = _keys(config)

    # -- what to run --------------------------------------------------------------------------

    def effective(self, config: EdgeConfig) -> EdgeConfig:
        """``config`` with ``[model] bundle`` pointing at the store's active bundle, if any."""
        active = self.store.active() if self.store is not None else None
        if active is None:
            return config
        return replace(config, model=replace(config.model, bundle=str(active)))

    def _active_id(self) -> str | None:
        return self.store.pointer().active if self.store is not None else None

    def _load_at_start(self, config: EdgeConfig) -> LearnedSetup:
        """Rule 1; bounded by the number of bundles the store keeps."""
        for _ in range(config.model.keep + 2):
            setup = load_learned(self.effective(config))
            active = self._active_id()
            if setup.status.get("state") != "refused" or active is None or self.store is None:
                self.running_id = active
                self._mark()
                return setup
            self.store.rollback(f"refused at start: {setup.status.get('reason', '')}")
        self.running_id = None
        return load_learned(config)

    def _mark(self) -> None:
        if self.store is not None:
            self._stat = self.store.pointer_stamp()

    @property
    def status(self) -> dict[str, str]:
        """The runtime status's ``model`` object, with where the bundle came from."""
        return {**self.setup.status,
                "source": "store" if self.running_id is not None else "configured"}

    # -- following the store (rules 2-4) -------------------------------------------------------

    def poll(
        self, config: EdgeConfig, beds: Mapping[str, BedState], now: float,
    ) -> LearnedSetup | None:
        """Between two ticks: a newly loaded setup to swap in now, else None (module rules)."""
        swapped = self._finish(config)
        if self.store is None:
            return swapped
        if now - self._last_poll >= POLL_S:
            self._last_poll = now
            self._check_pointer(config, beds)
            if (not self._confirmed and self.running_id is not None
                    and now - self._since >= config.model.confirm_after_s):
                self.store.confirm()
                self._confirmed = True
                self._mark()
        return swapped

    def _check_pointer(self, config: EdgeConfig, beds: Mapping[str, BedState]) -> None:
        assert self.store is not None
        stat = self.store.pointer_stamp()
        if stat == self._stat:
            return
        self._stat = stat
        if self._active_id() != self.running_id:
            self.begin(config, beds, "store pointer changed")

    def begin(self, config: EdgeConfig, beds: Mapping[str, BedState], reason: str) -> None:
        """Load what the store says on a worker thread, warmed on copies of ``beds``."""
        if self._loading is not None and self._loading.is_alive():
            self._again = True  # one more round once this one is done
            return
        cfg = self.effective(config)
        snapshots = [b.vitals_snapshot() for b in beds.values()]
        target = self._active_id()
        started = time.perf_counter()

        def work() -> None:
            setup: LearnedSetup | None = None
            try:
                setup = load_learned(cfg)
                for det in setup.own:
                    if isinstance(det, LearnedDetector):
                        for snap in snapshots:
                            det.update(snap, snap.last_vitals_s or 0.0)
            except Exception:  # the running model stays; the reason is logged
                _log.exception("loading model %s failed", cfg.model.bundle)
                setup = None
            self.last_swap = {"target": target or "configured", "reason": reason,
                              "load_s": round(time.perf_counter() - started, 3)}
            self._done.put((setup, target or "", cfg.model.bundle))

        self._loading = threading.Thread(target=work, name="model-loader", daemon=True)
        self._loading.start()

    def _finish(self, config: EdgeConfig) -> LearnedSetup | None:
        try:
            setup, target, path = self._done.get_nowait()
        except queue.Empty:
            return None
        if self._again:
            self._again = False
            self._last_poll = -float("inf")
            self._stat = None  # look again at once
        refused = setup is None or setup.status.get("state") == "refused"
        if refused:
            reason = "load failed" if setup is None else setup.status.get("reason", "")
            self.last_swap["outcome"] = f"refused: {reason}"
            _log.error("model %s refused after the switch (%s): keeping the running model",
                       path, reason)
            if target and self.store is not None and self._active_id() == target:
                try:
                    self.store.rollback(f"{target} refused by the runtime: {reason}")
                except InstallError as exc:
                    _log.error("rollback: %s", exc)
            return None
        assert setup is not None
        self.setup = setup
        self.running_id = target or None
        self._since = self._monotonic()
        self._confirmed = False
        self._mark()
        self.last_swap["outcome"] = "running"
        _log.info("model switched to %s (%s)", setup.status.get("version", path), target
                  or "configured bundle")
        return setup

    # -- bundles arriving over MQTT (rule 6) ---------------------------------------------------

    def transfer_message(self, name: str, payload: bytes) -> list[bytes]:
        """A ``model/offer`` or ``model/chunk`` message; the progress payloads to publish."""
        if self.receiver is None:
            _log.warning("model/%s ignored: no model store on this device ([model] store_dir)",
                         name)
            return []
        if name == "offer":
            return [self.receiver.offer(payload)]
        out = self.receiver.chunk(payload)
        return [] if out is None else [out]

    def transfer_tick(self, config: EdgeConfig) -> list[bytes]:
        """Each tick: stall reports, installs of complete transfers (on a worker thread, the
        store's steps take about a second) and their results; progress payloads to publish."""
        if self.receiver is None or self.store is None:
            return []
        rx, store = self.receiver, self.store
        out = rx.poll()
        for tid in rx.ready():
            try:
                path = rx.completed(tid)
            except TransferError as exc:
                out.append(exc.progress)
                continue
            out.append(rx.installing(tid))
            before = self.status.get("version")
            beds = [b.id for b in config.beds]

            def install(tid: str = tid, path: Path = path, before: str | None = before,
                        beds: list[str] = beds) -> None:
                crash = _crash_hook()
                try:
                    done = store.install(path, trusted=self.trusted,
                                         check=lambda p: check_bundle(p, beds), fault=crash)
                    if crash is not None:
                        crash("report")
                except InstallError as exc:
                    self._installs.put((tid, False, before, before, str(exc)))
                except Exception as exc:  # an unexpected failure is still an answer
                    _log.exception("installing transfer %s failed", tid)
                    self._installs.put((tid, False, before, before, f"{type(exc).__name__}: {exc}"))
                else:
                    self._installs.put((tid, True, before, done.version, ""))

            threading.Thread(target=install, name="model-install", daemon=True).start()
        while True:
            try:
                tid, ok, before, after, reason = self._installs.get_nowait()
            except queue.Empty:
                break
            out.append(rx.result(tid, ok=ok, version_before=before, version_after=after,
                                 reason=reason))
            if ok:
                self._last_poll = -float("inf")  # follow the switch at the next poll
        return out

    # -- reporting (rule 5) -------------------------------------------------------------------

    def _files(self, bundle: str | None, version: str | None) -> dict[str, str]:
        """The running bundle's file hashes, read from its manifest once per bundle and
        version (the state goes out every status period; the bundle changes only with a
        switch or a reload)."""
        if not bundle:
            return {}
        if self._files_of[0] != (bundle, version):
            self._files_of = ((bundle, version), _files(bundle))
        return self._files_of[1]

    def state_payload(self, device: str, epoch_s: float) -> bytes:
        """Retained ``model/state``: what runs, its files, the store, the last swap."""
        status = self.status
        body: dict[str, Any] = {
            "device": device,
            "time": iso_utc(epoch_s),
            "state": status.get("state", "off"),
            "version": status.get("version"),
            "source": status["source"],
            "bundle": status.get("bundle"),
            "files": self._files(status.get("bundle"), status.get("version")),
            "reason": status.get("reason"),
            "store": describe(self.store.pointer()) if self.store is not None else None,
            "last_swap": self.last_swap or None,
        }
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
