"""The console and the CLI must not destroy work by accident (issue #12).

Each test performs the accident through the real thing and checks that nothing was lost:
Enter in the vote modal against a real governance service (no ballot recorded), Ctrl+Q and
SIGTERM/SIGHUP in the scenario console with its real embedded services (nothing stopped
unasked, nothing left running unannounced), a second console on the same scenario, a resumed
`demo --stop-after`, a token on the command line, and a demo folder others can write.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core import embedded
from core.engine import PersonaEngine
from core.governance import launcher as governance_launcher
from core.runtime.local import write_status
from core.scenario import STATE_FILE, TRAINING_CONTRACT, Scenario, build_steps, open_embedded_scenario
from core.service_process import process_alive
from tests.cli_runner import cleanroom
from tests.test_evaluation import TOKEN, endpoint, tls_files, trained_model  # noqa: F401 (fixtures)
from tests.test_tui_governance import (  # noqa: F401 (fixture)
    PERSONAS,
    ballots_at_service,
    consortium,
    open_console,
    propose_contract,
)
from tui.app import CleanroomConsole
from tui.scenario_session import NOTE_NAME, end_session, previous_note
from tui.screens.confirm import ConfirmScreen, QuitScreen, VoteScreen
from tui.session_lock import LOCK_NAME, SessionLock
from tui.terminal_driver import terminal_hung_up

ROOT = Path(__file__).resolve().parents[1]
SIZE = (140, 40)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the vote modal: Enter is not a signature ----------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("key", ["a", "r"], ids=["accept", "reject"])
async def test_enter_in_the_vote_modal_cancels_and_records_no_ballot(consortium, key: str) -> None:  # noqa: F811
    """One reject vetoes a proposal, so an Enter that signed would be an irrevocable accident."""
    proposal_id = propose_contract(consortium["hoster"], "inference-1", {"applications": []})
    app = CleanroomConsole([PersonaEngine(consortium[p]) for p in PERSONAS], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await open_console(pilot, "f4", proposal_id)
        await pilot.press(key)
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, VoteScreen) and modal.accept == (key == "a")
        assert app.focused is not None and app.focused.id == "confirm-no", "focus starts on Cancel"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, VoteScreen), "Enter dismissed the modal"
        await pilot.press("tab", "enter")  # a second reflex: Tab never lands on the Sign button
        await app.workers.wait_for_complete()
    assert ballots_at_service(consortium["hoster"], proposal_id) == {}
    with_ledger = ballots_at_service(consortium["provider"], proposal_id)
    assert with_ledger == {}, "no member saw a ballot"


@pytest.mark.anyio
async def test_the_confirm_button_cannot_take_focus_so_only_y_confirms(tmp_path: Path) -> None:
    from core.workspace import Workspace

    answers: list[bool] = []
    app = CleanroomConsole([PersonaEngine(Workspace.init(tmp_path / "hoster", "hoster"))], background=False)
    async with app.run_test(size=SIZE) as pilot:
        for keys in (("enter",), ("tab", "enter"), ("tab", "tab", "enter"), ("y",)):
            app.push_screen(ConfirmScreen("Stop the deployment?", confirm_label="Stop"), answers.append)
            await pilot.pause()
            await pilot.press(*keys)
            await pilot.pause()
    assert answers == [False, False, False, True]


# -- quitting the scenario console ---------------------------------------------------------------
@pytest.fixture(scope="module")
def scenario_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scenario, list[PersonaEngine]]]:
    """The embedded scenario with its real governance and key service on loopback."""
    scenario, engines = open_embedded_scenario(tmp_path_factory.mktemp("home") / "scenario", quick=True)
    try:
        yield scenario, engines
    finally:
        for engine in engines:
            engine.close()
        scenario.stop_services()


def _services_healthy(scenario: Scenario) -> bool:
    records = embedded.status(home_dir=scenario.services_home)
    return bool(records) and all(record.get("healthy") for record in records.values())


def _training_runs(scenario: Scenario) -> subprocess.Popen[bytes]:
    """A training clean room that is running, as the runtime records one: its status file with
    the pid of a live process (a real training run takes minutes; what quitting does to it only
    depends on this record and on that process receiving SIGTERM from `process.stop`)."""
    runtime = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    write_status(
        scenario.runtime_environment().runtime_state_dir,
        TRAINING_CONTRACT,
        {"contract_id": TRAINING_CONTRACT, "state": "running", "pid": runtime.pid},
    )
    return runtime


def _end(runtime: subprocess.Popen[bytes]) -> None:
    if runtime.poll() is None:
        runtime.kill()
    runtime.wait()


@pytest.mark.anyio
async def test_ctrl_q_asks_before_stopping_a_running_training_and_enter_stays(
    scenario_console: tuple[Scenario, list[PersonaEngine]],
) -> None:
    scenario, engines = scenario_console
    runtime = _training_runs(scenario)
    try:
        app = CleanroomConsole(engines, background=False, scenario=scenario)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+q")
            await pilot.pause()
            modal = app.screen
            assert isinstance(modal, QuitScreen)
            assert any(TRAINING_CONTRACT in item for item in modal.running)
            await pilot.press("enter")  # focus is on Stay
            await pilot.pause()
            assert not isinstance(app.screen, QuitScreen) and app.is_running
            await pilot.press("ctrl+q")
            await pilot.pause()
            await pilot.press("l")
            await pilot.pause()
        assert app.exit_choice == "leave"
        line = end_session(scenario, choice=app.exit_choice, signal_name=app.exit_signal)
        assert process_alive(runtime.pid), "the training run was left running"
        assert _services_healthy(scenario), "and the services it reports to"
        assert f"left running clean room '{TRAINING_CONTRACT}' (running)" in line
        assert f"cleanroom deployment stop --contract-id {TRAINING_CONTRACT}" in line
        assert len(line.splitlines()) == 1
        # the next console starts by saying what the last one left running
        assert previous_note(scenario.root) == f"the last console session: {line}"
        assert not (scenario.root / NOTE_NAME).exists()
    finally:
        _end(runtime)


@pytest.mark.anyio
@pytest.mark.parametrize("signal_name", ["SIGHUP", "SIGTERM"])
async def test_sighup_or_sigterm_leave_running_work_running_and_say_so(
    scenario_console: tuple[Scenario, list[PersonaEngine]], signal_name: str
) -> None:
    scenario, engines = scenario_console
    runtime = _training_runs(scenario)
    try:
        app = CleanroomConsole(engines, background=False, scenario=scenario)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            app.terminate(signal_name)
            await pilot.pause()
        assert (app.exit_choice, app.exit_signal) == ("leave", signal_name)
        line = end_session(scenario, choice=app.exit_choice, signal_name=app.exit_signal)
        assert line.startswith(f"{signal_name} received: left running clean room 'finetune'")
        assert process_alive(runtime.pid) and _services_healthy(scenario)
        assert (scenario.root / NOTE_NAME).read_text().strip() == line, "said where a closed terminal can't lose it"
        previous_note(scenario.root)
    finally:
        _end(runtime)


@pytest.mark.anyio
async def test_stop_all_in_the_quit_modal_stops_the_training_and_the_services(tmp_path: Path) -> None:
    scenario, engines = open_embedded_scenario(tmp_path / "scenario", quick=True)
    runtime = _training_runs(scenario)
    try:
        app = CleanroomConsole(engines, background=False, scenario=scenario)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+q")
            await pilot.pause()
            assert isinstance(app.screen, QuitScreen)
            await pilot.press("s")
            await pilot.pause()
        assert app.exit_choice == "stop"
        line = end_session(scenario, choice=app.exit_choice, signal_name=None)
        assert f"stopped clean rooms {TRAINING_CONTRACT} and the services" in line
        assert runtime.wait(timeout=30) is not None, "the runtime got SIGTERM"
        assert not _services_healthy(scenario)
    finally:
        for engine in engines:
            engine.close()
        _end(runtime)
        scenario.stop_services()


@pytest.mark.anyio
async def test_ctrl_q_during_a_step_asks_and_n_lets_the_step_finish(
    scenario_console: tuple[Scenario, list[PersonaEngine]],
) -> None:
    scenario, engines = scenario_console
    app = CleanroomConsole(engines, background=False, scenario=scenario)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.run_scenario_step("consumer")  # the consumer's turn: keep its test split, stage its data
        assert app.running_step is not None and app.running_step.key == "consumer-data"
        await pilot.press("ctrl+q")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, QuitScreen) and modal.running == [
            "step 'consumer-data': consumer keep its test split; stage its training data"
        ]
        await pilot.press("n")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.is_running and app.running_step is None
    assert "consumer-data" in scenario.state.completed


@pytest.mark.anyio
async def test_ctrl_q_with_nothing_running_quits_at_once(
    scenario_console: tuple[Scenario, list[PersonaEngine]],
) -> None:
    scenario, engines = scenario_console
    app = CleanroomConsole(engines, background=False, scenario=scenario)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not isinstance(app.screen, QuitScreen)
    assert app.exit_choice is None


# -- the real console process: signals, a closed terminal, a second console ----------------------
TAKE_TERMINAL_THEN_RUN = (
    "import fcntl, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); from tui.cli import main; main(sys.argv[1:])"
)


class Terminal:
    """`cleanroom console` on a pseudo-terminal it controls (so closing it sends SIGHUP), with
    the screen output drained by a thread so the console never blocks on a full pty."""

    def __init__(self, home: Path) -> None:
        import pty

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        env = {
            **os.environ,
            "CLEANROOM_HOME": str(home),
            "TERM": "xterm-256color",
            "HF_HUB_OFFLINE": "1",
            "XDG_CONFIG_HOME": str(home / "config"),
        }  # not the operator's remembered theme/persona
        # a new session whose controlling terminal is this pty (TIOCSCTTY), then the console
        # itself; done in the child's own code rather than a preexec_fn (unsafe with threads)
        self.process = subprocess.Popen(
            [sys.executable, "-c", TAKE_TERMINAL_THEN_RUN, "console", "--quick"],
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.output = bytearray()
        self._hung_up = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        import select

        while not self._hung_up.is_set():
            if not select.select([self.master], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output.extend(chunk)

    def text(self) -> str:
        return bytes(self.output).decode(errors="replace")

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.process.poll() is None, f"console exited: {self.text()[-2000:]}"
            assert time.monotonic() < deadline, f"no {needle!r} on screen: {self.text()[-2000:]}"
            time.sleep(0.2)

    def hang_up(self) -> None:
        """Close the terminal's only master fd (the reader lets go of it first), as closing a
        terminal window does: the kernel hangs the line up and sends SIGHUP."""
        self._hung_up.set()
        self._reader.join()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.hang_up()


def _console_up(terminal: Terminal) -> None:
    terminal.wait_for("Quit")  # the key bar: the consortium is up and the app draws


def test_second_console_is_refused_and_sigterm_stops_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    terminal = Terminal(home)
    try:
        _console_up(terminal)
        root = home / "scenario"
        assert (root / LOCK_NAME).read_text().split() == [str(terminal.process.pid), "console"]

        monkeypatch.setenv("CLEANROOM_HOME", str(home))
        second = cleanroom("console")
        assert second.code == 5
        assert second.stderr.strip() == (
            f"error: another cleanroom console (pid {terminal.process.pid}) has the "
            f"scenario in {root} open; close that one first (one console or demo per "
            "scenario at a time)"
        )
        demo = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "consumer-data")
        assert demo.code == 5 and "another cleanroom console" in demo.stderr
        assert "consumer-data" not in json.loads((root / STATE_FILE).read_text())["completed"]

        terminal.process.send_signal(signal.SIGTERM)  # nothing runs: a clean stop
        assert terminal.process.wait(timeout=60) == 0
        assert "SIGTERM received; scenario" in terminal.text() and "services stopped" in terminal.text()
        assert not any(r.get("healthy") for r in embedded.status(home_dir=root / "services").values())
    finally:
        terminal.close()
    # the lock went with the process: a stale lock file is taken over by the next session
    with SessionLock(root, "console"):
        pass


def test_closing_the_terminal_leaves_a_training_run_and_says_so(tmp_path: Path) -> None:
    _console_ended_while_training_runs(tmp_path, "SIGHUP", Terminal.hang_up)  # the terminal window is closed


def test_sigterm_to_the_console_leaves_a_training_run_and_says_so(tmp_path: Path) -> None:
    _console_ended_while_training_runs(
        tmp_path, "SIGTERM", lambda terminal: terminal.process.send_signal(signal.SIGTERM), on_screen=True
    )


def _console_ended_while_training_runs(
    tmp_path: Path, signal_name: str, end: Callable[[Terminal], None], *, on_screen: bool = False
) -> None:
    """A real console process on its pty, a training clean room running, then ``end`` (a closed
    terminal or SIGTERM): the training run and the services it reports to must survive, and the
    console must say so where the next one reads it (``left-running.txt``) and, ``on_screen``
    (the terminal is still there), on its stderr."""
    home = tmp_path / "home"
    root = home / "scenario"
    terminal = Terminal(home)
    runtime = None
    try:
        _console_up(terminal)
        scenario = Scenario.open(root)
        runtime = _training_runs(scenario)
        end(terminal)
        assert terminal.process.wait(timeout=60) is not None
        assert process_alive(runtime.pid), f"the training run survived {signal_name}"
        assert _services_healthy(scenario), "and so did the services it reports to"
        note = (root / NOTE_NAME).read_text()
        assert note.startswith(f"{signal_name} received: left running clean room 'finetune' (running)")
        assert f"CLEANROOM_HOME={root / 'services'} cleanroom down" in note
        assert len(note.strip().splitlines()) == 1
        if on_screen:
            deadline = time.monotonic() + 10  # the pty is drained by a thread: let it catch up
            while note.strip() not in terminal.text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert note.strip() in terminal.text(), terminal.text()[-2000:]
    finally:
        terminal.close()
        if runtime is not None:
            _end(runtime)
        embedded.down(home_dir=root / "services")


# -- `demo --stop-after`, resumed ----------------------------------------------------------------
def test_the_same_stop_after_again_runs_nothing_and_a_later_one_continues(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    first = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "init:provider", "--output", "json")
    assert first.code == 0, first.stderr
    assert json.loads(first.stdout)["stepsDone"] == 2
    before = (root / STATE_FILE).read_bytes()

    again = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "init:provider", "--output", "json")
    assert again.code == 0, again.stderr
    assert "already past init:provider (2/" in again.stderr and "nothing to run" in again.stderr
    assert json.loads(again.stdout)["stepsDone"] == 2
    assert (root / STATE_FILE).read_bytes() == before, "nothing ran"
    assert not (root / "consumer").exists()

    earlier = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "init:hoster", "--output", "json")
    assert earlier.code == 0 and json.loads(earlier.stdout)["stepsDone"] == 2

    later = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "init:consumer", "--output", "json")
    assert later.code == 0, later.stderr
    assert json.loads(later.stdout)["stepsDone"] == 3
    assert json.loads((root / STATE_FILE).read_text())["completed"] == [s.key for s in build_steps()[:3]]


def test_a_resumed_run_stops_where_it_was_asked_to_not_at_the_end(tmp_path: Path) -> None:
    scenario = Scenario.open(tmp_path / "demo", quick=True)
    scenario.state.completed = [s.key for s in build_steps()[:2]]
    scenario.save()
    assert scenario.stopped_at("init:provider") and not scenario.stopped_at("init:consumer")
    scenario.run(__import__("core.scenario", fromlist=["Reporter"]).Reporter(), stop_after="init:provider")
    assert scenario.state.completed == [s.key for s in build_steps()[:2]]


# -- the demo folder must be private -------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_demo_refuses_a_folder_others_can_write(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(mode)
    outcome = cleanroom("demo", "--workspace", folder, "--quick", "--stop-after", "init:hoster")
    assert outcome.code == 2
    assert outcome.stderr.strip() == (
        f"error: demo workspace {folder} is writable by others (mode {mode:04o}); "
        f"run `chmod go-w {folder}` or pass a folder only you can write to"
    )
    assert list(folder.iterdir()) == []


def test_demo_refuses_a_folder_another_user_owns(tmp_path: Path) -> None:
    if os.getuid() == 0:
        foreign = tmp_path / "theirs"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)  # nobody's: root may hand it over, and must still refuse it
        owner = 65534
    else:
        foreign, owner = Path("/"), 0  # root's, not this user's
    outcome = cleanroom("demo", "--workspace", foreign, "--quick", "--stop-after", "init:hoster")
    assert outcome.code == 2
    assert outcome.stderr.strip() == (
        f"error: demo workspace {foreign} is owned by uid {owner}, not by you (uid "
        f"{os.getuid()}); pass a folder you own to --workspace, e.g. "
        "--workspace ~/cleanroom-demo"
    )
    assert list(foreign.iterdir()) == [] or foreign == Path("/")


def test_demo_makes_a_missing_folder_private(tmp_path: Path) -> None:
    root = tmp_path / "new" / "demo"
    old = os.umask(0o002)  # a shared-group umask would have made it group-writable
    try:
        outcome = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "init:hoster", "--output", "json")
    finally:
        os.umask(old)
    assert outcome.code == 0, outcome.stderr
    assert root.stat().st_mode & 0o777 == 0o700


# -- tokens off the command line -----------------------------------------------------------------
def test_infer_takes_the_token_from_a_private_file_and_refuses_a_shared_one(tmp_path: Path) -> None:
    from tui.commands.infer import read_token_file

    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJFUzM4NCJ9.e30.sig\n")
    token.chmod(0o600)
    assert read_token_file(token, also_given=False) == "eyJhbGciOiJFUzM4NCJ9.e30.sig"
    token.chmod(0o644)
    shared = cleanroom("infer", "--dataset", tmp_path, "--endpoint", "https://127.0.0.1:1", "--token-file", token)
    assert shared.code == 2
    assert shared.stderr.strip() == (
        f"error: token file {token} can be read by other users (mode 0644, uid "
        f"{os.getuid()}); run `chmod 600 {token}` (it must be yours)"
    )
    token.chmod(0o600)
    both = cleanroom(
        "infer", "--dataset", tmp_path, "--endpoint", "https://127.0.0.1:1", "--token-file", token, "--token", "x"
    )
    assert both.code == 2 and "--token (or CLEANROOM_TOKEN) and --token-file both give a token" in both.stderr
    link = tmp_path / "link"
    link.symlink_to(token)
    linked = cleanroom("infer", "--dataset", tmp_path, "--endpoint", "https://127.0.0.1:1", "--token-file", link)
    assert linked.code == 2 and f"cannot read token file {link}" in linked.stderr


def test_the_token_from_the_environment_or_a_file_reaches_a_real_endpoint(
    endpoint: str,  # noqa: F811 (the fixture imported from test_evaluation)
    tls_files: dict[str, Path],  # noqa: F811
    trained_model: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The two ways that keep the token out of `ps` work end to end over pinned TLS."""
    base = [
        "infer",
        "--dataset",
        trained_model["data"],
        "--endpoint",
        endpoint,
        "--ca",
        tls_files["ca"],
        "--limit",
        "8",
        "--output",
        "json",
    ]
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    from_file = cleanroom(*base, "--token-file", token)
    assert from_file.code == 0, from_file.stderr
    assert json.loads(from_file.stdout)["totalRows"] == 8
    monkeypatch.setenv("CLEANROOM_TOKEN", TOKEN)
    from_env = cleanroom(*base)
    assert from_env.code == 0, from_env.stderr
    monkeypatch.setenv("CLEANROOM_TOKEN", "stolen")
    refused = cleanroom(*base)
    assert refused.code == 6 and "refused the token (401)" in refused.stderr


def test_every_verb_that_takes_a_token_documents_the_private_ways() -> None:
    import click

    from tui.cli import cli

    ctx = click.Context(cli, info_name="cleanroom")
    takes_token = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        stack = [(name, command)]
        while stack:
            path, node = stack.pop()
            if isinstance(node, click.Group):
                stack.extend((f"{path} {sub}", node.get_command(ctx, sub)) for sub in node.list_commands(ctx))
                continue
            options = {o.name: o for o in node.params if isinstance(o, click.Option)}
            if "token" in options:
                takes_token.append(path)
                assert options["token"].envvar == "CLEANROOM_TOKEN", path
                assert "token_file" in options, path
                assert "ps" in (options["token"].help or ""), path
    assert takes_token == ["infer"]


def test_the_demo_narrates_the_token_through_the_environment() -> None:
    commands = [c for step in build_steps() for c in step.commands]
    assert not [c for c in commands if "--token" in c]
    assert any(c.startswith("export CLEANROOM_TOKEN=$(") for c in commands)
    readme = (ROOT / "README.md").read_text()
    assert "--token $(" not in readme and "CLEANROOM_TOKEN" in readme and "--token-file" in readme


def test_sigterm_while_the_services_start_stops_them_and_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    terminal = Terminal(home)
    try:
        terminal.wait_for("starting governance")  # the first service is starting: nothing drawn yet
        terminal.process.send_signal(signal.SIGTERM)
        assert terminal.process.wait(timeout=60) == 1
        assert f"SIGTERM received while opening {home / 'scenario'}: stopped" in terminal.text()
        assert not any(r.get("healthy") for r in embedded.status(home_dir=home / "scenario" / "services").values())
        # the service that was coming up has no record yet, but its process must be gone too
        assert governance_launcher.running_pid(embedded.governance_state_dir(home / "scenario" / "services")) is None
    finally:
        terminal.close()
        embedded.down(home_dir=home / "scenario" / "services")


def test_a_closed_terminal_window_reads_as_hung_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the window closes, the input thread's failed read can end the app before the SIGHUP
    handler runs; the console then asks the terminal itself, so the goodbye still leaves work running."""
    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        assert not terminal_hung_up()
        os.close(master)
        assert terminal_hung_up()
