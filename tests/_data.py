"""Where the real recordings for tests live, and what to do when they are absent.

``shared_data_dir()`` returns ``../shared/data`` next to the repository. When it is missing the
calling test is skipped with the reason, except with ``VIGIL_REQUIRE_DATA=1`` (CI that has the
data), where it fails instead, so a broken data mount cannot silently skip the replay tests.
Import it from a test as ``from _data import shared_data_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["SHARED_DATA", "require_data", "shared_data_dir"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_data() -> bool:
    """True if VIGIL_REQUIRE_DATA=1: missing data is a failure, not a skip."""
    return os.environ.get("VIGIL_REQUIRE_DATA", "") == "1"


def shared_data_dir(*parts: str) -> Path:
    """``../shared/data`` (or a file/folder below it); skip or fail the test if it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if path.exists() or path.with_suffix(path.suffix + ".hea").exists():
        return path
    reason = f"real recordings not found at {path} (see ../shared/data/README.md)"
    if require_data():
        pytest.fail(reason + " and VIGIL_REQUIRE_DATA=1 requires them")
    pytest.skip(reason)
