"""The env names a governed onboarding or regression application carries in its voted contract.

Governance writes them (``core.governance.onboarding_contract``, ``regression_contract``) and
the workload reads them (``containers/onboarding``, ``containers/regression``); both import them
from here, so a renamed variable cannot leave one side reading a name the other never writes
(the workload would then refuse every contract as "sets no ..."). Kept in ``core.onboarding``
because the workloads' images already ship it and import nothing else of ``core``'s governance.
"""

from __future__ import annotations

ONBOARD_MODEL_ENV = "CLEANROOM_ONBOARD_MODEL"
ONBOARD_VERSION_ENV = "CLEANROOM_ONBOARD_VERSION"
ONBOARD_PACKAGE_HASH_ENV = "CLEANROOM_ONBOARD_PACKAGE_SHA256"
ONBOARD_WRAPPER_HASH_ENV = "CLEANROOM_ONBOARD_WRAPPER_SHA256"
ONBOARD_ENV_NAMES = (ONBOARD_MODEL_ENV, ONBOARD_VERSION_ENV, ONBOARD_PACKAGE_HASH_ENV, ONBOARD_WRAPPER_HASH_ENV)

REGRESSION_MODEL_ENV = "CLEANROOM_REGRESSION_MODEL"
REGRESSION_CANDIDATE_ENV = "CLEANROOM_REGRESSION_CANDIDATE_VERSION"
REGRESSION_CANDIDATE_HASH_ENV = "CLEANROOM_REGRESSION_CANDIDATE_SHA256"
REGRESSION_BASELINE_ENV = "CLEANROOM_REGRESSION_BASELINE_VERSION"
REGRESSION_BASELINE_HASH_ENV = "CLEANROOM_REGRESSION_BASELINE_SHA256"
REGRESSION_GATE_ENV = "CLEANROOM_REGRESSION_GATE"
REGRESSION_ENV_NAMES = (
    REGRESSION_MODEL_ENV,
    REGRESSION_CANDIDATE_ENV,
    REGRESSION_CANDIDATE_HASH_ENV,
    REGRESSION_BASELINE_ENV,
    REGRESSION_BASELINE_HASH_ENV,
    REGRESSION_GATE_ENV,
)
