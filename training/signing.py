"""`vigil-train keygen` and `vigil-train sign`: the workstation half of bundle signatures.

The format and the device's check are models/signing.py. A key pair is two PEM files,
``NAME.key`` (private, PKCS#8, written 0600 and never overwritten unless asked) and ``NAME.pub``
(public: copy it to each device and list it under ``[model] trusted_keys``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models.bundle import load_bundle
from models.signing import key_id, load_private_key, sign_manifest

__all__ = ["generate_keypair", "sign_bundle"]

_PRIVATE_MODE = 0o600


def generate_keypair(prefix: str | Path, *, overwrite: bool = False) -> tuple[Path, Path, str]:
    """Write ``<prefix>.key`` and ``<prefix>.pub``; (private path, public path, key id).

    FileExistsError when either exists and ``overwrite`` is false: a lost private key cannot be
    recovered, and every device trusting it would have to be re-keyed.
    """
    base = Path(prefix)
    private_path = base.with_name(base.name + ".key")
    public_path = base.with_name(base.name + ".pub")
    if not overwrite:
        for p in (private_path, public_path):
            if p.exists():
                raise FileExistsError(f"{p} exists; refusing to overwrite a key (--force)")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    base.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _PRIVATE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(private_path, _PRIVATE_MODE)  # O_CREAT's mode does not apply to an existing file
    public = private.public_key()
    public_path.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path, key_id(public)


def sign_bundle(bundle: str | Path, private_key: str | Path) -> str:
    """Verify the bundle (hashes, golden vectors: the device's own checks), then sign its
    manifest; returns the key id. A bundle that would be refused is never signed."""
    key = load_private_key(private_key)
    load_bundle(bundle)
    return sign_manifest(bundle, key)
