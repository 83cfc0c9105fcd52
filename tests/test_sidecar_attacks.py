"""A workload attacking the Azure runtime sidecar through the files it may write (issue #12).

Each test runs the REAL sidecar (`python -m core.runtime.sidecar`, configured from the ARM
template exactly as ACI configures it) against loopback governance, the key service and
azurite, with the template's own wrapped workload in bubblewrap (the setup of
tests/test_runtime_sidecar.py), and plants what an attacker in the container group would in the
run volume every container shares: a FIFO or a link at the telemetry path, links at the
sidecar's control files (``ready``/``stop``/``kill``/``failed``) and at a workload's exit-code
file, and a DEK put by someone other than the asset's owner. The sidecar must refuse each: the
kill switch and SIGTERM still stop the run, no host file is read, published or written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.crypto.kek import load_kek_public_key, wrap_dek_for
from core.governance.state import DB_FILE
from core.keys.wrap_deks import dek_secret_name
from core.runtime.aci import (
    EXIT_FILE_PREFIX,
    FAILED_FILE,
    KILL_FILE,
    LOSS_TELEMETRY_OFF_FILE,
    LOSS_TELEMETRY_ON_FILE,
    READY_FILE,
    RUN_VOLUME,
    STOP_FILE,
    aci_template,
)
from core.runtime.deployment import RUN_DIR, TELEMETRY_FILE
from tests.runtime_world import World
from tests.test_runtime_sidecar import CCE, CONTRACT, _sidecar_env, _workload, deployed  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")

ROOT = Path(__file__).resolve().parents[1]
SINK = "/mnt/remote/results"
DISABLED = "execution disabled by a member"
SECRET = "host-secret-5150"
WAIT = 90.0


@pytest.fixture(scope="module")
def telemetry_on(deployed: tuple[World, dict[str, Any]]) -> tuple[World, dict[str, Any]]:  # noqa: F811
    """The contract of tests/test_runtime_sidecar.py with telemetry voted on: the sidecar then
    reads the telemetry file the workload controls."""
    world, spec = deployed
    world.vote_all(world.clients["hoster"].set_runtime_option(CONTRACT, "telemetry", enable=True))
    return world, spec


class Group:
    """One run of the container group: the workload (the template's wrapper around ``command``)
    and the sidecar, both real processes; ``events()`` are only this run's."""

    def __init__(self, world: World, spec: dict[str, Any], mount_root: Path, command: list[str]) -> None:
        self.world = world
        self.mount_root = mount_root
        self.run_dir = mount_root / RUN_VOLUME
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._seen = len(world.events(CONTRACT))
        self.workload = _workload(aci_template(spec, cce_policy=CCE), mount_root, command)
        self.sidecar: subprocess.Popen[str] | None = None
        self._env = _sidecar_env(world, spec, mount_root)

    def start(self) -> Group:
        self.sidecar = subprocess.Popen(
            [sys.executable, "-m", "core.runtime.sidecar"], cwd=ROOT, text=True, env=self._env, stderr=subprocess.PIPE
        )
        return self

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        events = self.world.events(CONTRACT)[self._seen :]
        return [e for e in events if kind is None or e["type"] == kind]

    def wait_for_event(self, kind: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while not self.events(kind):
            assert self.sidecar is not None and self.sidecar.poll() is None, self.finish()[1]
            assert time.monotonic() < deadline, f"no {kind} event: {[e['type'] for e in self.events()]}"
            time.sleep(0.1)
        return self.events(kind)[-1]["data"]

    def finish(self) -> tuple[int, str]:
        """The sidecar's exit code and stderr (it must end by itself)."""
        assert self.sidecar is not None
        _out, errors = self.sidecar.communicate(timeout=WAIT)
        return self.sidecar.returncode, errors

    def close(self) -> None:
        for process in (self.sidecar, self.workload):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture()
def group(telemetry_on: tuple[World, dict[str, Any]], tmp_path: Path) -> Iterator[Callable[[list[str]], Group]]:
    world, spec = telemetry_on
    made: list[Group] = []

    def make(command: list[str]) -> Group:
        made.append(Group(world, spec, tmp_path / "group", command))
        return made[-1]

    try:
        yield make
    finally:
        for each in made:
            each.close()
        world.clients["consumer"].set_runtime_option(CONTRACT, "execution", enable=True)


def _host_secret(tmp_path: Path) -> Path:
    """A host file the workload must never see published (telemetry-shaped, so a reader that
    followed the link would forward it as an event)."""
    host_file = tmp_path / "host" / "secret.jsonl"
    host_file.parent.mkdir(exist_ok=True)
    host_file.write_text(json.dumps({"step": 1, "secret": SECRET}) + "\n")
    return host_file


def _stop(group: Group, how: str) -> None:
    if how == "kill switch":
        group.world.clients["consumer"].set_runtime_option(CONTRACT, "execution", enable=False)
    else:
        assert group.sidecar is not None
        group.sidecar.send_signal(signal.SIGTERM)  # ACI stops the container group


# -- the telemetry file: a FIFO or a link there --------------------------------------------------------
@pytest.mark.parametrize("how", ["kill switch", "SIGTERM"])
@pytest.mark.parametrize("planted", ["FIFO", "symbolic link"])
def test_a_fifo_or_link_at_the_telemetry_path_neither_holds_off_a_stop_nor_publishes_a_host_file(
    group: Callable[[list[str]], Group], tmp_path: Path, planted: str, how: str
) -> None:
    host_file = _host_secret(tmp_path)
    plant = f"mkfifo {TELEMETRY_FILE}" if planted == "FIFO" else f"ln -s {host_file} {TELEMETRY_FILE}"
    run = group(["sh", "-c", f"echo partial > {SINK}/partial.txt; {plant}; exec sleep 300"]).start()
    refused = run.wait_for_event("telemetry_refused")  # the telemetry reader met it and refused it
    assert refused["kind"] == planted
    _stop(run, how)
    code, errors = run.finish()  # the control loop was never blocked: the stop wins
    assert code == 2, errors
    assert run.workload.wait(timeout=WAIT) == 143  # SIGTERM reached the workload through the wrapper
    reason = DISABLED if how == "kill switch" else "SIGTERM (container group stopped)"
    assert run.events("stopping")[-1]["data"]["reason"] == reason
    assert run.events("exited")[-1]["data"]["exit_codes"] == {"app": 143}
    assert run.events("telemetry") == []
    assert SECRET not in json.dumps(run.events())
    assert host_file.read_text() == json.dumps({"step": 1, "secret": SECRET}) + "\n"
    assert run.events("sealed"), "what the workload wrote is still sealed to its owner"
    assert not any((run.mount_root / "datasource-model").iterdir()), "no plaintext left"


# -- the sidecar's control files and the workloads' exit files ------------------------------------------
def test_links_planted_at_the_control_files_are_replaced_never_written_through(
    group: Callable[[list[str]], Group], tmp_path: Path
) -> None:
    """Another container of the group plants, from the start, links where the sidecar writes
    ``ready``, ``stop``, ``kill`` and the loss-telemetry answer. Written through, each would
    create (or overwrite) a host file as the sidecar's user; they point where nothing exists
    yet, so the sandboxed wrapper does not take them for the real thing either."""
    targets = tmp_path / "host-targets"
    targets.mkdir()
    run = group(["sh", "-c", f"echo partial > {SINK}/partial.txt; exec sleep 300"])
    names = (READY_FILE, STOP_FILE, KILL_FILE, LOSS_TELEMETRY_ON_FILE, LOSS_TELEMETRY_OFF_FILE)
    for name in names:
        os.symlink(targets / name, run.run_dir / name)
    run.start()
    run.wait_for_event("running")
    _stop(run, "kill switch")
    code, errors = run.finish()
    assert code == 2, errors
    assert run.workload.wait(timeout=WAIT) == 143  # the replaced stop/kill reached the wrapper
    assert list(targets.iterdir()) == [], "a control file was written through a planted link"
    for name, text in ((READY_FILE, None), (STOP_FILE, DISABLED), (KILL_FILE, DISABLED)):
        path = run.run_dir / name
        assert not path.is_symlink() and path.is_file(), name
        assert text is None or path.read_text() == text
    answered = [n for n in (LOSS_TELEMETRY_ON_FILE, LOSS_TELEMETRY_OFF_FILE) if not (run.run_dir / n).is_symlink()]
    assert answered == [LOSS_TELEMETRY_OFF_FILE]  # the sidecar's answer replaced the link; no private run here


@pytest.mark.parametrize("planted", ["symbolic link", "FIFO"])
def test_an_exit_file_the_workload_planted_is_neither_followed_nor_blocking(
    group: Callable[[list[str]], Group], tmp_path: Path, planted: str
) -> None:
    """The workload puts a link to a host file holding "7" (or a FIFO) where its wrapper would
    write its exit code: the sidecar stops waiting (the name exists) but reads no code from it,
    reporting the workload as not finished (-15) instead of the host file's content."""
    host_code = tmp_path / "host" / "code"
    host_code.parent.mkdir()
    host_code.write_text("7\n")
    exit_file = f"{RUN_DIR}/{EXIT_FILE_PREFIX}app"
    plant = f"ln -s {host_code} {exit_file}" if planted == "symbolic link" else f"mkfifo {exit_file}"
    run = group(["sh", "-c", f"echo partial > {SINK}/partial.txt; {plant}; exec sleep 300"]).start()
    code, errors = run.finish()
    assert code == 2, errors
    assert 'workloads exited {"app": -15}' in errors
    assert run.events("exited")[-1]["data"]["exit_codes"] == {"app": -int(signal.SIGTERM)}
    assert host_code.read_text() == "7\n"
    entry = os.lstat(run.run_dir / f"{EXIT_FILE_PREFIX}app").st_mode  # left where it was, unread
    assert stat.S_ISLNK(entry) if planted == "symbolic link" else stat.S_ISFIFO(entry)


# -- the DEK writer ----------------------------------------------------------------------------------------
def test_the_sidecar_refuses_a_dek_not_written_by_the_assets_owner(
    group: Callable[[list[str]], Group], telemetry_on: tuple[World, dict[str, Any]], tmp_path: Path
) -> None:
    """``dek-results`` squatted by the hoster (a DEK it knows, wrapped to the consumer's KEK),
    as a row written under the old first-writer rule: governance would refuse the write today,
    so the row is put in its database directly. The sidecar checks the recorded writer against
    the accepted spec's owner before unwrapping, so the consumer's datasink is never sealed
    with it: the squatted DEK is never unwrapped, nothing is decrypted or sealed, and the
    waiting workloads are told to give up."""
    world, _spec = telemetry_on
    hoster_id = world.parties["hoster"].identity.member_id
    consumer_id = world.parties["consumer"].identity.member_id
    kek = world.keys().describe_kek(consumer_id, CONTRACT)
    known = wrap_dek_for(load_kek_public_key(kek["public_key_pem"].encode()), b"\x42" * 32)
    name = dek_secret_name("results")
    # the live service writes the same file: wait out its transactions (the 5 s default is short under load)
    database = sqlite3.connect(world.governance_state / DB_FILE, timeout=120)
    original = database.execute(
        "SELECT value, owner FROM secrets WHERE contract_id=? AND name=?", (CONTRACT, name)
    ).fetchone()
    targets = tmp_path / "host-targets"
    targets.mkdir()
    try:
        with database:
            database.execute(
                "UPDATE secrets SET value=?, owner=? WHERE contract_id=? AND name=?", (known, hoster_id, CONTRACT, name)
            )
        run = group(["sh", "-c", f"echo squatted > {SINK}/out.txt"])
        os.symlink(targets / FAILED_FILE, run.run_dir / FAILED_FILE)  # and `failed` is not written through
        code, errors = run.start().finish()
        assert code == 1, errors
        (line,) = errors.strip().splitlines()
        assert line.startswith("cleanroom-runtime: error: the DEK of 'results' was written by member ")
        assert f"not by its owner {consumer_id[:16]}…" in line
        assert run.workload.wait(timeout=WAIT) == 70  # the wrapper gave up: `failed`, never `ready`
        assert "failed" in [e["type"] for e in run.events()]
        assert not {"keys_released", "running", "sealed"} & {e["type"] for e in run.events()}
        assert not (run.run_dir / READY_FILE).exists()
        assert (run.run_dir / FAILED_FILE).is_file() and not (run.run_dir / FAILED_FILE).is_symlink()
        assert list(targets.iterdir()) == []
        assert not any((run.mount_root / "datasource-model").iterdir()), "nothing was decrypted"
    finally:
        with database:
            database.execute(
                "UPDATE secrets SET value=?, owner=? WHERE contract_id=? AND name=?", (*original, CONTRACT, name)
            )
        database.close()
