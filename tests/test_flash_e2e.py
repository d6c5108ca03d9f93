"""Flashing end to end: `vigil-train flash` through a real mosquitto to a running `vigil-edge run`
process fed by `vigil-sim` on a pty. Frames keep flowing, no alert is lost, the next learned
alerts carry the new version, and a tampered transfer is refused with its reason published."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _bundles import variant
from conftest import MosquittoBroker, MqttCollector, Received
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_edge_e2e import EdgeProcess, Feeder, _write_config

from edge.activation import KILL_AT_ENV
from edge.payloads import iso_utc
from training.cli import main as train_main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# A desaturation every two simulated minutes, from 30 s on: alerts before and after the flash.
EVENTS = [f"desaturation@{30 + 120 * i}+10:50=16" for i in range(8)]


def _sim(link: Path) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "firmware_bridge.sim.cli", "--profile", "adult", "--seed", "5",
            "--speed", "10", "--link", str(link), "--duration", "1000", "-q"]
    for e in EVENTS:
        args += ["--event", e]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _learned(version: str) -> Callable[[Received], bool]:
    return lambda m: (m.topic.endswith("/alert") and isinstance(m.data, dict)
                      and m.data.get("model") == f"vitals-bundle/{version}"
                      and m.data.get("event") == "new")


def test_flash_a_running_edge_fed_by_the_simulator(
    tmp_path: Path, mosquitto: MosquittoBroker, device_id: str,
    mqtt_collector: Callable[..., MqttCollector], capsys: pytest.CaptureFixture[str],
) -> None:
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "ward.pub"
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    link = tmp_path / "board"
    config = _write_config(tmp_path / "edge.toml", mosquitto, device_id, str(link),
                           state_dir=str(tmp_path / "journal"), link_timeout_s=30.0)
    config.write_text(config.read_text() + f"""
[model]
bundle = "default"
store_dir = "{tmp_path / 'store'}"
trusted_keys = ["{pub}"]
""")
    sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/#"], client_id=f"nurse-{device_id}")
    sim = _sim(link)
    edge = EdgeProcess(config)
    new = variant(tmp_path / "new", "v-flashed", key=key)
    broker = ["--broker", f"127.0.0.1:{mosquitto.port}", "--device", device_id]
    try:
        assert sim.stdout is not None
        assert sim.stdout.readline().startswith("PTY /dev/")
        before = sub.wait_for(lambda m: m.topic.endswith("/model/state"), timeout_s=30).data
        sub.wait_for(_learned(before["version"]), timeout_s=60)  # the shipped model alarms

        # A tampered copy first: refused by the device, the reason published, nothing changes.
        bad = variant(tmp_path / "bad", "v-bad", key=Ed25519PrivateKey.generate())
        assert train_main(["flash", str(bad), *broker, "--timeout", "60"]) == 1
        assert "does not trust" in capsys.readouterr().out
        refused = sub.wait_for(lambda m: m.topic.endswith("/model/progress")
                               and m.data.get("state") == "refused", timeout_s=10).data
        assert "does not trust" in refused["reason"]
        # Signed by a trusted key but for a newer feature spec: refused before anything changes.
        newer = variant(tmp_path / "newer", "v-newer", key=key,
                        edit=lambda raw: raw["requires"].update(feature_spec_version=2))
        assert train_main(["flash", str(newer), *broker, "--timeout", "60"]) == 1
        assert "feature_spec_version" in capsys.readouterr().out
        sub.wait_for(lambda m: m.topic.endswith("/model/progress")
                     and m.data.get("state") == "refused"
                     and "requires.feature_spec_version = 2" in m.data["reason"], timeout_s=10)

        assert train_main(["flash", str(new), *broker, "--timeout", "60"]) == 0
        table = capsys.readouterr().out
        assert "installed" in table
        assert "v-flashed" in table
        state = sub.wait_for(lambda m: m.topic.endswith("/model/state")
                             and m.data.get("version") == "v-flashed", timeout_s=20).data
        assert state["source"] == "store"
        sub.wait_for(_learned("v-flashed"), timeout_s=60)  # the next desaturation
        status = sub.wait_for(lambda m: m.topic.endswith("/status") and m.data.get(
            "model", {}).get("version") == "v-flashed", timeout_s=20).data
    finally:
        sim.terminate()
        sim.wait(10)
    assert edge.stop() == 0
    assert "Traceback" not in edge.log()
    # Frames kept flowing: no sequence gap seen by the decoder, none dropped by the runtime,
    # vitals published all along (no silence of more than 2 s around the flash).
    bed = status["beds"]["bed1"]
    assert (bed["seq_gaps"], bed["frames_missed"], status["alerts"]["frames_dropped"]) == (0, 0, 0)
    stamps = [m.at for m in sub.snapshot() if m.topic.endswith("/vitals")]
    assert max(b - a for a, b in itertools.pairwise(stamps)) < 2.0
    # No alert lost: every alert's events arrive with consecutive seq numbers, and nothing was
    # dropped from the queue.
    by_id: dict[str, list[int]] = {}
    for a in sub.alerts():
        by_id.setdefault(a["id"], []).append(a["seq"])
    assert by_id
    assert all(seqs == list(range(len(seqs))) for seqs in by_id.values()), by_id
    assert status["alerts"]["dropped"] == {"low": 0, "medium": 0, "high": 0}


@pytest.mark.parametrize(("step", "runs"), [("stage", "old"), ("switch", "new"),
                                            ("report", "new")])
def test_kill_9_of_the_edge_during_activation_restarts_on_one_complete_bundle(
    tmp_path: Path, mosquitto: MosquittoBroker, mqtt_collector: Callable[..., MqttCollector],
    step: str, runs: str,
) -> None:
    """The edge process dies (SIGKILL, as a power cut) right after an install step: after the
    copy is staged, after the pointer switched, before the result was reported. Restarted, it
    runs the old or the new bundle, complete and self-tested, and says which in model/state."""
    device_id = f"kill-{step}-{tmp_path.name[-6:]}"
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "ward.pub"
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    feeder = Feeder().start()
    config = _write_config(tmp_path / "edge.toml", mosquitto, device_id, feeder.path)
    config.write_text(config.read_text() + f"""
[model]
bundle = "default"
store_dir = "{tmp_path / 'store'}"
trusted_keys = ["{pub}"]
""")
    sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/#"])
    new = variant(tmp_path / "new", "v-new", key=key)
    try:
        edge = EdgeProcess(config, env={KILL_AT_ENV: step})
        old = sub.wait_for(lambda m: m.topic.endswith("/model/state"), timeout_s=30).data
        code = train_main(["flash", str(new), "--broker", f"127.0.0.1:{mosquitto.port}",
                           "--device", device_id, "--timeout", "10", "--stall", "1",
                           "--max-reoffers", "1"])
        assert edge.proc.wait(30) == -signal.SIGKILL
        assert code == 1  # the device died before answering
        since = iso_utc(time.time())
        restarted = EdgeProcess(config)
        try:
            state = sub.wait_for(lambda m: m.topic.endswith("/model/state")
                                 and m.data["time"] > since, timeout_s=30).data
            want = old["version"] if runs == "old" else "v-new"
            assert state["version"] == want
            assert state["source"] == ("configured" if runs == "old" else "store")
            assert list((tmp_path / "store" / "staging").iterdir()) == []
            assert restarted.proc.poll() is None
        finally:
            assert restarted.stop() == 0
        assert "Traceback" not in restarted.log()
    finally:
        feeder.close()
