"""The console's terminal driver: Textual's Linux driver, made safe for a terminal that goes away.

When the window is closed the kernel hangs the line up and sends SIGHUP then SIGCONT. Stock
Textual then does two things that can hang the console for ever (and with it the scenario's
session lock): its output thread dies on the first write that fails with EIO, after which
every frame queues up until the bounded queue is full and the event loop blocks in
``Queue.put`` (seen under load: the shutdown's own writes were enough); and its SIGCONT handler
"resumes" the application on the dead terminal, starting a second output and input thread.
Here writes to a terminal that is gone are dropped, and nothing resumes onto one, so SIGHUP's
handler always gets to end the session the way tui.scenario_session says.
"""

from __future__ import annotations

import io
import os
import select
import sys
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


def terminal_hung_up() -> bool:
    """Whether the console's terminal is gone (its window closed): a poll of stdin says hang-up."""
    try:
        poller = select.poll()
        poller.register(sys.stdin.fileno(), select.POLLIN)
        return any(mask & select.POLLHUP for _, mask in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


class TerminalOutput(io.RawIOBase):
    """The terminal under the driver's output file: after the first EIO/EPIPE it is gone for
    good, so later writes are dropped instead of killing the thread that drains the queue.
    It borrows the descriptor (stderr's) and never closes it."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.gone = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data: ReadableBuffer) -> int:
        size = memoryview(data).nbytes
        if self.gone:
            return size
        try:
            return os.write(self._fd, data)
        except OSError:
            self.gone = True
            return size


class HangupSafeDriver(LinuxDriver):
    """LinuxDriver whose output survives a hung-up terminal and which never resumes onto one."""

    def __init__(self, app: App[Any], **options: Any) -> None:
        super().__init__(app, **options)
        if self._file is not None:
            stderr = self._file
            self._file = io.TextIOWrapper(
                io.BufferedWriter(TerminalOutput(stderr.fileno())), encoding=stderr.encoding, errors=stderr.errors
            )

    def _sigcont_application(self, *args: object) -> None:
        if terminal_hung_up():
            return  # SIGCONT from the hang-up: the SIGHUP handler ends the session
        super()._sigcont_application(*args)


def console_driver() -> type[Driver] | None:
    """The driver for a console on this platform (None: Textual's own choice)."""
    return HangupSafeDriver if sys.platform.startswith("linux") else None
