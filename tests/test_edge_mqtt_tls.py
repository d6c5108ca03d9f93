"""MQTT over TLS with password authentication, against a real mosquitto configured with
certificates made here by openssl: the right CA and password connect; a wrong password or a
broker certificate from an untrusted CA fails with an error that says which."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.cli import main
from edge.config import ConfigError, parse_config
from edge.mqtt import MqttPublisher
from edge.outbox import Outbox
from edge.runtime import Runtime
from tests.mosquitto import MosquittoBroker, find_mosquitto
from tests.test_edge_mqtt import FakeReader

USER, PASSWORD, WRONG = "ward3", "s3cret-pass", "not-the-password"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, a broker certificate it signed for 127.0.0.1, and an unrelated CA."""
    if shutil.which("openssl") is None:
        reason = "openssl is not installed (apt-get install openssl)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true requires it")
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "other-ca")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out",
             "broker.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "broker.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


@pytest.fixture
def secure_broker(pki: Path, tmp_path: Path) -> Iterator[MosquittoBroker]:
    binary = find_mosquitto()
    passwd = shutil.which("mosquitto_passwd")
    if binary is None or passwd is None:
        reason = "mosquitto and mosquitto_passwd are needed (apt-get install mosquitto)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true requires them")
        pytest.skip(reason)
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    subprocess.run([passwd, "-c", "-b", str(workdir / "passwd"), USER, PASSWORD], check=True,
                   capture_output=True)
    broker = MosquittoBroker(binary, workdir, anonymous=False, options=[
        f"cafile {pki / 'ca.crt'}", f"certfile {pki / 'broker.crt'}",
        f"keyfile {pki / 'broker.key'}", f"password_file {workdir / 'passwd'}",
    ])
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


def _publisher(broker: MosquittoBroker, tmp_path: Path, **mqtt: Any) -> MqttPublisher:
    config = parse_config({
        "device": {"id": "tls-1"},
        "mqtt": {"port": broker.port, "reconnect_min_s": 1, "reconnect_max_s": 1, **mqtt},
        "beds": [{"id": "bed1", "serial": "/dev/null"}],
    })
    return MqttPublisher(config.mqtt, status_topic="vigil/tls-1/status",
                         alert_topic="vigil/tls-1/alert", outbox=Outbox(10))


def _wait(publisher: MqttPublisher, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (what == "connected" and publisher.connected) or (
            what == "error" and publisher.last_error
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"not {what} within {timeout_s} s (last error: {publisher.last_error})")


def test_tls_with_the_right_ca_and_password_connects_and_publishes(
    secure_broker: MosquittoBroker, pki: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORD + "\n")
    pub = _publisher(secure_broker, tmp_path, username=USER, password_file=str(secret),
                     tls_ca_file=str(pki / "ca.crt"))
    pub.start()
    try:
        _wait(pub, "connected")
        assert pub.last_error is None
        pub.publish_status(json.dumps({"state": "online"}).encode())
    finally:
        pub.stop()
    # Without TLS the same port does not even speak MQTT.
    plain = _publisher(secure_broker, tmp_path, username=USER, password=PASSWORD)
    plain.start()
    try:
        time.sleep(1.5)
        assert not plain.connected
    finally:
        plain.stop()


def test_a_wrong_password_is_named(
    secure_broker: MosquittoBroker, pki: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pub = _publisher(secure_broker, tmp_path, username=USER, password=WRONG,
                     tls_ca_file=str(pki / "ca.crt"))
    pub.start()
    try:
        _wait(pub, "error")
    finally:
        pub.stop()
    assert not pub.connected
    assert pub.last_error is not None
    assert "refused the connection" in pub.last_error
    assert "check mqtt.username and mqtt.password" in pub.last_error
    assert WRONG not in caplog.text  # the secret itself is never logged


def test_an_untrusted_broker_certificate_is_named(
    secure_broker: MosquittoBroker, pki: Path, tmp_path: Path
) -> None:
    pub = _publisher(secure_broker, tmp_path, username=USER, password=PASSWORD,
                     tls_ca_file=str(pki / "other-ca.crt"))
    pub.start()
    try:
        _wait(pub, "error")
        time.sleep(1.0)
        assert not pub.connected
    finally:
        pub.stop()
    assert pub.last_error is not None
    assert "TLS certificate is not trusted" in pub.last_error
    assert "mqtt.tls_ca_file" in pub.last_error


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"username": "u", "password": "p", "password_file": __file__},
         "mqtt.password_file: give mqtt.password or mqtt.password_file, not both"),
        ({"password": "p"}, "mqtt.password: a password needs mqtt.username"),
        ({"tls_cert_file": __file__}, "mqtt.tls_key_file: a client certificate needs both"),
        ({"tls_ca_file": "/no/such/ca.crt"}, "mqtt.tls_ca_file: '/no/such/ca.crt': no such file"),
    ],
)
def test_security_settings_are_checked_at_start_up(mqtt: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"mqtt": mqtt, "beds": [{"id": "b", "serial": "/x"}]})
    assert any(e.startswith(message) for e in info.value.errors), info.value.errors
    config = parse_config({"mqtt": {"username": "u", "password": "topsecret"},
                           "beds": [{"id": "b", "serial": "/x"}]})
    assert "topsecret" not in repr(config)


def test_the_command_line_clients_speak_tls_and_passwords_too(
    secure_broker: MosquittoBroker, pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`vigil-edge status | reload | ack` against an edge behind TLS + password auth; a wrong
    password and an untrusted certificate are named, not a bare timeout."""
    secret, wrong = tmp_path / "pw", tmp_path / "wrong"
    secret.write_text(PASSWORD + "\n")
    wrong.write_text(WRONG + "\n")
    config = parse_config({
        "device": {"id": "tls-2"},
        "mqtt": {"port": secure_broker.port, "username": USER, "password_file": str(secret),
                 "tls_ca_file": str(pki / "ca.crt"), "status_interval_s": 1.0},
        "beds": [{"id": "bed1", "serial": "/dev/fake0"}],
    })
    runtime = Runtime(config, reader_factory=FakeReader)
    stop = threading.Event()
    thread = threading.Thread(target=runtime.run, args=(stop,))
    thread.start()
    base = ["--broker", f"127.0.0.1:{secure_broker.port}", "--device", "tls-2",
            "--timeout", "5"]
    good = ["--username", USER, "--password-file", str(secret), "--tls-ca", str(pki / "ca.crt")]
    try:
        _wait(runtime.publisher, "connected", timeout_s=20.0)  # TLS handshake on a loaded CI
        assert main(["status", *base, *good]) == 0
        assert "tls-2: online" in capsys.readouterr().out
        assert main(["ack", *base, *good, "--bed", "bed1"]) == 0
        assert "OK ack on tls-2" in capsys.readouterr().out
        assert main(["status", *base, "--username", USER, "--password-file", str(wrong),
                     "--tls-ca", str(pki / "ca.crt")]) == 3
        assert "refused the connection" in capsys.readouterr().err
        assert main(["reload", *base, "--username", USER, "--password-file", str(secret),
                     "--tls-ca", str(pki / "other-ca.crt")]) == 3
        err = capsys.readouterr().err
        assert "TLS certificate is not trusted" in err
        assert "--tls-ca" in err
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", __file__], "--tls-cert and --tls-key go together"),
        (["--tls-ca", "/no/such/ca.crt"], "--tls-ca /no/such/ca.crt: not a readable file"),
        (["--password-file", __file__], "--password-file needs --username"),
    ],
)
def test_client_security_flags_are_checked_before_connecting(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "--broker", "127.0.0.1:1", "--device", "d", *flags]) == 2
    assert message in capsys.readouterr().err
