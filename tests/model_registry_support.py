"""Shared pieces for the model-registry tests: a contract whose onboarding application names one
model version (accepted, with its deployment spec and clean-room policy), and the attested clean
room of such a contract writing statuses."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from core.config.fragment import Application, Fragment
from core.config.merge import merge_fragments
from core.governance.onboarding_contract import onboarding_env
from core.runtime.deployment import deployment_spec, policy_document
from tests.governance_support import ISSUER, Attester, Consortium

HOSTER, PROVIDER, CONSUMER = 0, 1, 2


def onboarding_contract(
    gov: Consortium, contract_id: str, name: str, version: str, package_hash: str, wrapper_hash: str
) -> str:
    """Accept a contract onboarding ``name`` ``version``; its clean-room policy hash."""
    hoster = gov.members[HOSTER]
    application = Application(
        name="onboarding",
        owner=hoster.member_id,
        entrypoint="containers/onboarding",
        command=["python", "-m", "containers.onboarding", "--package-dir", "/mnt/remote/package"],
        env=onboarding_env(name, version, package_hash, wrapper_hash),
    )
    data = merge_fragments([Fragment.new("hoster", hoster).with_application(application)]).document()
    gov.accepted_contract(contract_id, data)
    spec = deployment_spec(contract_id, data)
    gov.pass_proposal(gov.clients[HOSTER].propose_deployment_spec(contract_id, spec))
    policy = policy_document(spec)
    gov.pass_proposal(gov.clients[HOSTER].propose_clean_room_policy(contract_id, policy))
    return str(policy["policy_hash"])


class OnboardingRoom:
    """The attested clean room of an onboarding contract (tokens carry its workload-key claim)."""

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

    def status(self, name: str, version: str, status: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.client.record_model_status(
            self.contract_id, name, version, status, details if details is not None else {}, self.token()
        )
