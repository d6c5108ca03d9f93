"""Bundle signatures: Ed25519 over ``manifest.json``, checked on the device before anything else.

Why the manifest only: it already holds every file's sha256 and size and a digest of its own
content (models/bundle.py), so a valid signature over its exact bytes vouches for every file;
`models.bundle.verify_files` then proves each file is the one signed.

Format (``manifest.sig`` beside the manifest, JSON)::

    {"algorithm": "ed25519", "key_id": "<16 hex>", "signature": "<base64 of 64 bytes>"}

``key_id``: the first 16 hex digits of the sha256 of the raw 32-byte public key; it names the
key in messages and lets a device holding several keys pick the right one. Keys are PEM files:
the private key PKCS#8 (``vigil-train keygen`` writes it mode 0600), the public key
SubjectPublicKeyInfo (``-----BEGIN PUBLIC KEY-----``), the file a device lists under
``[model] trusted_keys``.

`verify_signature` raises `SignatureError` (a `models.bundle.BundleError`) naming the reason:
no signature, a key the device does not trust, a signature that does not match the manifest
(altered after signing), or a malformed signature file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from models.bundle import MANIFEST_FILE, BundleError

__all__ = [
    "ALGORITHM",
    "SIGNATURE_FILE",
    "SignatureError",
    "TrustedKey",
    "key_id",
    "load_private_key",
    "load_public_key",
    "sign_manifest",
    "verify_signature",
]

SIGNATURE_FILE: Final = "manifest.sig"
ALGORITHM: Final = "ed25519"
_KEY_ID_HEX: Final = 16


class SignatureError(BundleError):
    """A bundle whose signature is missing, untrusted, wrong or unreadable (the message says)."""


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key the device trusts, with its id and where it was read from."""

    key_id: str
    key: Ed25519PublicKey
    source: str


def key_id(public: Ed25519PublicKey) -> str:
    """The key's id: sha256 of its raw 32 bytes, first 16 hex digits."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:_KEY_ID_HEX]


def load_public_key(path: str | Path) -> TrustedKey:
    """A PEM Ed25519 public key; ValueError naming the file when it is not one."""
    p = Path(path)
    try:
        key = serialization.load_pem_public_key(p.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{p}: not a readable PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{p}: a {type(key).__name__}, not an Ed25519 public key")
    return TrustedKey(key_id(key), key, str(p))


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """A PEM (PKCS#8, unencrypted) Ed25519 private key; ValueError naming the file."""
    p = Path(path)
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{p}: not a readable, unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{p}: a {type(key).__name__}, not an Ed25519 private key")
    return key


def sign_manifest(directory: str | Path, private: Ed25519PrivateKey) -> str:
    """Write ``manifest.sig`` for the bundle in ``directory``; returns the signing key's id."""
    root = Path(directory)
    manifest = root / MANIFEST_FILE
    try:
        data = manifest.read_bytes()
    except OSError as exc:
        raise BundleError(f"{root}: no readable {MANIFEST_FILE} ({exc})") from exc
    kid = key_id(private.public_key())
    body = {
        "algorithm": ALGORITHM,
        "key_id": kid,
        "signature": base64.b64encode(private.sign(data)).decode("ascii"),
    }
    (root / SIGNATURE_FILE).write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return kid


def verify_signature(directory: str | Path, trusted: Sequence[TrustedKey]) -> TrustedKey:
    """The trusted key whose signature over ``manifest.json`` is valid; SignatureError if none.

    Checks only the signature: the files against the manifest are `models.bundle.load_bundle`'s
    business, and a bundle is used only when both pass.
    """
    root = Path(directory)
    sig_path = root / SIGNATURE_FILE
    if not sig_path.is_file():
        raise SignatureError(f"unsigned: {SIGNATURE_FILE} is missing (sign with vigil-train sign)")
    try:
        body = json.loads(sig_path.read_text(encoding="utf-8"))
        algorithm, kid = body["algorithm"], body["key_id"]
        signature = base64.b64decode(body["signature"], validate=True)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            binascii.Error) as exc:
        raise SignatureError(f"{SIGNATURE_FILE}: unreadable ({exc})") from exc
    if algorithm != ALGORITHM:
        raise SignatureError(f"{SIGNATURE_FILE}: algorithm {algorithm!r}, only {ALGORITHM}")
    if not trusted:
        raise SignatureError("no trusted keys configured ([model] trusted_keys): nothing "
                             "can be installed")
    match = [k for k in trusted if k.key_id == kid]
    if not match:
        raise SignatureError(
            f"signed by key {kid}, which this device does not trust (trusted: "
            f"{', '.join(k.key_id for k in trusted)})"
        )
    try:
        data = (root / MANIFEST_FILE).read_bytes()
    except OSError as exc:
        raise SignatureError(f"{MANIFEST_FILE}: unreadable ({exc})") from exc
    try:
        match[0].key.verify(signature, data)
    except InvalidSignature:
        raise SignatureError(
            f"signature by key {kid} does not match {MANIFEST_FILE} (altered after signing?)"
        ) from None
    return match[0]
