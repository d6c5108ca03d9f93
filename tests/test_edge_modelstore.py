"""The device's model store (edge/modelstore.py): install, refuse with a reason, keep, roll back,
and survive a kill -9 at every step of an install with one complete bundle active."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _bundles import trusted, variant
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.learned import check_bundle
from edge.modelstore import POINTER_FILE, STEPS, InstallError, ModelStore
from models.bundle import load_bundle

REPO = Path(__file__).resolve().parents[1]
KEY = Ed25519PrivateKey.generate()
TRUSTED = [trusted(KEY)]


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store", keep=2)


def _install(store: ModelStore, source: Path) -> str:
    return store.install(source, trusted=TRUSTED, check=check_bundle).bundle_id


def test_install_switches_keeps_previous_and_rolls_back(store: ModelStore, tmp_path: Path) -> None:
    assert store.boot().active is None  # nothing installed: the configured bundle runs
    a = _install(store, variant(tmp_path / "a", "v-a", key=KEY))
    ptr = store.pointer()
    assert (ptr.active, ptr.state, ptr.previous) == (a, "trial", ())
    assert load_bundle(store.active() or "").version == "v-a"
    store.confirm()
    assert store.pointer().state == "good"
    b = _install(store, variant(tmp_path / "b", "v-b", key=KEY))
    c = _install(store, variant(tmp_path / "c", "v-c", key=KEY))
    assert store.pointer().previous == (b, a)
    d = _install(store, variant(tmp_path / "d", "v-d", key=KEY))
    assert store.pointer().previous == (c, b)  # keep=2: a is deleted
    assert sorted(store.installed()) == sorted([b, c, d])
    again = store.install(variant(tmp_path / "d2", "v-d", key=KEY), trusted=TRUSTED,
                          check=check_bundle)
    assert (again.bundle_id, again.reused) == (d, True)  # already active: nothing changes
    assert store.rollback("asked by the ward").active == c
    assert store.pointer().reason == "rolled back: asked by the ward"
    assert store.rollback().active == b
    assert store.rollback().active is None  # back to the configured bundle
    with pytest.raises(InstallError, match="nothing to roll back"):
        store.rollback()


def _edit_spec(raw: dict[str, Any]) -> None:
    raw["feature_spec"]["version"] = 99


def _edit_protocol(raw: dict[str, Any]) -> None:
    raw["requires"]["protocol_version"] = 2


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: variant(d, "v-x"), "unsigned: manifest.sig is missing"),
        (lambda d: variant(d, "v-x", key=Ed25519PrivateKey.generate()),
         "which this device does not trust"),
        (lambda d: variant(d, "v-x", key=KEY, edit=_edit_spec), "feature_spec"),
        (lambda d: variant(d, "v-x", key=KEY, edit=_edit_protocol),
         "requires.protocol_version = 2; this edge reads board protocol version 1"),
        (lambda d: variant(d, "v-x", key=KEY, golden_offset=0.5), "golden outputs differ"),
    ],
    ids=["unsigned", "wrong-key", "incompatible-feature-spec", "newer-board-protocol",
         "failing-golden-vectors"],
)
def test_refused_bundles_name_the_reason_and_change_nothing(
    store: ModelStore, tmp_path: Path, make: Any, reason: str,
) -> None:
    good = _install(store, variant(tmp_path / "good", "v-good", key=KEY))
    before = (store.root / POINTER_FILE).read_bytes()
    with pytest.raises(InstallError) as info:
        store.install(make(tmp_path / "bad"), trusted=TRUSTED, check=check_bundle)
    assert info.value.step == "verify"
    assert reason in info.value.reason
    assert (store.root / POINTER_FILE).read_bytes() == before
    assert store.installed() == [good]
    assert list(store.staging.iterdir()) == []


def test_a_file_changed_after_signing_is_refused(store: ModelStore, tmp_path: Path) -> None:
    src = variant(tmp_path / "t", "v-t", key=KEY)
    (src / "risk.npz").write_bytes((src / "risk.npz").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(InstallError, match=r"risk\.npz: sha256 differs from the manifest"):
        store.install(src, trusted=TRUSTED, check=check_bundle)


def test_a_bundle_that_keeps_crashing_the_edge_is_rolled_back_at_start(
    store: ModelStore, tmp_path: Path,
) -> None:
    a = _install(store, variant(tmp_path / "a", "v-a", key=KEY))
    store.confirm()
    b = _install(store, variant(tmp_path / "b", "v-b", key=KEY))
    for boots in (1, 2, 3):  # each start of a trial bundle is counted ...
        ptr = store.boot()
        assert (ptr.active, ptr.boots) == (b, boots)
    ptr = store.boot()  # ... and the fourth start without a confirm rolls it back
    assert ptr.active == a
    assert "started 3 times without running long enough" in ptr.reason
    # Confirmed in time: never rolled back.
    c = _install(store, variant(tmp_path / "c", "v-c", key=KEY))
    store.boot()
    store.confirm()
    for _ in range(5):
        assert store.boot().active == c


def test_a_pointer_to_a_vanished_bundle_falls_back_to_one_that_is_complete(
    store: ModelStore, tmp_path: Path,
) -> None:
    a = _install(store, variant(tmp_path / "a", "v-a", key=KEY))
    b = _install(store, variant(tmp_path / "b", "v-b", key=KEY))
    (store.path_of(b) / "manifest.json").unlink()
    ptr = store.boot()
    assert ptr.active == a
    assert f"bundle {b} missing on disk" in ptr.reason


_KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from _bundles import trusted
from edge.learned import check_bundle
from edge.modelstore import ModelStore

key = load_pem_private_key(Path({key!r}).read_bytes(), None)
def fault(step):
    if step == {step!r}:
        os.kill(os.getpid(), signal.SIGKILL)
ModelStore({root!r}, keep=2).install({src!r}, trusted=[trusted(key)], check=check_bundle,
                                     fault=fault)
"""


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step_leaves_one_complete_bundle_old_or_new(
    tmp_path: Path, step: str,
) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    key_file = tmp_path / "k.pem"
    key_file.write_bytes(KEY.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    store = ModelStore(tmp_path / "store", keep=2)
    old = _install(store, variant(tmp_path / "old", "v-old", key=KEY))
    store.confirm()
    src = variant(tmp_path / "new", "v-new", key=KEY)
    script = _KILLER.format(tests=str(REPO / "tests"), key=str(key_file), step=step,
                            root=str(store.root), src=str(src))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    ptr = ModelStore(store.root, keep=2).boot()  # the next start
    active = store.active()
    assert active is not None
    version = load_bundle(active).version  # complete: every hash and golden vector holds
    assert version == ("v-new" if step == "switch" else "v-old")
    assert ptr.active == (old if version == "v-old" else active.name)
    assert list(store.staging.iterdir()) == []
    assert json.loads((store.root / POINTER_FILE).read_text())["active"] == ptr.active
