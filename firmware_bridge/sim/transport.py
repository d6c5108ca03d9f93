"""Thin byte pipes for the simulator: a pseudo-terminal (default) or a real serial port.

The board emulation never touches these; `SimRunner` moves bytes between the two. Both adapters
drop what the reader does not take within ``write_timeout_s``, like a UART whose receiver is not
listening, instead of stalling the simulated board.

Pseudo-terminal: each ``open()`` makes a new pty (raw mode, via `firmware_bridge.ports`), whose
slave path is announced (``on_open``), written to ``path_file`` and pointed to by the symlink
``link``. ``close()`` closes both ends, so the slave path vanishes the way an unplugged USB
serial device does, and removes the link; the next ``open()`` gets a new path and re-points the
link. A reader that opens the link therefore reconnects to the same name after an unplug.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import struct
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

from firmware_bridge.ports import open_raw_pty

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT_S",
    "DEFAULT_WRITE_TIMEOUT_S",
    "PtyTransport",
    "SerialTransport",
    "Transport",
]

_log = logging.getLogger(__name__)

DEFAULT_WRITE_TIMEOUT_S: Final = 0.2
DEFAULT_DRAIN_TIMEOUT_S: Final = 0.5
_DRAIN_POLL_S: Final = 0.005
_READ_CHUNK: Final = 4096


class Transport(Protocol):
    """A link the board's bytes go out on and the Pi's commands come in from."""

    @property
    def is_open(self) -> bool:
        """Whether the port currently exists."""
        ...

    def open(self) -> None:
        """Make the port appear."""
        ...

    def close(self) -> None:
        """Make the port disappear (cable unplugged)."""
        ...

    def shutdown(self) -> None:
        """Close for good and clean up (links, path files)."""
        ...

    def write(self, data: bytes) -> int:
        """Send; returns the number of bytes the reader accepted (the rest is dropped)."""
        ...

    def read(self) -> bytes:
        """Whatever arrived from the Pi, without blocking (b"" if nothing)."""
        ...


def _replace_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(link)


class PtyTransport:
    """The board on a pseudo-terminal; see the module docstring for open/close semantics."""

    def __init__(
        self,
        *,
        link: str | Path | None = None,
        path_file: str | Path | None = None,
        on_open: Callable[[str], None] | None = None,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    ) -> None:
        """``link``: symlink kept pointing at the current pty; ``path_file``: file that gets the
        current slave path; ``on_open(path)``: called after every (re)open;
        ``drain_timeout_s``: how long ``close`` lets a reader take what is still queued."""
        self.link = Path(link) if link is not None else None
        self.path_file = Path(path_file) if path_file is not None else None
        self.on_open = on_open
        self.write_timeout_s = write_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.path: str | None = None
        self.bytes_dropped = 0
        self.opens = 0
        self._master: int | None = None
        self._slave: int | None = None

    @property
    def is_open(self) -> bool:
        """Whether the pty exists."""
        return self._master is not None

    @property
    def master_fd(self) -> int | None:
        """Master file descriptor (the board's end), for tests that want to poke at it."""
        return self._master

    def open(self) -> None:
        """Create a new raw pty, publish its path (link, path file, callback)."""
        if self._master is not None:
            return
        master, slave, path = open_raw_pty()
        os.set_blocking(master, False)
        self._master, self._slave, self.path = master, slave, path
        self.opens += 1
        if self.link is not None:
            _replace_symlink(self.link, path)
        if self.path_file is not None:
            tmp = self.path_file.with_name(f".{self.path_file.name}.tmp")
            tmp.write_text(path + "\n")
            tmp.replace(self.path_file)
        _log.info("pty open at %s%s", path, f" (link {self.link})" if self.link else "")
        if self.on_open is not None:
            self.on_open(path)

    def _unread(self) -> int:
        if self._slave is None:
            return 0
        raw = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])

    def _drain(self) -> None:
        """Give a reader up to drain_timeout_s to take queued bytes: closing the master hangs up
        the slave, and Linux discards whatever the reader had not read yet."""
        deadline = time.monotonic() + self.drain_timeout_s
        empty_polls = 0
        while time.monotonic() < deadline and empty_polls < 2:
            empty_polls = empty_polls + 1 if self._unread() == 0 else 0
            time.sleep(_DRAIN_POLL_S)

    def close(self) -> None:
        """Close both ends: the slave path vanishes; the link is removed."""
        if self._master is None:
            return
        with contextlib.suppress(OSError):
            self._drain()
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self.link is not None and self.link.is_symlink():
            with contextlib.suppress(OSError):
                if os.readlink(self.link) == self.path:
                    self.link.unlink()
        _log.info("pty %s closed", self.path)

    def shutdown(self) -> None:
        """Close and remove the path file too (the path it names is gone)."""
        self.close()
        if self.path_file is not None:
            with contextlib.suppress(OSError):
                self.path_file.unlink()

    def write(self, data: bytes) -> int:
        """Write to the master; what the reader does not take in time is dropped."""
        if self._master is None or not data:
            return 0
        view = memoryview(data)
        sent = 0
        deadline = time.monotonic() + self.write_timeout_s
        while sent < len(view):
            try:
                sent += os.write(self._master, view[sent:])
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            select.select([], [self._master], [], remaining)
        if sent < len(view):
            self.bytes_dropped += len(view) - sent
            _log.debug("reader not keeping up: dropped %d bytes", len(view) - sent)
        return sent

    def read(self) -> bytes:
        """Non-blocking read of whatever the Pi wrote."""
        if self._master is None:
            return b""
        try:
            return os.read(self._master, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise


class SerialTransport:
    """The board on a real serial port via pyserial (imported when opened).

    An unplug event closes the port for its duration and reopens it; the device itself stays.
    At ``--speed`` above 1 the data rate grows with it and can exceed the baud rate; then
    writes time out and bytes are dropped.
    """

    def __init__(
        self, port: str, baud: int = 115200, *, write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    ) -> None:
        """Port name (e.g. /dev/ttyUSB0) and baud rate, 8N1."""
        self.port = port
        self.baud = baud
        self.write_timeout_s = write_timeout_s
        self.bytes_dropped = 0
        self._ser: Any = None

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._ser is not None

    def open(self) -> None:
        """Open the port (raises serial.SerialException if it cannot)."""
        if self._ser is not None:
            return
        import serial  # noqa: PLC0415 - pyserial only needed for a real port

        self._ser = serial.Serial(
            self.port, baudrate=self.baud, timeout=0, write_timeout=self.write_timeout_s
        )
        _log.info("serial port %s open at %d baud", self.port, self.baud)

    def close(self) -> None:
        """Close the port."""
        if self._ser is not None:
            self._ser.close()
            self._ser = None
            _log.info("serial port %s closed", self.port)

    def shutdown(self) -> None:
        """Same as close."""
        self.close()

    def write(self, data: bytes) -> int:
        """Write; a write that times out counts its bytes as dropped."""
        if self._ser is None or not data:
            return 0
        import serial  # noqa: PLC0415

        try:
            n = int(self._ser.write(data) or 0)
        except serial.SerialTimeoutException:
            n = 0
        self.bytes_dropped += len(data) - n
        return n

    def read(self) -> bytes:
        """Whatever is waiting, without blocking."""
        if self._ser is None:
            return b""
        waiting = int(self._ser.in_waiting)
        return bytes(self._ser.read(waiting)) if waiting else b""
