"""Pseudo-terminals that behave like a serial cable.

A pty's default line discipline translates CR/LF, echoes and interprets control bytes, which
corrupts binary frames; both ends are put in raw mode here so bytes pass unchanged.
"""

from __future__ import annotations

import os
import termios
import tty

__all__ = ["open_raw_pty", "set_raw"]


def set_raw(fd: int) -> None:
    """Put a tty file descriptor in raw mode (no echo, no translation, no signals)."""
    tty.setraw(fd, termios.TCSANOW)
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def open_raw_pty() -> tuple[int, int, str]:
    """Open a pty pair in raw mode; returns (master fd, slave fd, slave path).

    The caller writes board bytes to the master; a reader opens the slave path like a serial
    port. Keep the slave fd open while the link should exist: closing both ends makes the path
    vanish, which is how an unplugged USB cable looks to the reader.
    """
    master, slave = os.openpty()
    set_raw(master)
    set_raw(slave)
    return master, slave, os.ttyname(slave)
