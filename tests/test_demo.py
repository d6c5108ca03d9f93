"""`make demo` runs `python -m edge.demo`: it must show alerts and leave nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
    return " Z " not in stat  # a zombie is already dead


@pytest.mark.slow
def test_demo_shows_the_desaturation_and_stops_by_itself() -> None:
    out = subprocess.run(
        # The demo's own speed: alarm onsets run on the Pi's clock, so much faster playback
        # would outrun the scenario's events.
        [sys.executable, "-m", "edge.demo", "--duration", "30"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "embedded MQTT broker (amqtt)" in out.stdout
    assert "device demo is online" in out.stdout
    assert "spo2_low" in out.stdout
    assert "hr_high" in out.stdout
    assert "all processes ended" in out.stdout


@pytest.mark.slow
def test_demo_interrupted_stops_every_process() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "edge.demo", "--duration", "120", "--speed", "30"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert demo.stdout is not None
        for _ in range(20):  # banner lines, then the device comes online
            line = demo.stdout.readline()
            if "showing alerts" in line:
                break
        kids = []
        for _ in range(100):
            kids = _children_of(demo.pid)
            if len(kids) >= 3:
                break
            time.sleep(0.1)
        assert len(kids) == 3, kids  # simulator, edge runtime, alert view
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0
        remaining = [k for k in kids if _alive(k)]
        assert remaining == []
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
