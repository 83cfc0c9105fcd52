"""The bubblewrap sandbox, tested from inside: no way out, read-only sources, writable sinks only."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from core.errors import AccessDeniedError, InvalidInputError
from core.runtime import sandbox
from core.runtime.sandbox import Mount, SandboxSpec, bwrap_command, launch

pytestmark = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="bubblewrap is not installed")


def _run(tmp_path: Path, code: str, *, extra_mounts: list[Mount] | None = None, insecure: bool = False):
    source, sink = tmp_path / "source", tmp_path / "sink"
    source.mkdir(exist_ok=True)
    sink.mkdir(exist_ok=True)
    (source / "data.txt").write_text("plaintext")
    spec = SandboxSpec(
        name="probe",
        command=["python", "-c", code],
        workdir=tmp_path / "app",
        mounts=[
            Mount(source, "/mnt/remote/source"),
            Mount(sink, "/mnt/remote/sink", writable=True),
            *(extra_mounts or []),
        ],
    )
    (tmp_path / "app").mkdir(exist_ok=True)
    process = launch(spec, insecure_no_sandbox=insecure)
    out, _ = process.communicate(timeout=60)
    return process.returncode, out.decode()


@pytest.fixture()
def host_listener():
    """A TCP server on the host's loopback: reachable from the host, so only isolation can block it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[bool] = []

    def accept() -> None:
        server.settimeout(20)
        try:
            conn, _ = server.accept()
            accepted.append(True)
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.close()


CONNECT = """
import socket, sys
for host in ("127.0.0.1", "1.1.1.1"):
    try:
        socket.create_connection((host, {port}), timeout=3).close()
        print("CONNECTED", host)
    except OSError as exc:
        print("BLOCKED", host, type(exc).__name__)
"""


def test_workload_cannot_open_an_outbound_connection(tmp_path, host_listener) -> None:
    port, accepted = host_listener
    code, out = _run(tmp_path, CONNECT.format(port=port))
    assert code == 0, out
    assert "CONNECTED" not in out and out.count("BLOCKED") == 2, out
    assert accepted == []


def test_outbound_probe_does_connect_without_the_sandbox(tmp_path, host_listener) -> None:
    """The same probe succeeds as a plain process: the previous test's pass is the sandbox's doing."""
    port, _accepted = host_listener
    _code, out = _run(tmp_path, CONNECT.format(port=port), insecure=True)
    assert "CONNECTED 127.0.0.1" in out, out


def test_datasource_is_read_only_and_datasink_is_writable(tmp_path) -> None:
    code, out = _run(
        tmp_path,
        """
print(open('/mnt/remote/source/data.txt').read())
try:
    open('/mnt/remote/source/evil.txt', 'w').write('x'); print('WROTE SOURCE')
except OSError as exc:
    print('SOURCE READ-ONLY', type(exc).__name__)
open('/mnt/remote/sink/out.txt', 'w').write('result')
""",
    )
    assert code == 0, out
    assert "plaintext" in out and "SOURCE READ-ONLY" in out and "WROTE SOURCE" not in out
    assert not (tmp_path / "source" / "evil.txt").exists()
    assert (tmp_path / "sink" / "out.txt").read_text() == "result"


def test_host_files_outside_the_mounts_are_invisible(tmp_path) -> None:
    secret = tmp_path / "party_keys" / "kek_privk.pem"
    secret.parent.mkdir()
    secret.write_text("PRIVATE")
    code, out = _run(
        tmp_path,
        f"""
import os
for path in ({str(secret)!r}, '/root', '/etc/shadow', '/work/main/.git'):
    print(path, os.path.exists(path))
try:
    open('/usr/evil', 'w'); print('WROTE USR')
except OSError:
    print('USR READ-ONLY')
""",
    )
    assert code == 0, out
    assert f"{secret} False" in out and "/etc/shadow False" in out and "/work/main/.git False" in out
    assert "USR READ-ONLY" in out


def test_missing_bubblewrap_is_refused_unless_insecure(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    with pytest.raises(AccessDeniedError, match="--insecure-no-sandbox"):
        _run(tmp_path, "print(1)")
    code, out = _run(tmp_path, "print(open('/mnt/remote/source/data.txt').read())", insecure=True)
    assert code == 0 and "plaintext" in out  # mount paths rewritten to the host directories


def test_bad_mounts_are_refused(tmp_path) -> None:
    spec = SandboxSpec(name="a", command=["true"], workdir=tmp_path, mounts=[Mount(tmp_path / "missing", "/mnt/x")])
    with pytest.raises(InvalidInputError, match="not a directory"):
        bwrap_command(spec)
    spec = SandboxSpec(name="a", command=["true"], workdir=tmp_path, mounts=[Mount(tmp_path, "relative")])
    with pytest.raises(InvalidInputError, match="absolute"):
        bwrap_command(spec)
    assert "--unshare-all" in bwrap_command(SandboxSpec(name="a", command=[sys.executable], workdir=tmp_path))


def test_the_memory_guard_reads_proportional_memory_only_past_the_limit() -> None:
    """The cheap resident total decides below the limit; past it, the guard judges by PSS, which a
    tree of forked workers sharing pages does not overcount (and which never exceeds RSS)."""
    me = [os.getpid()]
    proportional = sandbox.tree_memory(me, limit=0)
    resident = sandbox.tree_memory(me, limit=2**62)
    assert 0 < proportional <= resident
    assert sandbox.tree_memory([], limit=0) == 0


def test_a_workload_is_pinned_to_the_least_busy_cores_not_always_the_first() -> None:
    """Pinning every one-core clean room to core 0 made them share it while other cores idled."""
    stat_text = (
        "cpu  10 0 10 100 0 0 0 0 0 0\n"
        "cpu0 900 5 90 1000 7 1 2 3 0 0\n"  # busy: 900+5+90+1+2+3 (idle and iowait left out)
        "cpu1 10 0 10 1000 900 0 0 0 0 0\n"
        "intr 1 2 3\n"
    )
    assert sandbox.busy_jiffies(stat_text) == {0: 1001, 1: 20}
    real = sandbox.busy_jiffies(Path("/proc/stat").read_text())
    assert set(os.sched_getaffinity(0)) <= set(real)
    available = sorted(os.sched_getaffinity(0))
    assert sandbox.least_busy_cpus(len(available), available) == set(available)
    assert sandbox.least_busy_cpus(1, available[-1:]) == set(available[-1:])
    assert len(sandbox.least_busy_cpus(1, available)) == 1
