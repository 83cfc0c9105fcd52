"""The two registry versions a regression contract pins, checked against the mounted bytes.

When the contract compares registry versions, its regression application's voted env names the
model, both versions with the package hash the registry holds for each, and the gate (governance's
``regression_env`` writes the names of ``core.onboarding.workload_env`` that this reads). The workload
hashes each mounted package with the registry's own digest before any model runs and refuses
other bytes, so the aggregate governance writes to the candidate's ``regression`` field is
about exactly the versions the members voted. Without those names the workload compares two
plain ONNX folders, as before, and its result stays a sealed report and a telemetry record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containers.regression.cases import CasesError
from core.errors import CleanroomError
from core.onboarding.package_digest import package_sha256
from core.onboarding.workload_env import (
    REGRESSION_BASELINE_ENV,
    REGRESSION_BASELINE_HASH_ENV,
    REGRESSION_CANDIDATE_ENV,
    REGRESSION_CANDIDATE_HASH_ENV,
    REGRESSION_ENV_NAMES,
    REGRESSION_GATE_ENV,
    REGRESSION_MODEL_ENV,
)


@dataclass(frozen=True)
class PinnedVersions:
    model: str
    candidate_version: str
    candidate_hash: str
    baseline_version: str
    baseline_hash: str
    gate: dict[str, Any]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PinnedVersions | None:
        """None when the contract pins no registry versions; a refusal when it pins some half-way."""
        present = [name for name in REGRESSION_ENV_NAMES if env.get(name)]
        if not present:
            return None
        missing = [name for name in REGRESSION_ENV_NAMES if not env.get(name)]
        if missing:
            raise CasesError(
                f"the regression application sets {', '.join(present)} but not {', '.join(missing)}; "
                "pin both versions and the gate (core.governance.regression_contract.regression_env)"
            )
        try:
            gate = json.loads(env[REGRESSION_GATE_ENV])
        except json.JSONDecodeError as exc:
            raise CasesError(
                f"{REGRESSION_GATE_ENV} is not JSON ({exc}); give the voted gate as one JSON object"
            ) from None
        if not isinstance(gate, dict):
            raise CasesError(f"{REGRESSION_GATE_ENV} is not a JSON object; give the voted gate as one JSON object")
        return cls(
            env[REGRESSION_MODEL_ENV],
            env[REGRESSION_CANDIDATE_ENV],
            env[REGRESSION_CANDIDATE_HASH_ENV],
            env[REGRESSION_BASELINE_ENV],
            env[REGRESSION_BASELINE_HASH_ENV],
            gate,
        )

    def check_mounted(self, baseline_dir: Path, candidate_dir: Path) -> None:
        """Refuse a mounted package whose bytes are not the pinned version's (before any model runs)."""
        for role, folder, version, expected in (
            ("baseline", baseline_dir, self.baseline_version, self.baseline_hash),
            ("candidate", candidate_dir, self.candidate_version, self.candidate_hash),
        ):
            try:
                found = package_sha256(folder)
            except CleanroomError as exc:
                raise CasesError(f"the {role} mount: {exc.one_line()}") from None
            if found != expected:
                raise CasesError(
                    f"the {role} mount holds other bytes than {self.model} {version} "
                    f"(package sha256 {found[:16]}…, not the pinned packageHash {expected[:16]}…); "
                    "mount the version the contract pins"
                )

    def record(self) -> dict[str, Any]:
        """What the telemetry record adds so governance can match it to the contract and the registry."""
        return {
            "model": self.model,
            "candidate_version": self.candidate_version,
            "baseline_version": self.baseline_version,
            "candidate_package_sha256": self.candidate_hash,
            "baseline_package_sha256": self.baseline_hash,
        }


def onnx_dir(folder: Path) -> Path:
    """A model package's ``model/`` (its ONNX classifier), else the folder as given."""
    return folder / "model" if (folder / "model" / "model.onnx").is_file() else folder
