"""`make demo`: a whole monitor on one machine, stopping by itself.

Starts (1) an MQTT broker — the embedded pure-Python amqtt broker on a free loopback port unless
one is given with ``--broker`` — (2) the board simulator on a pseudo-terminal playing a scenario
with a desaturation and a tachycardia, accelerated, (3) the edge runtime reading that port, and
(4) the nurse-station alert view, which prints alerts as they arrive. After ``--duration`` seconds
or on Ctrl-C everything is stopped in order and no process is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

_STOP_GRACE_S = 5.0
_BROKER_START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt broker in a background thread with its own event loop (anonymous, loopback only)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._broker: Any = None
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - demo extra only

        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        try:
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except Exception as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> None:
        """Start serving; raises if the broker could not bind."""
        self._thread.start()
        self._started.wait(_BROKER_START_TIMEOUT_S)
        if self._error is not None:
            raise RuntimeError(f"embedded broker failed to start: {self._error}")
        if not self._started.is_set():
            raise TimeoutError(f"embedded broker not listening after {_BROKER_START_TIMEOUT_S} s")

    def stop(self) -> None:
        """Shut the broker down and end its thread."""
        if self._broker is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(_STOP_GRACE_S)
            except Exception as exc:
                _log.warning("broker shutdown: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_STOP_GRACE_S)


def _python_entry(module: str, *args: str) -> list[str]:
    """Run a console-script entry point with this interpreter, venv or not."""
    code = f"import sys; from {module} import main; sys.exit(main())"
    return [sys.executable, "-c", code, *args]


@contextlib.contextmanager
def _process(argv: list[str], log: Path | None, name: str) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log, "ab") if log else None  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        argv,
        stdout=out if out else None,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,  # Ctrl-C reaches the demo, which stops children in order
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _log.warning("%s did not stop on SIGTERM; killing it", name)
                proc.kill()
                proc.wait()
        if out:
            out.close()


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns a process exit code."""
    ap = argparse.ArgumentParser(prog="python -m edge.demo", description=__doc__)
    ap.add_argument("--broker", help="HOST:PORT of an existing broker (default: embedded amqtt)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds before it stops")
    ap.add_argument("--speed", type=float, default=10.0, help="simulation speed-up")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo %(message)s")
    # amqtt logs every connection and undelivered QoS 0 message at INFO/WARNING.
    logging.getLogger("amqtt").setLevel(logging.ERROR)
    logging.getLogger("transitions").setLevel(logging.ERROR)

    broker: EmbeddedBroker | None = None
    if args.broker:
        host, _, port_s = args.broker.rpartition(":")
        port = int(port_s)
    else:
        host, port = "127.0.0.1", _free_port()
        broker = EmbeddedBroker(port)
        broker.start()
        print(f"embedded MQTT broker (amqtt) on {host}:{port}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="vigil-demo-"))
    link = work / "ttyVIGIL"
    log = work / "demo.log"
    scenario = resources.files("firmware_bridge.sim").joinpath("scenarios", "demo.toml")
    print(f"simulator + edge runtime logs: {log}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with (
            _process(
                _python_entry(
                    "edge.cli", "alerts", "--broker", f"{host}:{port}", "--device", "demo",
                    "--timeout", str(args.duration),
                ),
                None,
                "alerts",
            ) as alerts,
            _process(
                _python_entry(
                    "edge.cli", "run", "--serial", str(link), "--broker", f"{host}:{port}",
                    "--device-id", "demo",
                ),
                log,
                "edge",
            ),
            _process(
                _python_entry(
                    "firmware_bridge.sim.cli",
                    "--scenario", str(scenario),
                    "--speed", str(args.speed),
                    "--seed", str(args.seed),
                    "--link", str(link),
                    "--duration", str(args.duration * args.speed + 60),
                ),
                log,
                "simulator",
            ),
        ):
            print(f"showing alerts for {args.duration:.0f} s (Ctrl-C stops everything)\n",
                  flush=True)
            deadline = time.monotonic() + args.duration + _STOP_GRACE_S
            while not stop.is_set() and alerts.poll() is None and time.monotonic() < deadline:
                stop.wait(0.2)
    finally:
        if broker is not None:
            broker.stop()
    print("\ndemo stopped; all processes ended.", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
