"""Privacy budget operations: budgets, history, lowering, raising and offline verification.

Governance enforces a lifetime epsilon per dataset (``OWNER/NAME``); a bare ``NAME`` works
wherever it names one dataset. The owner lowers its own budget alone; raising one is a proposal
every member must accept. Verification rebuilds the budgets from a ledger export offline, so a
member need not trust the numbers the service shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.engine.session import GovernanceSession
from core.errors import IntegrityError, NotFoundError, ServiceUnavailableError

if TYPE_CHECKING:
    from core.governance.ledger import SignedHead


def fetch_signed_head(endpoint: str, service_cert_pem: str) -> SignedHead:
    """The newest signed checkpoint of the governance service at ``endpoint``, over TLS pinned to
    ``service_cert_pem``. Not trusted for being fetched: ``privacy.replay_export`` checks its
    signature with the export's service certificate (the pinned one when a workspace pins one)."""
    from core.governance.client import GovernanceClient
    from core.governance.ledger import SignedHead

    try:
        with GovernanceClient(endpoint, service_cert_pem) as client:
            checkpoint = client.receipt(client.ledger_head()["seqno"]).get("checkpoint")
    except ServiceUnavailableError as exc:
        raise ServiceUnavailableError(
            f"cannot fetch the signed head of the governance service at {endpoint} ({exc.message})",
            hint="pass --against FILE (saved with `governance ledger head --file`) or --against none",
        ) from exc
    return SignedHead.from_checkpoint(checkpoint, f"the service at {endpoint}")


class PrivacyBudgetOperations(GovernanceSession):
    """What a member does with the privacy ledger of budgeted datasets."""

    def privacy_datasets(self) -> list[dict[str, Any]]:
        """Every budgeted dataset: ``{dataset, owner, name, privacyUnit, epsilonTotal, delta, spent,
        reserved, left}`` as governance enforces them (members only)."""
        return self._governance().privacy_datasets()

    def privacy_budgets(self) -> list[dict[str, Any]]:
        """`privacy show`: every budgeted dataset with ``ownerName``, the owner's member name beside
        its id, because people recognise names, not hashes."""
        client = self._governance()
        names = {member["memberId"]: member["name"] for member in client.members()}
        return [row | {"ownerName": names.get(row["owner"], row["owner"][:12])} for row in client.privacy_datasets()]

    def privacy_history(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Privacy ledger entries in ledger order, of one dataset (OWNER/NAME or a unique NAME) or all."""
        return self._governance().privacy_history(dataset)

    def privacy_dataset_id(self, dataset: str) -> str:
        """``OWNER/NAME`` of ``dataset``, given as such or as a ``NAME`` exactly one dataset has."""
        if "/" in dataset:
            return dataset
        matches = [row["dataset"] for row in self.privacy_datasets() if row["name"] == dataset]
        if len(matches) != 1:
            raise NotFoundError(
                f"{'no' if not matches else len(matches)} datasets are named {dataset!r}",
                hint="name it as OWNER/NAME (see `cleanroom governance privacy show`)",
            )
        return str(matches[0])

    def lower_privacy_budget(self, dataset: str, epsilon_total: float) -> dict[str, Any]:
        """Lower this member's own dataset's lifetime epsilon at once (a bare NAME is the signer's
        own); governance refuses going below what runs spent and reserved. The dataset's budget now."""
        return self._governance().lower_privacy_budget(dataset, epsilon_total)

    def propose_privacy_budget_raise(self, dataset: str, epsilon_total: float) -> dict[str, Any]:
        """Open a ``set_privacy_budget`` proposal raising the dataset's lifetime epsilon (every member must accept)."""
        return self._governance().propose_privacy_budget(self.privacy_dataset_id(dataset), epsilon_total)

    def verify_privacy(self) -> dict[str, Any]:
        """`privacy verify` on a fresh export: the chain checked against the pinned service
        certificate, every recorded epsilon recomputed offline, the replayed budgets compared
        with the service's. ``{verified, problems, entries, runs}``; a failed check is
        ``verified: False`` with its one line, so a scenario or a view can say what failed."""
        from core.governance import privacy

        pinned = self.workspace.settings.get("governance", {}).get("service_cert_pem")
        try:
            report, replayed = privacy.replay_export(self._ledger_lines(), expected_service_cert_pem=pinned)
        except IntegrityError as exc:
            return {"verified": False, "problems": [exc.one_line()], "entries": 0, "runs": 0}
        problems = privacy.compare(replayed.datasets(), self.privacy_datasets())
        runs = sum(1 for item in replayed.history if item["kind"] == "record")
        return {"verified": not problems, "problems": problems, "entries": report.entries, "runs": runs}
