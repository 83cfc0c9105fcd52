"""Running an application as untrusted code: bubblewrap with no network and minimal mounts.

The sandbox sees only: the system directories Python needs (read-only), the Python runtime and
the project's virtual environment (read-only), the application's code (read-only), its
datasource mounts (read-only), its datasink mounts and its socket directory (writable), and a
private /tmp. It gets fresh namespaces for everything (``--unshare-all``), so its network
namespace has no route out: it cannot reach the internet, the host's loopback services, or
another party. It dies with the runtime (``--die-with-parent``) and holds no capabilities.

Without bubblewrap the runtime refuses, unless the operator passes ``--insecure-no-sandbox``;
then the application runs as a plain process (paths rewritten to the host mounts) and the
runtime says so loudly in its output and in governance events.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import AccessDeniedError, InvalidInputError

# System paths Python and common native wheels need; missing ones are skipped (--ro-bind-try).
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/ssl", "/etc/ca-certificates",
                "/etc/localtime", "/etc/nsswitch.conf", "/etc/alternatives")
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Mount:
    """A host directory shown to the application at ``target``."""

    source: Path
    target: str
    writable: bool = False


@dataclass
class SandboxSpec:
    name: str
    command: list[str]
    workdir: Path
    code: list[Path] = field(default_factory=list)  # read-only code dirs; the workdir itself is not shown
    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    allow_outbound: bool = False  # only when every party voted allow_all_outbound


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
            raise InvalidInputError(f"mount target {mount.target!r} of '{spec.name}' must be an absolute path",
                                    hint="use e.g. /mnt/remote/<name>")
        if not mount.source.is_dir():
            raise InvalidInputError(f"mount source {mount.source} of '{spec.name}' is not a directory",
                                    hint="the runtime prepares mounts before launching")


def bwrap_command(spec: SandboxSpec, bwrap: str = "bwrap") -> list[str]:
    """The bubblewrap argv that runs ``spec`` isolated (exposed for review and tests)."""
    _check(spec)
    argv = [bwrap, "--unshare-all", *(["--share-net"] if spec.allow_outbound else []), "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--clearenv", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
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
    env = {"PATH": f"{Path(sys.executable).parent}:{SANDBOX_PATH}", "HOME": "/tmp", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", **spec.env}
    for key, value in sorted(env.items()):
        argv += ["--setenv", key, value]
    return argv + ["--chdir", workdir, "--"] + spec.command


def _host_paths(spec: SandboxSpec, text: str) -> str:
    """Without a sandbox there are no mount targets: point arguments at the host directories."""
    for mount in sorted(spec.mounts, key=lambda m: len(m.target), reverse=True):
        text = text.replace(mount.target, str(mount.source.resolve()))
    return text


def missing_bwrap_error() -> AccessDeniedError:
    return AccessDeniedError(
        "bubblewrap (bwrap) is not installed, so the workload cannot be sandboxed",
        hint="install it (apt-get install bubblewrap / scripts/bootstrap.sh) or, only for a trusted "
             "workload, pass --insecure-no-sandbox")


def launch(spec: SandboxSpec, *, insecure_no_sandbox: bool = False,
           stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """Start the application; refuse without bubblewrap unless explicitly made insecure."""
    bwrap = bwrap_path()
    if bwrap is not None and not insecure_no_sandbox:
        argv, env, cwd = bwrap_command(spec, bwrap), {}, None
    elif insecure_no_sandbox:
        _check(spec)
        argv = [_host_paths(spec, part) for part in spec.command]
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', SANDBOX_PATH)}",
               "HOME": os.environ.get("HOME", "/tmp"),
               **{k: _host_paths(spec, v) for k, v in spec.env.items()}}
        cwd = str(spec.workdir)
    else:
        raise missing_bwrap_error()
    return subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, start_new_session=True)
