"""A closed terminal window must never hang the console (issue #12: the console then holds the
scenario's session lock and the services' fate is never said).

The console test in test_console_safety.py closes a real console's terminal, but whether the
app still draws frames between the hang-up and its exit depends on load (1 run in 30 hung under
load with stock Textual: its output thread had died on EIO and the shutdown blocked on its full
queue). Here an app that draws every 10 ms keeps drawing for a second after SIGHUP, on a pty
whose master is closed, so that window is always there.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tui.terminal_driver import TerminalOutput

ROOT = Path(__file__).resolve().parents[1]

DRAWS_AFTER_THE_HANGUP = """
import asyncio, fcntl, signal, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
from textual.app import App
from textual.widgets import Label
from tui.terminal_driver import console_driver

class Drawing(App[None]):
    def compose(self):
        yield Label("0", id="frame")

    def on_mount(self) -> None:
        self.frames = 0
        self.set_interval(0.01, self.draw)

    def draw(self) -> None:
        self.frames += 1
        self.query_one("#frame", Label).update(str(self.frames))
        if self.frames == 20:
            print("drawing", file=sys.__stdout__, flush=True)

app = Drawing(driver_class=console_driver())
loop = asyncio.new_event_loop()
loop.add_signal_handler(signal.SIGHUP, lambda: loop.call_later(1.0, app.exit))
app.run(loop=loop)
"""


def test_an_app_that_draws_after_the_terminal_closed_still_exits(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", DRAWS_AFTER_THE_HANGUP],
        cwd=ROOT,
        env={**os.environ, "TERM": "xterm-256color"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    try:
        screen = b""
        deadline = time.monotonic() + 60
        while b"drawing" not in screen:
            assert process.poll() is None and time.monotonic() < deadline, screen[-2000:]
            if select.select([master], [], [], 0.1)[0]:
                screen += os.read(master, 65536)
        os.close(master)  # the window closes: SIGHUP, SIGCONT, and EIO for every write after
        master = -1
        # 0: SIGHUP's handler ended it; 1: the input thread's failed read did first (Textual's
        # panic; the console then still reads the hang-up, see tui.commands.console). Not a hang.
        assert process.wait(timeout=30) in (0, 1)
    finally:
        if master >= 0:
            os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_writes_after_a_hang_up_are_dropped_not_raised() -> None:
    master, slave = pty.openpty()
    output = TerminalOutput(slave)
    try:
        assert output.write(b"drawn") == 5 and not output.gone
        assert os.read(master, 100) == b"drawn"
        os.close(master)
        assert output.write(b"after the window closed") == len(b"after the window closed")
        assert output.gone
        assert output.write(b"and again") == len(b"and again")
    finally:
        os.close(slave)
