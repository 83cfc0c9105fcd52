"""Running an application as untrusted code: bubblewrap with no network, minimal mounts and bounds.

The sandbox sees only: the system directories Python needs (read-only), the Python runtime and
the project's virtual environment (read-only), the application's code (read-only), its
datasource mounts (read-only), its datasink mounts and its run directory (writable), a
size-limited private /tmp and /dev/shm, and nothing else writable (the root and /dev are
remounted read-only, so neither can be used to fill the host's RAM). It gets fresh namespaces
for everything (``--unshare-all``), so its network namespace has no route out: it cannot reach
the internet, the host's loopback services, or another party. It dies with the runtime
(``--die-with-parent``) and holds no capabilities.

Stopping: bubblewrap runs the workload in a pid namespace and a session of its own, so a signal
to bwrap's process group never reaches it (bwrap would just die, and ``--die-with-parent`` then
SIGKILLs the workload: no clean exit, no last checkpoint). :func:`signal_workload` therefore
signals the workload's processes themselves, by host pid, found by walking the sandbox's
process tree (the walk the memory guard uses); a SIGKILL of bwrap's group stays the last word.

A serving application does not bind its own socket: the runtime binds and listens on a unix
socket in a directory the workload cannot see (:class:`ListeningSocket`) and hands the
listening fd in (``CLEANROOM_LISTEN_FD``). The ingress then connects to a path only the
runtime could have created, never to a name the workload could have replaced with a symlink
to some other host socket.

Resource bounds (:class:`ResourceLimits`, from the contract's ``cpu`` / ``memory_gb``): the
process tree's proportional memory is watched by :class:`MemoryGuard`, which kills the sandbox
when it passes the limit and says so (``limit_exceeded``); a per-process ``RLIMIT_DATA``
backstop keeps a single burst from taking the host's RAM between two samples. CPU is a
placement (``sched_setaffinity`` to ``ceil(cpu)`` cores); without a delegated cgroup it is not
a hard quota. ``RLIMIT_NOFILE`` / ``RLIMIT_NPROC`` bound descriptors and fork bombs.

Without bubblewrap the runtime refuses, unless the operator passes ``--insecure-no-sandbox``;
then the application runs as a plain process (paths rewritten to the host mounts) and the
runtime says so loudly in its output and in governance events.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import AccessDeniedError, CleanroomError, InvalidInputError

# System paths Python and common native wheels need; missing ones are skipped (--ro-bind-try).
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin")
SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/alternatives",
)
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
LISTEN_FD_ENV = "CLEANROOM_LISTEN_FD"

MIB = 1024 * 1024
GIB = 1024 * MIB
DEFAULT_CPU = 1.0  # what an application fragment declares when it says nothing (core.config.fragment)
DEFAULT_MEMORY_GB = 2.0
TMP_SHARE = 4  # /tmp may hold a quarter of the memory limit ...
MIN_TMP_BYTES = 64 * MIB  # ... but never less than this
SHM_BYTES = 64 * MIB
# the per-process RLIMIT_DATA backstop sits above the watched limit: the guard, not the rlimit,
# is what ends a workload that grows past its limit, so the failure is reported as such
DATA_BACKSTOP_FACTOR = 2
DATA_BACKSTOP_EXTRA = 256 * MIB
MAX_OPEN_FILES = 4096
SETUP_WAIT_SECONDS = 0.5  # how long a stop waits for bwrap to clone the sandbox it is to end (the kill switch has 2 s)
MAX_PROCESSES = 8192  # counts every process of the uid; high enough for a user's own, low for a fork bomb
GUARD_INTERVAL_SECONDS = 0.05
CPU_SAMPLE_SECONDS = 0.1  # how long a launch watches the cores to pick the least busy ones
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class LimitExceededError(CleanroomError):
    """A workload was stopped because it went past a resource limit its contract declares."""

    exit_code = 1


@dataclass(frozen=True)
class Mount:
    """A host directory shown to the application at ``target``."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class ResourceLimits:
    """What one application may use: memory (bytes), CPU cores, and the size of its tmpfs."""

    memory_bytes: int
    cpus: int
    tmp_bytes: int
    shm_bytes: int = SHM_BYTES
    open_files: int = MAX_OPEN_FILES
    processes: int = MAX_PROCESSES

    @classmethod
    def for_application(cls, app: dict[str, Any]) -> ResourceLimits:
        """The limits the deployment spec declares for ``app`` (the fragment defaults if absent)."""
        memory_gb = app.get("memory_gb") or DEFAULT_MEMORY_GB
        cpu = app.get("cpu") or DEFAULT_CPU
        if not (isinstance(memory_gb, (int, float)) and isinstance(cpu, (int, float)) and memory_gb > 0 and cpu > 0):
            raise InvalidInputError(
                f"application '{app.get('name')}' declares cpu={cpu!r}, memory_gb={memory_gb!r}",
                hint="both must be positive numbers (cores, GiB)",
            )
        memory = int(memory_gb * GIB)
        return cls(memory_bytes=memory, cpus=max(1, math.ceil(cpu)), tmp_bytes=max(MIN_TMP_BYTES, memory // TMP_SHARE))

    @property
    def data_backstop(self) -> int:
        return self.memory_bytes * DATA_BACKSTOP_FACTOR + DATA_BACKSTOP_EXTRA

    def describe_memory(self) -> str:
        return f"{self.memory_bytes / GIB:g} GiB" if self.memory_bytes >= GIB else f"{self.memory_bytes // MIB} MiB"

    def cpu_set(self) -> set[int]:
        """``cpus`` of the cores this process may use (all of them if it asks for more): the least
        busy ones just now, so that clean rooms started one after another on a host spread over its
        cores instead of all sharing the first."""
        return least_busy_cpus(self.cpus, sorted(os.sched_getaffinity(0)))


def busy_jiffies(proc_stat: str) -> dict[int, int]:
    """Each core's time spent busy so far (everything but idle and iowait), from /proc/stat's text."""
    busy: dict[int, int] = {}
    for line in proc_stat.splitlines():
        name, _, counters = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            fields = [int(value) for value in counters.split()]
            busy[int(name[3:])] = sum(fields[:8]) - fields[3] - fields[4]
    return busy


def _read_busy_jiffies() -> dict[int, int]:
    try:
        return busy_jiffies(Path("/proc/stat").read_text())
    except (OSError, ValueError, IndexError):
        return {}


def least_busy_cpus(count: int, available: list[int]) -> set[int]:
    """The ``count`` cores of ``available`` that were busy least over a short sample, lowest first
    on a tie (and when /proc/stat cannot be read)."""
    if count >= len(available):
        return set(available)
    before = _read_busy_jiffies()
    time.sleep(CPU_SAMPLE_SECONDS)
    after = _read_busy_jiffies()
    ranked = sorted(available, key=lambda cpu: (after.get(cpu, 0) - before.get(cpu, 0), cpu))
    return set(ranked[:count])


@dataclass
class SandboxSpec:
    name: str
    command: list[str]
    workdir: Path
    code: list[Path] = field(default_factory=list)  # read-only code dirs; the workdir itself is not shown
    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    allow_outbound: bool = False  # only when every party voted allow_all_outbound
    limits: ResourceLimits | None = None
    listen_fd: int | None = None  # a listening socket the runtime made; inherited, named in CLEANROOM_LISTEN_FD


class ListeningSocket:
    """A unix socket the runtime binds and listens on before the workload starts.

    It lives in a 0700 directory of the runtime's own that is never mounted into a sandbox,
    so the ingress connects to exactly this socket: the workload only receives the listening
    fd, and has no path it could swap for a symlink to another host socket. ``os.getpid()``
    called ``listen()``, which is what the ingress checks with ``SO_PEERCRED`` on every
    connection (see ``core.runtime.ingress``)."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise AccessDeniedError(
                f"socket directory {directory} is not a private directory of the runtime",
                hint="it must be a real 0700 directory owned by the runtime's user",
            )
        self.path = directory / name
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # AF_UNIX paths are limited to 108 bytes: bind through a short /proc/self/fd path
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            self._socket.bind(f"/proc/self/fd/{dir_fd}/{name}")
        finally:
            os.close(dir_fd)
        self._socket.listen(128)
        os.set_inheritable(self._socket.fileno(), False)  # inherited only through pass_fds

    def fileno(self) -> int:
        return self._socket.fileno()

    def close(self) -> None:
        self._socket.close()
        self.path.unlink(missing_ok=True)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _python_dirs() -> list[str]:
    """The interpreter's install prefix and the venv: both must be visible, read-only."""
    dirs = {sys.base_prefix, sys.prefix, sys.exec_prefix}
    return sorted(d for d in dirs if d and not any(d.startswith(s + "/") for s in SYSTEM_DIRS))


def _check(spec: SandboxSpec) -> None:
    if not spec.command:
        raise InvalidInputError(f"application '{spec.name}' has an empty command", hint="fix the deployment spec")
    for mount in spec.mounts:
        if not mount.target.startswith("/") or ".." in Path(mount.target).parts:
            raise InvalidInputError(
                f"mount target {mount.target!r} of '{spec.name}' must be an absolute path",
                hint="use e.g. /mnt/remote/<name>",
            )
        if not mount.source.is_dir():
            raise InvalidInputError(
                f"mount source {mount.source} of '{spec.name}' is not a directory",
                hint="the runtime prepares mounts before launching",
            )


def _environment(spec: SandboxSpec) -> dict[str, str]:
    env = dict(spec.env)
    if spec.listen_fd is not None:
        env[LISTEN_FD_ENV] = str(spec.listen_fd)
    return env


def bwrap_command(spec: SandboxSpec, bwrap: str = "bwrap") -> list[str]:
    """The bubblewrap argv that runs ``spec`` isolated (exposed for review and tests).

    :func:`launch` passes the same options through a memfd (``--args``) instead, so neither the
    environment's values (``env_names`` secrets) nor the mount sources are in a command line
    every local user can read with ``ps``."""
    return [bwrap, *_bwrap_options(spec), "--", *spec.command]


def _bwrap_options(spec: SandboxSpec) -> list[str]:
    _check(spec)
    limits = spec.limits
    tmp_size = ["--size", str(limits.tmp_bytes)] if limits else []
    shm_size = ["--size", str(limits.shm_bytes if limits else SHM_BYTES)]
    argv = [
        "--unshare-all",
        *(["--share-net"] if spec.allow_outbound else []),
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        *shm_size,
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
        *tmp_size,
        "--tmpfs",
        "/tmp",
    ]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        else:
            argv += ["--ro-bind-try", path, path]
    for path in SYSTEM_FILES:
        argv += ["--ro-bind-try", path, path]
    for path in _python_dirs():
        argv += ["--ro-bind", path, path]
    workdir = str(spec.workdir.resolve())
    argv += ["--dir", workdir]
    for code in spec.code:
        argv += ["--ro-bind", str(code.resolve()), str(code.resolve())]
    for mount in spec.mounts:
        argv += ["--bind" if mount.writable else "--ro-bind", str(mount.source.resolve()), mount.target]
    # the sandbox's root is a tmpfs of its own: read-only, so it cannot be used to fill the host's RAM
    argv += ["--remount-ro", "/"]
    env = {
        "PATH": f"{Path(sys.executable).parent}:{SANDBOX_PATH}",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        **_environment(spec),
    }
    for key, value in sorted(env.items()):
        argv += ["--setenv", key, value]
    return [*argv, "--chdir", workdir]


def _host_paths(spec: SandboxSpec, text: str) -> str:
    """Without a sandbox there are no mount targets: point arguments at the host directories."""
    for mount in sorted(spec.mounts, key=lambda m: len(m.target), reverse=True):
        text = text.replace(mount.target, str(mount.source.resolve()))
    return text


def missing_bwrap_error() -> AccessDeniedError:
    return AccessDeniedError(
        "bubblewrap (bwrap) is not installed, so the workload cannot be sandboxed",
        hint="install it (apt-get install bubblewrap / scripts/bootstrap.sh) or, only for a trusted "
        "workload, pass --insecure-no-sandbox",
    )


def _lowered(which: int, value: int) -> tuple[int, int]:
    """``value`` as soft and hard limit, never above the hard limit already in force (raising
    it would fail without privileges)."""
    hard = resource.getrlimit(which)[1]
    bound = value if hard == resource.RLIM_INFINITY else min(value, hard)
    return bound, bound


def _apply_limits(limits: ResourceLimits) -> Callable[[], None]:
    """The child-side half of the bounds, run between fork and exec of bwrap (so the sandbox
    and everything it starts inherit them). It only makes system calls on precomputed values:
    no imports, no locks, which is what keeps a preexec_fn safe in a threaded runtime."""
    data = (limits.data_backstop, limits.data_backstop)
    files = _lowered(resource.RLIMIT_NOFILE, limits.open_files)
    nproc = _lowered(resource.RLIMIT_NPROC, limits.processes)
    cpus = limits.cpu_set()
    setrlimit, setaffinity = resource.setrlimit, os.sched_setaffinity
    r_data, r_files, r_nproc = resource.RLIMIT_DATA, resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC

    def apply() -> None:
        setrlimit(r_data, data)
        setrlimit(r_files, files)
        setrlimit(r_nproc, nproc)
        setaffinity(0, cpus)

    return apply


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (through /proc/<pid>/task/<tid>/children)."""
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        queue.extend(_children(pid))
    return pids


def _children(pid: int) -> list[int]:
    """The direct children of ``pid`` (all its threads' children); none for a process that is gone."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            continue
    return found


def _pid_namespace(pid: int | str) -> int | None:
    """The inode of ``pid``'s pid namespace (None if it is gone or not ours to inspect)."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def _innermost_pid(pid: int) -> int | None:
    """``pid`` as its own pid namespace numbers it (the last field of ``NSpid``)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _signal_if_in(pid: int, namespace: int, signum: int) -> bool:
    """Signal ``pid`` if it is (still) a workload process of the sandbox whose pid namespace is
    ``namespace``, and not its init.

    The check is made through a pidfd opened first: if the pid was reused by another host
    process after the tree walk, that process is in another namespace and is left alone, and a
    process that exits after the check cannot be confused with its pid's next owner."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False  # gone
    try:
        if _pid_namespace(pid) != namespace or _innermost_pid(pid) in (None, 1):
            return False  # not the sandbox's any more, or bwrap's init (pid 1 ignores SIGTERM anyway)
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)


def signal_workload(process: subprocess.Popen[bytes], signum: int) -> int:
    """Deliver ``signum`` to the workload's own processes; returns how many were signalled.

    In bubblewrap the workload is in a pid namespace and a session of its own, so bwrap's
    process group holds only bwrap: a SIGTERM there would kill bwrap, and ``--die-with-parent``
    would SIGKILL the workload with no chance to exit cleanly. The workload's processes are
    found by walking the process tree under bwrap (by host pid) and each one that is in the
    sandbox's pid namespace is signalled through a pidfd; bwrap and the sandbox's init are not
    signalled, so the sandbox ends when the workload's main process exits (bwrap's init then
    exits and the kernel ends what is left in the namespace). Processes the workload put in a
    pid namespace of their own are not signalled: they end with the sandbox.

    Without a sandbox the workload leads its own process group, which is signalled as a whole.
    When bwrap has not started the workload yet there is nothing to stop cleanly: the sandbox's
    init is SIGKILLed then, which ends the namespace with whatever it forks next. bwrap itself is
    never the target while it may be cloning: killed between its clone and the child's
    ``PR_SET_PDEATHSIG``, it would leave an orphaned sandbox running (seen once in CI)."""
    if process.poll() is not None:
        return 0
    if getattr(process, "sandboxed", False):
        deadline = time.monotonic() + SETUP_WAIT_SECONDS
        while process.poll() is None:
            namespace = _sandbox_namespace(process)
            if namespace is not None:
                signalled = sum(_signal_if_in(pid, namespace, signum) for pid in _tree(process.pid)[1:])
                if signalled or _kill_init(process, namespace):
                    return max(signalled, 1)
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if process.poll() is not None:
            return 0
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        return 0
    return 1


def kill_sandbox(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a workload for good: the sandbox's init first (a SIGKILL from the host's namespace
    reaches a namespace's init and ends every process in it, whether or not bwrap's
    ``--die-with-parent`` was set up yet), then bwrap's process group (the workload's own group
    without a sandbox)."""
    if getattr(process, "sandboxed", False) and (namespace := _sandbox_namespace(process)) is not None:
        _kill_init(process, namespace)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _sandbox_namespace(process: subprocess.Popen[bytes]) -> int | None:
    """The pid namespace of bwrap's one child, the sandbox's init (None before bwrap has cloned it)."""
    host = _pid_namespace("self")
    namespaces = {ns for child in _children(process.pid) if (ns := _pid_namespace(child)) not in (None, host)}
    return namespaces.pop() if len(namespaces) == 1 else None


def _kill_init(process: subprocess.Popen[bytes], namespace: int) -> bool:
    """SIGKILL the init of the sandbox whose pid namespace is ``namespace`` (checked through a
    pidfd, as in :func:`_signal_if_in`); whether one was killed."""
    for child in _children(process.pid):
        try:
            pidfd = os.pidfd_open(child)
        except OSError:
            continue
        try:
            if _pid_namespace(child) == namespace and _innermost_pid(child) == 1:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                return True
        except OSError:
            continue
        finally:
            os.close(pidfd)
    return False


def _resident_of(pid: int) -> int:
    """Resident set size of ``pid`` in bytes, from statm: a constant-time read, unlike smaps_rollup,
    which walks every mapping of a multi-gigabyte trainer under its mm lock; 0 for a process gone."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def _proportional_of(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (shared library pages split between sharers, so
    a tree of forked workers is not counted many times over); its RSS where smaps_rollup is absent."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return _resident_of(pid)


def tree_memory(pids: list[int], limit: int) -> int:
    """The tree's memory as the guard judges it: proportional set size, read only once the resident
    total passes ``limit``. PSS never exceeds RSS, so below that the cheap total decides the same."""
    resident = sum(_resident_of(pid) for pid in pids)
    return resident if resident <= limit else sum(_proportional_of(pid) for pid in pids)


class MemoryGuard(threading.Thread):
    """Watches one sandbox's process tree and kills it once its memory passes the limit.

    The runtime, not the workload, measures and decides, so the reason it then reports ("exceeded
    its memory limit of 512 MiB") is the runtime's own word, not something the workload printed."""

    def __init__(self, process: SandboxProcess, name: str, limits: ResourceLimits) -> None:
        super().__init__(name=f"memory-guard-{name}", daemon=True)
        self.process = process
        self.application = name
        self.limits = limits

    def run(self) -> None:
        while self.process.poll() is None:
            used = tree_memory(_tree(self.process.pid), self.limits.memory_bytes)
            if used > self.limits.memory_bytes:
                self.process.limit_exceeded = (
                    f"application '{self.application}' exceeded its memory limit of {self.limits.describe_memory()}"
                )
                kill_sandbox(self.process)
                return
            try:
                self.process.wait(timeout=GUARD_INTERVAL_SECONDS)
            except subprocess.TimeoutExpired:
                pass


class SandboxProcess(subprocess.Popen[bytes]):
    """A launched application: a Popen that also says whether the runtime stopped it for a limit."""

    limit_exceeded: str | None = None
    guard: MemoryGuard | None = None
    sandboxed: bool = False  # in bubblewrap: stop signals go to the workload's processes (signal_workload)


def raise_if_over_limits(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """A workload the runtime killed for its resources is a failed run, named as such."""
    for process in processes.values():
        reason = getattr(process, "limit_exceeded", None)
        if reason:
            raise LimitExceededError(
                reason, hint="raise memory_gb in the application's contract, or make the workload use less"
            )


def launch(
    spec: SandboxSpec, *, insecure_no_sandbox: bool = False, stdout: int | None = subprocess.PIPE
) -> SandboxProcess:
    """Start the application within its bounds; refuse without bubblewrap unless explicitly made insecure."""
    bwrap = bwrap_path()
    options_fd: int | None = None
    if bwrap is not None and not insecure_no_sandbox:
        options = b"".join(option.encode() + b"\0" for option in _bwrap_options(spec))
        options_fd = os.memfd_create("bwrap-options")
        with open(options_fd, "wb", closefd=False) as handle:  # a file object writes it all
            handle.write(options)
        os.lseek(options_fd, 0, os.SEEK_SET)
        argv, env, cwd = [bwrap, "--args", str(options_fd), "--", *spec.command], {}, None
    elif insecure_no_sandbox:
        _check(spec)
        argv = [_host_paths(spec, part) for part in spec.command]
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', SANDBOX_PATH)}",
            "HOME": os.environ.get("HOME", "/tmp"),
            **{k: _host_paths(spec, v) for k, v in _environment(spec).items()},
        }
        cwd = str(spec.workdir)
    else:
        raise missing_bwrap_error()
    inherited = tuple(fd for fd in (spec.listen_fd, options_fd) if fd is not None)
    try:
        process = SandboxProcess(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=inherited,
            preexec_fn=_apply_limits(spec.limits) if spec.limits else None,
        )
    finally:
        if options_fd is not None:
            os.close(options_fd)  # bwrap reads it at start; the sandbox never sees it
    process.sandboxed = options_fd is not None
    if spec.limits is not None:
        process.guard = MemoryGuard(process, spec.name, spec.limits)
        process.guard.start()
    return process
