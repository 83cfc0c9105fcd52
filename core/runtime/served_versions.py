"""At start, a clean room mounting a registry model version checks it is still servable, and its bytes.

Governance refuses a contract mounting a version that is not verified, public and past its voted
regression gate (``core.governance.model_registry.check_servable``), but a version may be
unpublished after the contract was accepted, and a provider may upload other bytes into the
datasource the contract mounts. So the runtime asks the registry again before any key is
released, and hashes each decrypted package with the registry's digest before any workload
starts: either refusal ends the run there, with nothing served.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from core.errors import AccessDeniedError, IntegrityError, NotFoundError
from core.governance.serving_contract import serving_targets
from core.onboarding.package_digest import package_sha256


class RegistryReader(Protocol):
    def model(self, name: str) -> dict[str, Any]: ...


def check_served_versions(governance: RegistryReader, spec: dict[str, Any]) -> None:
    """Refuse (before keys) a spec serving a registry version that may no longer be mounted."""
    targets = serving_targets(spec)
    if not targets:
        return
    # the registry's module (and the ledger under it) loads only for a spec that serves a version:
    # every other clean room starts without it (tests/test_runtime_start_imports.py)
    from core.governance.model_registry import check_servable

    for (name, version), (package_hash, _mount) in sorted(targets.items()):
        try:
            versions = governance.model(name).get("versions", {})
        except NotFoundError:
            versions = {}
        check_servable(name, version, versions.get(version), package_hash)


def check_mounted_packages(spec: dict[str, Any], asset_folder: Callable[[str], Path]) -> None:
    """Refuse (before any workload starts) a decrypted package whose bytes are not the pinned version's."""
    for app in spec.get("applications", []):
        for (name, version), (package_hash, mount) in serving_targets({"applications": [app]}).items():
            source = next((m["name"] for m in app.get("mounts", []) if m.get("path") == mount), None)
            if source is None:
                raise AccessDeniedError(
                    f"application '{app.get('name')}' serves model '{name}' version '{version}' "
                    f"but mounts nothing at {mount!r}",
                    hint="mount the version's package datasource at the path CLEANROOM_SERVE_MOUNT names",
                )
            found = package_sha256(asset_folder(source))
            if found != package_hash:
                raise IntegrityError(
                    f"datasource '{source}' holds other bytes than model '{name}' version '{version}' "
                    f"(package sha256 {found[:16]}…, not the registry's {package_hash[:16]}…)",
                    hint="upload the registered package unchanged, or onboard these bytes as a new version",
                )
