"""Variants of the shipped bundle for install tests: another version, a broken one, signed.

Each is a copy of models/bundles/default with its manifest edited and re-digested (so only the
intended defect remains), then signed with the given key when one is given.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models.bundle import GOLDEN_FILE, MANIFEST_FILE, content_digest, packaged_bundle, sha256_file
from models.signing import TrustedKey, key_id, sign_manifest


def trusted(private: Ed25519PrivateKey) -> TrustedKey:
    """The device-side view of ``private``'s public key."""
    return TrustedKey(key_id(private.public_key()), private.public_key(), "test")


def variant(
    dest: Path, version: str, *, key: Ed25519PrivateKey | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
    golden_offset: float = 0.0,
) -> Path:
    """A copy of the shipped bundle called ``version``; ``edit`` changes the manifest further,
    ``golden_offset`` shifts every golden output (a bundle failing its self-test)."""
    root = Path(shutil.copytree(packaged_bundle(), dest))
    raw = json.loads((root / MANIFEST_FILE).read_text())
    raw["bundle_version"] = version
    if golden_offset:
        with np.load(root / GOLDEN_FILE, allow_pickle=False) as g:
            arrays = {k: g[k] + (golden_offset if k.endswith(".output") else 0) for k in g.files}
        np.savez(root / GOLDEN_FILE, **arrays)
        raw["files"][GOLDEN_FILE]["sha256"] = sha256_file(root / GOLDEN_FILE)
        raw["files"][GOLDEN_FILE]["size"] = (root / GOLDEN_FILE).stat().st_size
    if edit is not None:
        edit(raw)
    raw["content_sha256"] = content_digest(raw)
    (root / MANIFEST_FILE).write_text(json.dumps(raw, indent=1))
    if key is not None:
        sign_manifest(root, key)
    return root
