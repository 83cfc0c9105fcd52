"""Which CLEANROOM_HOME runs the services a workspace was deployed to.

A workspace pins the governance service it was deployed against (endpoint and certificate, see
``core.governance.client.deploy_to_workspace``). The runtime's verbs otherwise read only
``$CLEANROOM_HOME``; an operator who forgot to set it was told to create a governance service
(a second consortium) or that a running clean room was never deployed. This module finds the
home whose governance holds the pinned certificate, so the verbs act on the right services, or
names the home to set when it cannot be found.
"""

from __future__ import annotations

from pathlib import Path

from core import embedded
from core.errors import NotFoundError
from core.governance import launcher as governance_launcher
from core.governance.client import WORKSPACE_KEY
from core.workspace import Workspace

GOVERNANCE_MODULE = "core.governance.service"


def pinned_service_cert(workspace_dir: Path) -> tuple[str, str] | None:
    """(endpoint, certificate PEM) the workspace is pinned to; None if it is no workspace or pins none."""
    try:
        settings = Workspace.open(workspace_dir).settings.get(WORKSPACE_KEY)
    except NotFoundError:
        return None
    if not settings:
        return None
    return str(settings["endpoint"]), str(settings["service_cert_pem"])


def serves(home_dir: Path, service_cert_pem: str) -> bool:
    """Whether the governance service of ``home_dir`` is the one holding ``service_cert_pem``."""
    cert = embedded.governance_state_dir(home_dir) / governance_launcher.IDENTITY_DIR / "service_cert.pem"
    try:
        return cert.read_text().strip() == service_cert_pem.strip()
    except OSError:
        return False


def _running_governance_homes() -> list[Path]:
    """Homes of this user's running governance services (``--state-dir HOME/governance`` in their
    command lines): exact whenever the pinned service is up, wherever its home is."""
    homes = []
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if GOVERNANCE_MODULE in argv and "--state-dir" in argv[:-1]:
            homes.append(Path(argv[argv.index("--state-dir") + 1]).parent)
    return homes


def _neighbours(workspace_dir: Path) -> list[Path]:
    """Where a stopped service's home usually is: ``services/`` beside the workspaces (the layout of
    `cleanroom demo` and the console's scenario), a folder above them, or the default home."""
    root = workspace_dir.expanduser().resolve()
    near = [candidate for parent in list(root.parents)[:3] for candidate in (parent / "services", parent)]
    return [*near, Path.home() / ".cleanroom"]


def services_home(workspace_dir: Path) -> tuple[Path, bool]:
    """The home to use for ``workspace_dir`` and whether it differs from ``$CLEANROOM_HOME``.

    ``$CLEANROOM_HOME`` (default ``~/.cleanroom``) when it serves the workspace, or when the
    workspace pins no governance; else the home that does; else a one-line error naming it."""
    configured = embedded.home()
    pinned = pinned_service_cert(workspace_dir)
    if pinned is None or serves(configured, pinned[1]):
        return configured, False
    endpoint, cert = pinned
    for candidate in [*_running_governance_homes(), *_neighbours(workspace_dir)]:
        if serves(candidate, cert):
            return candidate.resolve(), True
    raise NotFoundError(
        f"workspace {Path(workspace_dir).resolve()} is deployed to the governance service at "
        f"{endpoint}, which {embedded.HOME_ENV}={configured} does not run",
        hint=f"set {embedded.HOME_ENV} to the folder `cleanroom up` used for it (the one whose "
        "governance/identity/service_cert.pem the workspace pins)",
    )
