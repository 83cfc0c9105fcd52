"""Shared pieces for the privacy-ledger tests: a contract whose two providers' budgeted
datasources are joined by the hoster's private trainer (accepted, with its deployment spec and
clean-room policy), and a clean-room instance that attests with its own workload-key claim."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from opacus.accountants import PRVAccountant, RDPAccountant

from core.config.fragment import Application, Fragment, LocalStoreSpec, Mount, PrivacyBudget, PrivateTraining
from core.config.merge import merge_fragments
from core.runtime.deployment import deployment_spec, policy_document
from tests.governance_support import ISSUER, Attester, Consortium

HOSTER, TEXTS, LABELS = 0, 1, 2  # member order of the consortium: hoster, texts and labels providers
SIGMA, RATE, STEPS, DELTA = 1.1, 0.01, 500, 1e-6


class CleanRoom:
    """One attested clean-room instance of a contract: tokens carry its own workload-key claim."""

    def __init__(self, gov: Consortium, attester: Attester, contract_id: str, policy_hash: str) -> None:
        self.client = gov.client()
        self.attester, self.contract_id, self.policy_hash = attester, contract_id, policy_hash
        self.report_data = uuid.uuid4().hex

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "iat": now,
            "exp": now + 300,
            "contract_id": self.contract_id,
            "policy_hash": self.policy_hash,
            "report_data": self.report_data,
        }
        return jwt.encode(claims, self.attester.key, algorithm="ES384")

    def reserve(self, application: str = "trainer") -> dict[str, Any]:
        return self.client.reserve_privacy(self.contract_id, application, self.token())

    def record(self, run_id: str, **overrides: Any) -> dict[str, Any]:
        record = {
            "noise_multiplier": SIGMA,
            "sample_rate": RATE,
            "steps": STEPS,
            "delta": DELTA,
            "accountant": "prv",
            "epsilon": opacus_epsilon(SIGMA, RATE, STEPS, DELTA),
        } | overrides
        return self.client.record_privacy(self.contract_id, run_id, record, self.token())

    def dek(self, asset: str) -> bytes:
        return self.client.get_secret(self.contract_id, f"dek-{asset}", self.token())


def opacus_epsilon(sigma: float, rate: float, steps: int, delta: float, accountant: str = "prv") -> float:
    meter = PRVAccountant() if accountant == "prv" else RDPAccountant()
    meter.history = [(sigma, rate, steps)]
    return float(meter.get_epsilon(delta))


def private_contract(
    gov: Consortium,
    tmp_path: Path,
    contract_id: str,
    sources: tuple[str, str],
    *,
    epsilon_total: float = 10.0,
    epsilon: float = 3.0,
    max_rows_per_key: int = 1,
) -> dict[str, Any]:
    """A contract: two providers' budgeted datasources joined by the hoster's private trainer."""
    hoster, texts, labels = gov.members
    budget = PrivacyBudget(epsilon_total=epsilon_total, delta=1e-5, privacy_unit="person_id")
    fragments = [
        Fragment.new("texts", texts)
        .with_datasource(sources[0], LocalStoreSpec(path=str(tmp_path / "t")), privacy=budget)
        .with_content_hash(sources[0], "sha256:" + "a" * 64),
        Fragment.new("labels", labels)
        .with_datasource(sources[1], LocalStoreSpec(path=str(tmp_path / "l")), privacy=budget)
        .with_content_hash(sources[1], "sha256:" + "b" * 64),
        Fragment.new("hoster", hoster).with_application(
            Application(
                name="trainer",
                owner=hoster.member_id,
                entrypoint="containers/dp_trainer",
                command=["python", "-m", "containers.dp_trainer"],
                mounts=[Mount(source=name, target=f"/mnt/remote/{name}") for name in sources],
                private_training=PrivateTraining.model_validate(
                    {
                        "epsilon": epsilon,
                        "delta": DELTA,
                        "batch_size": 64,
                        "join": {
                            "key": "person_id",
                            "sources": [
                                {
                                    "datasource": sources[0],
                                    "file": "train.parquet",
                                    "columns": ["person_id", "text"],
                                    "how": "base",
                                },
                                {
                                    "datasource": sources[1],
                                    "file": "train.parquet",
                                    "columns": ["person_id", "label"],
                                    "how": "inner",
                                },
                            ],
                            "min_rows": 100,
                            "max_rows_per_key": max_rows_per_key,
                        },
                    }
                ),
            )
        ),
    ]
    data = merge_fragments(fragments).document()
    gov.accepted_contract(contract_id, data)
    spec = deployment_spec(contract_id, data)
    gov.pass_proposal(gov.clients[HOSTER].propose_deployment_spec(contract_id, spec))
    policy = policy_document(spec)
    gov.pass_proposal(gov.clients[HOSTER].propose_clean_room_policy(contract_id, policy))
    return {"data": data, "policy_hash": policy["policy_hash"]}
