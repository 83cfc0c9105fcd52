"""Traffic operations: the voted blue/green split between a contract's serving applications and its rollback.

A split applies when every member accepts its ``set_traffic_split`` proposal; a rollback is one
member's signed act (kept in the ledger) that sends all traffic to one application at once. The
ingress polls the split every second.
"""

from __future__ import annotations

from typing import Any

from core.engine.session import GovernanceSession


class TrafficOperations(GovernanceSession):
    """What a member does with a contract's traffic split."""

    def propose_traffic_split(self, contract_id: str, split: dict[str, int] | str) -> dict[str, Any]:
        """Open a ``set_traffic_split`` proposal; ``split`` is ``{application: percent}`` or its
        ``NAME=PERCENT,...`` text (checked to sum to 100 before anything is sent)."""
        from core.governance.traffic import parse_split

        shares = parse_split(split) if isinstance(split, str) else split
        return self._governance().propose_traffic_split(contract_id, shares)

    def traffic(self, contract_id: str) -> dict[str, Any]:
        """What the ingress follows: ``{split, version, applications, rolledBackTo, ...}`` and open split proposals."""
        return self._governance().traffic(contract_id)

    def rollback_traffic(self, contract_id: str, application: str) -> dict[str, Any]:
        """Send all the contract's traffic to ``application`` now, on this member's signature alone."""
        return self._governance().rollback_traffic(contract_id, application)
