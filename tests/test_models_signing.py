"""Bundle signatures: `vigil-train keygen` / `sign` on the workstation, `verify_signature` on
the device, each refusal naming its reason. Real Ed25519 keys, a copy of the shipped bundle."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from models.bundle import MANIFEST_FILE, packaged_bundle
from models.signing import (
    SIGNATURE_FILE,
    SignatureError,
    load_public_key,
    verify_signature,
)
from training.cli import main


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return Path(shutil.copytree(packaged_bundle(), tmp_path / "bundle"))


def _keygen(tmp_path: Path, name: str) -> tuple[Path, Path]:
    assert main(["keygen", str(tmp_path / "keys" / name)]) == 0
    return tmp_path / "keys" / f"{name}.key", tmp_path / "keys" / f"{name}.pub"


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    private, public = _keygen(tmp_path, "ward")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    kid = load_public_key(public).key_id
    assert kid in capsys.readouterr().out
    before = private.read_bytes()
    assert main(["keygen", str(tmp_path / "keys" / "ward")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert private.read_bytes() == before


def test_a_signed_bundle_verifies_with_its_key_only(
    tmp_path: Path, bundle: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    private, public = _keygen(tmp_path, "ward")
    _, other = _keygen(tmp_path, "other")
    trusted, stranger = load_public_key(public), load_public_key(other)
    with pytest.raises(SignatureError, match=r"unsigned: manifest\.sig is missing"):
        verify_signature(bundle, [trusted])
    assert main(["sign", str(bundle), "--key", str(private)]) == 0
    assert f"with key {trusted.key_id}" in capsys.readouterr().out
    assert verify_signature(bundle, [stranger, trusted]) == trusted
    with pytest.raises(SignatureError, match=f"signed by key {trusted.key_id}, which this "
                                             f"device does not trust \\(trusted: "
                                             f"{stranger.key_id}\\)"):
        verify_signature(bundle, [stranger])
    with pytest.raises(SignatureError, match="no trusted keys configured"):
        verify_signature(bundle, [])


def test_an_altered_manifest_or_signature_is_refused(tmp_path: Path, bundle: Path) -> None:
    private, public = _keygen(tmp_path, "ward")
    assert main(["sign", str(bundle), "--key", str(private)]) == 0
    trusted = [load_public_key(public)]
    manifest = bundle / MANIFEST_FILE
    original = manifest.read_bytes()
    manifest.write_bytes(original + b"\n")  # one byte more: still the same JSON
    with pytest.raises(SignatureError, match=r"does not match manifest\.json"):
        verify_signature(bundle, trusted)
    manifest.write_bytes(original)
    good = (bundle / SIGNATURE_FILE).read_text()
    sig = json.loads(good)
    sig["signature"] = "not base64!"
    (bundle / SIGNATURE_FILE).write_text(json.dumps(sig))
    with pytest.raises(SignatureError, match=r"manifest\.sig: unreadable"):
        verify_signature(bundle, trusted)
    sig = json.loads(good) | {"algorithm": "rsa",
                                                               "signature": "AAAA"}
    (bundle / SIGNATURE_FILE).write_text(json.dumps(sig))
    with pytest.raises(SignatureError, match="algorithm 'rsa', only ed25519"):
        verify_signature(bundle, trusted)


def test_a_bundle_the_device_would_refuse_is_never_signed(
    tmp_path: Path, bundle: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    private, _ = _keygen(tmp_path, "ward")
    (bundle / "golden.npz").write_bytes(b"tampered")
    assert main(["sign", str(bundle), "--key", str(private)]) == 1
    assert "refused, not signed" in capsys.readouterr().err
    assert not (bundle / SIGNATURE_FILE).exists()
    assert main(["sign", str(bundle), "--key", str(tmp_path / "nokey")]) == 2


def test_a_public_key_file_that_is_not_one_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.pub"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"x\.pub: not a readable PEM public key"):
        load_public_key(bad)
