"""`vigil-train flash` through a real mosquitto to stand-in edges (tests/_flash_device.py), each
a paho client feeding the real `edge.transfer.TransferReceiver` and a stub install.

Shown: a full flash of a signed copy of the shipped bundle to two devices found by ``--all``
with the final table; a refusal and a silent device, each with its reason; a transfer cut
midway that a second run finishes sending only the missing chunks; and the checks made before
any network (unsigned bundle, bad flags, unreachable broker).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from _bundles import trusted, variant
from _flash_device import FlashDevice, stub_install
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from models.bundle import packaged_bundle
from tests.mosquitto import MosquittoBroker, free_port
from training.flash import (
    EXIT_BROKER,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    flash,
    flash_main,
    plan_bundle,
)

KEY = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
TIMEOUT = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return variant(tmp_path_factory.mktemp("flash") / "b", "v-new", key=KEY)


@pytest.fixture
def devices() -> Iterator[list[FlashDevice]]:
    made: list[FlashDevice] = []
    yield made
    for d in made:
        d.close()


def _device(made: list[FlashDevice], broker: MosquittoBroker, tmp_path: Path, name: str, *,
            key: Ed25519PrivateKey = KEY, **kw: object) -> FlashDevice:
    dev = FlashDevice(broker.host, broker.port, name, tmp_path / name / "incoming",
                      stub_install([trusted(key)]), version="v-old", **kw)  # type: ignore[arg-type]
    made.append(dev)
    return dev


def _rows(out: str) -> dict[str, list[str]]:
    """The table's rows by device: [before, after, outcome, seconds, bytes..., reason...]."""
    lines = out.strip().splitlines()
    assert lines[0].split()[:6] == ["device", "before", "after", "outcome", "seconds", "bytes"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


@TIMEOUT
def test_flash_all_online_devices_and_print_the_table(
    mosquitto: MosquittoBroker, tmp_path: Path, bundle: Path, devices: list[FlashDevice],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag = uuid.uuid4().hex[:6]
    a = _device(devices, mosquitto, tmp_path, f"a-{tag}")
    b = _device(devices, mosquitto, tmp_path, f"b-{tag}")
    gone = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    gone.connect(mosquitto.host, mosquitto.port)
    gone.loop_start()
    gone.publish(f"vigil/gone-{tag}/status", json.dumps({"state": "offline"}), 1, True)\
        .wait_for_publish(5)
    gone.disconnect()
    gone.loop_stop()

    code = flash_main([str(bundle), "--all", "--broker", mosquitto.address, "--timeout", "15"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, out + err
    rows = _rows(out)
    assert set(rows) == {a.device, b.device}  # the offline device is not flashed
    plan = plan_bundle(bundle)
    for dev in (a, b):
        before, after, outcome = rows[dev.device][:3]
        assert (before, after, outcome) == ("v-old", "v-new", "installed")
        assert dev.version == "v-new"
        states = [p["state"] for p in dev.progress]
        assert states[0] == "receiving"
        assert states[-3:] == ["complete", "installing", "installed"]
        assert dev.chunk_messages == plan.chunks  # nothing sent twice on a clean link
        assert len(dev.progress) < plan.chunks  # progress now and then, not per chunk
        assert list((tmp_path / dev.device / "incoming").iterdir()) == []  # cleaned up
    assert f"signed by key {plan.key_id}" in err
    assert f"{a.device} " in err
    assert "installed" in err


@TIMEOUT
def test_refused_and_silent_devices_are_reported_with_their_reason(
    mosquitto: MosquittoBroker, tmp_path: Path, bundle: Path, devices: list[FlashDevice],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag = uuid.uuid4().hex[:6]
    good = _device(devices, mosquitto, tmp_path, f"good-{tag}")
    wary = _device(devices, mosquitto, tmp_path, f"wary-{tag}", key=STRANGER)
    ghost = f"ghost-{tag}"
    code = flash_main([str(bundle), "--device", good.device, "--device", wary.device,
                       "--device", ghost, "--broker", mosquitto.address, "--stall", "0.5",
                       "--max-reoffers", "2", "--timeout", "15"])
    out, err = capsys.readouterr()
    assert code == EXIT_FAILED, out + err
    rows = _rows(out)
    assert rows[good.device][:3] == ["v-old", "v-new", "installed"]
    assert rows[wary.device][:3] == ["v-old", "v-old", "refused"]
    assert "which this device does not trust" in " ".join(rows[wary.device])
    assert rows[ghost][:3] == ["-", "-", "failed"]
    assert "no answer to 3 offers" in " ".join(rows[ghost])
    assert wary.version == "v-old"


@TIMEOUT
def test_interrupted_transfer_resumes_sending_only_the_missing_chunks(
    mosquitto: MosquittoBroker, tmp_path: Path, bundle: Path, devices: list[FlashDevice],
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = plan_bundle(bundle)
    kept = 20
    name = f"cut-{uuid.uuid4().hex[:6]}"
    cut = _device(devices, mosquitto, tmp_path, name, drop_after=kept)
    code = flash_main([str(bundle), "--device", name, "--broker", mosquitto.address,
                       "--stall", "1", "--max-reoffers", "2", "--timeout", "15"])
    out, _ = capsys.readouterr()
    assert code == EXIT_FAILED
    reason = " ".join(_rows(out)[name][5:])
    assert "stalled: no progress" in reason
    assert f"({kept} of {plan.chunks} chunks" in reason
    assert cut.version == "v-old"
    with pytest.raises(Exception, match="incomplete"):
        cut.receiver.completed(cut.progress[0]["transfer"])  # never installable as it is

    # The edge restarts (a new receiver on the same incoming directory), flash runs again.
    cut.close()
    devices.remove(cut)
    again = _device(devices, mosquitto, tmp_path, name)
    [result] = flash(plan, [name], host=mosquitto.host, port=mosquitto.port, stall_s=5.0,
                     timeout_s=15)
    assert result.outcome == "installed", result.reason
    assert result.chunks_sent == plan.chunks - kept == again.chunk_messages
    assert result.bytes_sent == plan.total_bytes - kept * plan.chunk_size
    assert (result.version_before, result.version_after) == ("v-old", "v-new")


# -- refused before any network ----------------------------------------------------------------


def test_checks_before_the_network(tmp_path: Path, bundle: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    assert flash_main([str(packaged_bundle()), "--all", "--broker", nowhere]) == EXIT_USAGE
    assert "unsigned" in capsys.readouterr().err
    tampered = variant(tmp_path / "t", "v-t", key=KEY)
    (tampered / "dbscan.npz").write_bytes(b"not the signed file")
    assert flash_main([str(tampered), "--all", "--broker", nowhere]) == EXIT_USAGE
    assert "dbscan.npz" in capsys.readouterr().err
    assert flash_main([str(bundle), "--device", "a/b", "--broker", nowhere]) == EXIT_USAGE
    assert flash_main([str(bundle), "--broker", nowhere]) == EXIT_USAGE  # no target
    assert flash_main([str(bundle), "--all", "--broker", "h:x"]) == EXIT_USAGE
    capsys.readouterr()
    assert flash_main([str(bundle), "--all", "--broker", nowhere]) == EXIT_BROKER
    assert "not reachable" in capsys.readouterr().err
