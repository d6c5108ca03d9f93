"""Command line and scenarios: flags, TOML, the shipped demo, a real process and SIGTERM."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge.codec import Decoder
from firmware_bridge.frames import HelloFrame
from firmware_bridge.ports import set_raw
from firmware_bridge.sim import cli
from firmware_bridge.sim.events import EventKind
from firmware_bridge.sim.scenario import SCENARIO_DIR, ScenarioError, SimConfig, load_scenario

_WAIT_S = 20.0
REPO = Path(__file__).resolve().parents[1]


def _config(*argv: str) -> SimConfig:
    return cli.config_from_args(cli._parser().parse_args(list(argv)))


def test_demo_scenario_has_desaturation_and_tachycardia_early_and_close():
    cfg = load_scenario(SCENARIO_DIR / "demo.toml")
    kinds = {e.kind: e for e in cfg.events}
    desat, tachy = kinds[EventKind.DESATURATION], kinds[EventKind.TACHYCARDIA]
    assert desat.onset_s <= 120
    assert tachy.onset_s <= 120
    assert abs(desat.onset_s - tachy.onset_s) <= 60
    assert cfg.speed == 10.0
    assert cfg.duration_s is not None
    assert 30 <= cfg.duration_s / cfg.speed <= 120  # about a minute of wall-clock time


def test_flags_override_the_scenario_and_events_add_up():
    cfg = _config("--scenario", "demo", "--speed", "100", "--seed", "9", "--event", "fever@5")
    assert cfg.speed == 100.0
    assert cfg.seed == 9
    assert cfg.duration_s == 600.0  # from the scenario
    assert [e.kind for e in cfg.events][-1] is EventKind.FEVER
    assert len(cfg.events) == 3
    cfg2 = _config("--profile", "copd", "--ecg-rate", "500", "--no-loop", "--replay", "x.csv")
    assert cfg2.profile == "copd"
    assert cfg2.board.ecg_rate_hz == 500
    assert cfg2.loop is False
    assert cfg2.replay == "x.csv"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[sim]\nsped = 3\n", "sim.sped"),
        ("[sim]\nspeed = 'fast'\n", "sim.speed"),
        ("[sim]\nspeed = -1.0\n", "speed=-1.0"),
        ("[board]\nchunk_ms = 0\n", "board.chunk_ms"),
        ("[[events]]\nkind = 'hiccups'\nonset_s = 1\n", "events[0].kind"),
        ("[[events]]\nkind = 'fever'\n", "onset_s"),
        ("[[events]]\nkind = 'fever'\nonset_s = 1\nmagnitud = 2\n", "magnitud"),
        ("[patient]\n", "patient"),
        ("[sim\n", "scenario"),
    ],
)
def test_scenario_errors_name_the_key(tmp_path: Path, text: str, needle: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=r".*" + needle.replace("[", r"\[").replace("]", r"\]")):
        load_scenario(path)


def test_relative_replay_path_is_resolved_against_the_scenario(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text("[sim]\nreplay = 'rec/100'\n")
    assert load_scenario(path).replay == str(tmp_path / "rec" / "100")


def test_help_documents_the_event_syntax(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for needle in ("KIND@ONSET[+RAMP][:DURATION][=MAGNITUDE]", "cable_unplug", "--link", "demo"):
        assert needle in out


def test_bad_event_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    assert cli.main(["--event", "hiccups@3", "--duration", "1"]) == 2
    assert "hiccups" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside wfdb, with pandas 3
def test_main_in_process_runs_and_cleans_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    link = tmp_path / "board"
    path_file = tmp_path / "path"
    argv = [
        "--speed",
        "1000",
        "--duration",
        "5",
        "--link",
        str(link),
        "--path-file",
        str(path_file),
    ]
    assert cli.main([*argv, "-q", "--replay", "fixture:mimic3-numerics"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out
    assert out[0].startswith("PTY /dev/pts/")
    assert not link.exists()
    assert not path_file.exists()


def test_process_on_a_pty_stops_cleanly_on_sigterm(tmp_path: Path):
    link = tmp_path / "board"
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.sim.cli", "--link", str(link), "--speed", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    fd = -1
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], _WAIT_S)
        assert ready, "no PTY line"
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("PTY /dev/pts/")
        assert os.readlink(link) == line.split(" ", 1)[1]
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        set_raw(fd)
        dec = Decoder()
        frames = []
        deadline = time.monotonic() + _WAIT_S
        while len(frames) < 20 and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                frames += dec.feed(os.read(fd, 65536))
        assert isinstance(frames[0], HelloFrame)
        assert dec.stats.errors == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(_WAIT_S) == 0
    finally:
        if fd >= 0:
            os.close(fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait(_WAIT_S)
    assert not link.exists()
    assert proc.stderr is not None
    assert "signal" in proc.stderr.read().decode()
