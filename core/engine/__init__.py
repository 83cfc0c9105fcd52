"""The engine: one persona workspace and the operations its operator can perform.

This is the one operator layer. The CLI verbs, the console and the scenarios all act through a
`PersonaEngine`; only this package (and the clean room's own runtime) talks to the governance
service. The engine is split by what the operator acts on, one mixin module each, so a new family
of verbs is a new module here rather than a longer class.
"""

from core.engine.consortium import deploy_governance_client, deployed_service
from core.engine.persona import (
    SHORT_ID,
    ApplicationStatus,
    CleanroomEvent,
    Contract,
    DataAssetStatus,
    DeploymentStatus,
    EndpointHealth,
    EvaluationReport,
    LedgerEntry,
    LedgerVerification,
    Member,
    PersonaEngine,
    Proposal,
    application_statuses,
    deployment_status,
    open_personas,
    runtime_environment,
)

__all__ = [
    "SHORT_ID",
    "ApplicationStatus",
    "CleanroomEvent",
    "Contract",
    "DataAssetStatus",
    "DeploymentStatus",
    "EndpointHealth",
    "EvaluationReport",
    "LedgerEntry",
    "LedgerVerification",
    "Member",
    "PersonaEngine",
    "Proposal",
    "application_statuses",
    "deploy_governance_client",
    "deployed_service",
    "deployment_status",
    "open_personas",
    "runtime_environment",
]
