"""Governance: contracts, proposals, signed ballots and a verifiable ledger, with CCF semantics.

``client.GovernanceClient`` is the entry point for callers; ``service`` is the HTTP service,
``launcher`` starts and stops it as a loopback process, ``ledger`` verifies exports offline.
"""
