"""What runs on the Pi imports only what `pip install '.[edge]'` installs."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("firmware_bridge", "models", "edge")
# Neither in the edge extra nor in the standard library: training stack, the simulator's
# replay stack (wfdb pulls pandas, scipy, matplotlib) and the demo's embedded broker.
NOT_ON_THE_PI = (
    "tensorflow", "keras", "tf_keras", "sklearn", "imblearn", "pandas", "matplotlib", "scipy",
    "wfdb", "amqtt", "training",
)


def _runtime_modules() -> list[str]:
    names = []
    for pkg in RUNTIME_PACKAGES:
        names.append(pkg)
        for info in pkgutil.walk_packages([str(REPO / pkg)], prefix=f"{pkg}."):
            names.append(info.name)
    return sorted(names)


def test_every_runtime_module_imports_without_the_training_or_replay_stack() -> None:
    modules = _runtime_modules()
    assert "edge.runtime" in modules
    assert "firmware_bridge.sim.replay" in modules
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = {NOT_ON_THE_PI!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in bad)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("pkg", RUNTIME_PACKAGES)
def test_runtime_packages_never_import_training(pkg: str) -> None:
    for path in (REPO / pkg).rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import training", "from training")), (
                f"{path.relative_to(REPO)}: {stripped}"
            )


def test_the_packaged_configuration_runs_the_shipped_bundle_without_the_training_stack() -> None:
    """`make demo` and a fresh Pi: edge/default.toml names the bundle committed in the package;
    it verifies (hashes, golden vectors) and loads with the edge extra alone."""
    probe = (
        "import json, sys\n"
        "from edge.config import load_config\n"
        "from edge.learned import load_learned\n"
        "setup = load_learned(load_config())\n"
        f"bad = {NOT_ON_THE_PI!r}\n"
        "print(json.dumps({'status': dict(setup.status), 'gate': setup.gate is not None,\n"
        "                  'bad': sorted(m for m in sys.modules if m.split('.')[0] in bad)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"]["state"] == "loaded", result["status"]
    assert result["status"]["version"].startswith("vitals-default-s0-")
    assert result["gate"] is True
    assert result["bad"] == []
