"""Consortium operations: members, proposals and ballots, contracts, documents, secrets, the ledger.

These return what the governance service answered (its JSON documents), because that is what
`cleanroom governance ... -o json` prints and what scripts `--query`; the records in
core/engine/persona.py are built on top of them for the console and the scenarios.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.engine.session import GovernanceSession
from core.errors import InvalidInputError, NotFoundError
from core.workspace import Workspace

if TYPE_CHECKING:
    from core.governance.ledger import SignedHead
    from core.keys.wrap_deks import WrappedDeks
    from core.runtime.backend import GovernedContract

SERVICE_SETTINGS_KEY = "governance"  # where `governance client deploy` records the service in workspace.json


def deployed_service(workspace: Workspace) -> dict[str, Any] | None:
    """``{endpoint, service_cert_pem}`` recorded by `governance client deploy`, None if none.

    A function of the workspace alone (no identity is loaded), so offline verbs such as
    `ledger verify` can read the pinned certificate of a workspace they do not sign for."""
    settings = workspace.settings.get(SERVICE_SETTINGS_KEY)
    return dict(settings) if settings else None


def deploy_governance_client(workspace: Workspace, endpoint: str, service_cert_pem: str) -> dict[str, Any] | None:
    """Point ``workspace`` at the service at ``endpoint``, pinning ``service_cert_pem``.

    The service is reached first (a wrong endpoint or certificate is refused before anything is
    recorded); returns this workspace's member entry there, None if it is not a member yet."""
    from core.governance.client import GovernanceClient, deploy_to_workspace

    with GovernanceClient(endpoint, service_cert_pem, workspace.identity) as client:
        client.health()
        me = workspace.identity.member_id
        member = next((m for m in client.members() if m["memberId"] == me), None)
    deploy_to_workspace(workspace, endpoint, service_cert_pem)
    return member


class ConsortiumOperations(GovernanceSession):
    """What a member does to the consortium's shared state, each a signed governance request."""

    # the service this workspace uses -------------------------------------------------------
    def deployed_service(self) -> dict[str, Any] | None:
        """``{endpoint, service_cert_pem}`` recorded by `governance client deploy`, None if none."""
        return deployed_service(self.workspace)

    # members -------------------------------------------------------------------------------
    def list_members(self) -> list[dict[str, Any]]:
        return self._governance().members()

    def read_member(self, member_id: str | None = None) -> dict[str, Any]:
        """One member (default: this workspace's)."""
        return self._governance().member(member_id or self.member_id)

    def propose_member(self, cert_pem: str, name: str = "") -> dict[str, Any]:
        """Open a set_member proposal; once accepted the new member runs `member activate`."""
        return self._governance().propose_member(cert_pem, name)

    def activate_member(self) -> dict[str, Any]:
        return self._governance().activate_member()

    # contracts -----------------------------------------------------------------------------
    def list_contracts(self) -> list[dict[str, Any]]:
        return self._governance().contracts()

    def read_contract(self, contract_id: str) -> dict[str, Any]:
        """The contract as governance holds it: state, version, proposalId, hash, createdBy, data."""
        return self._governance().contract(contract_id)

    def write_contract(self, contract_id: str, document: dict[str, Any], version: str | None = None) -> dict[str, Any]:
        """Create a Draft, or update the Draft at ``version`` (the token guards concurrent edits).

        ``document`` may be `config view -o json` as printed (the spec wrapped with its hash)."""
        if {"spec", "specHash"} <= set(document):
            document = document["spec"]
        client = self._governance()
        return (
            client.update_contract(contract_id, document, version)
            if version
            else client.create_contract(contract_id, document)
        )

    def propose_contract(self, contract_id: str, version: str) -> dict[str, Any]:
        """Open a set_contract proposal for the reviewed ``version``; the proposal (id and state)."""
        return self._governance().propose_contract(contract_id, version)

    def vote_on_contract(self, contract_id: str, proposal_id: str, ballot: str) -> dict[str, Any]:
        """Cast ``ballot`` on the contract's proposal, refusing one that is not its open proposal
        (a voter who reviewed the contract must not accept some other proposal by mistake)."""
        current = self.read_contract(contract_id)
        if current["proposalId"] and current["proposalId"] != proposal_id:
            raise InvalidInputError(
                f"proposal {proposal_id[:16]}… is not the open proposal of contract '{contract_id}'",
                hint=f"its open proposal is {current['proposalId']}",
            )
        return self.cast_ballot(proposal_id, ballot)

    def withdraw_contract_proposal(self, contract_id: str) -> dict[str, Any]:
        """Withdraw the contract's open proposal (it returns to Draft): ``{contractId, proposalId, proposalState}``."""
        proposal_id = self.read_contract(contract_id)["proposalId"]
        if not proposal_id:
            raise NotFoundError(f"contract '{contract_id}' has no open proposal", hint="nothing to withdraw")
        result = self.withdraw_proposal(proposal_id)
        return {"contractId": contract_id, "proposalId": proposal_id, "proposalState": result["proposalState"]}

    def contract_token(self, contract_id: str) -> dict[str, Any]:
        """A bearer token for the contract's ingress, issued to this member (a party the contract names)."""
        return self._governance().issue_token(contract_id)

    def governed_contract(self, contract_id: str) -> GovernedContract:
        """The contract's data and the governance its clean room reports to, to generate its deployment."""
        from core.runtime.backend import GovernedContract

        client = self._governance()
        return GovernedContract(client.contract(contract_id)["data"], client.endpoint, client.service_cert_pem)

    # runtime options and events --------------------------------------------------------------
    def runtime_option(self, contract_id: str, option: str) -> dict[str, Any]:
        return self._governance().runtime_option(contract_id, option)

    def set_runtime_option(self, contract_id: str, option: str, *, enable: bool) -> dict[str, Any]:
        """Propose enabling (or, unilaterally, disable) a runtime option such as telemetry; the
        execution option (the kill switch) answers its state, the others the proposal opened."""
        return self._governance().set_runtime_option(contract_id, option, enable)

    def event_page(self, contract_id: str, from_seqno: int = 1) -> dict[str, Any]:
        """One page of the contract's events as governance returns it (``{events: [...]}``)."""
        return self._governance().events(contract_id, from_seqno)

    def stream_events(self, contract_id: str, from_seqno: int = 1) -> Iterator[dict[str, Any]]:
        """The contract's events from ``from_seqno`` on, as they arrive (until the caller stops)."""
        yield from self._governance().stream_events(contract_id, from_seqno)

    # proposals and ballots ------------------------------------------------------------------
    def list_proposals(self, *, state: str | None = None, contract_id: str | None = None) -> list[dict[str, Any]]:
        return self._governance().proposals(state=state, contract_id=contract_id)

    def proposal_under_review(self, proposal_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The proposal and, for a set_contract, the contract whose data a ballot accepts."""
        from core.governance.models import Action

        client = self._governance()
        proposal = client.proposal(proposal_id)
        contract = client.contract(proposal["contractId"]) if proposal.get("action") == Action.SET_CONTRACT else None
        return proposal, contract

    def cast_ballot(self, proposal_id: str, ballot: str) -> dict[str, Any]:
        """Sign and submit ``ballot`` (accept|reject); the proposal as the service now sees it
        (``idempotent`` when this ballot had already been cast)."""
        return self._governance().vote(proposal_id, ballot)

    def withdraw_proposal(self, proposal_id: str) -> dict[str, Any]:
        return self._governance().withdraw(proposal_id)

    # deployment documents and the contract's CA -----------------------------------------------
    def deployment_spec_state(self, contract_id: str) -> dict[str, Any]:
        """The accepted deployment spec (``data``, None until accepted) and the open proposals."""
        return self._governance().deployment_spec(contract_id)

    def clean_room_policy_state(self, contract_id: str) -> dict[str, Any]:
        """The accepted clean-room policy (``data``, None until accepted) and the open proposals."""
        return self._governance().clean_room_policy(contract_id)

    def propose_deployment_spec(self, contract_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self._governance().propose_deployment_spec(contract_id, spec)

    def propose_clean_room_policy(self, contract_id: str, policy: dict[str, Any]) -> dict[str, Any]:
        return self._governance().propose_clean_room_policy(contract_id, policy)

    def ca_state(self, contract_id: str) -> dict[str, Any]:
        """The CA: enabled, its certificate (caCert) and open enable_ca proposals."""
        return self._governance().ca(contract_id)

    def propose_enable_ca(self, contract_id: str) -> dict[str, Any]:
        return self._governance().propose_enable_ca(contract_id)

    def generate_ca_key(self, contract_id: str) -> dict[str, Any]:
        """Generate the contract's CA key (after enable_ca was accepted); the CA as it now is."""
        client = self._governance()
        client.generate_ca_key(contract_id)
        return client.ca(contract_id)

    # secrets ----------------------------------------------------------------------------------
    def wrap_deks(self, contract_id: str) -> WrappedDeks:
        """`config wrap-deks`: wrap this party's DEKs to its per-contract KEK in the key service."""
        from core import embedded
        from core.keys import launcher as key_launcher
        from core.keys.wrap_deks import wrap_deks

        keys = key_launcher.info(embedded.key_service_state_dir(self.services_home or embedded.home())).client()
        try:
            return wrap_deks(self.workspace, contract_id, governance=self._governance(), keys=keys)
        finally:
            keys.close()

    def wrap_deks_to_vault(self, contract_id: str, vault_url: str, maa_endpoint: str) -> WrappedDeks:
        """`config wrap-deks --kek-vault`: the KEK in Azure Key Vault, released by SKR to the
        accepted clean-room policy; the vault and MAA endpoint are checked before governance is asked."""
        from core.keys.skr import check_kek_vault, maa_authority, wrap_deks_to_vault

        check_kek_vault(vault_url)
        maa_authority(maa_endpoint)
        wrapped: WrappedDeks = wrap_deks_to_vault(
            self.workspace, contract_id, governance=self._governance(), vault_url=vault_url, maa_endpoint=maa_endpoint
        )
        return wrapped

    # the ledger --------------------------------------------------------------------------------
    def export_ledger(self, path: Path) -> int:
        """Write the whole ledger (JSON lines) to ``path``; its size in bytes."""
        return self._governance().export_ledger(path)

    def signed_head(self) -> SignedHead:
        """The service's latest signed checkpoint, checked against the pinned certificate.

        It is the checkpoint of a receipt for the newest entry: the service signs a checkpoint over
        any uncovered tail before it answers, so this head covers every entry written so far."""
        from core.crypto.identity import load_certificate
        from core.governance.ledger import SignedHead

        client = self._governance()
        receipt = client.receipt(client.ledger_head()["seqno"])
        head = SignedHead.from_checkpoint(receipt.get("checkpoint"), f"the service at {client.endpoint}")
        head.verify(load_certificate(client.service_cert_pem).public_key())  # type: ignore[arg-type]
        return head

    def verified_receipt(self, seqno: int) -> dict[str, Any]:
        """A receipt proving entry ``seqno``, checked against the pinned certificate (IntegrityError if not)."""
        from core.governance.ledger import verify_receipt

        client = self._governance()
        receipt = client.receipt(seqno)
        verify_receipt(receipt, service_cert_pem=client.service_cert_pem)
        return receipt
