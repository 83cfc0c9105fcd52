"""The names of a deployment's life: the events the runtime records and the states it reports.

Values are what the runtime writes into governance events and its ``status.json``, so they
never change; members compare equal to the plain strings read back from JSON.
"""

from __future__ import annotations

from enum import StrEnum


class LifecycleEvent(StrEnum):
    """What the runtime (local or the ACI sidecar) records about one deployment, in order."""

    DEPLOYING = "deploying"
    ATTESTED = "attested"
    KEYS_RELEASED = "keys_released"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    SEALED = "sealed"
    FAILED = "failed"


# membership tests on the plain ``type`` strings of events read back from governance
LIFECYCLE_EVENTS = frozenset(LifecycleEvent)


class DeploymentState(StrEnum):
    """The runtime process's ``status.json`` state: starting -> running -> exited | failed."""

    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"
    FAILED = "failed"
    LOST = "lost"  # read back as live, but its runtime process is gone (killed with the machine)


# the states in which a runtime process should be alive (a dead one left a stale status)
LIVE_STATES = frozenset({DeploymentState.STARTING, DeploymentState.RUNNING})
FINAL_STATES = frozenset({DeploymentState.EXITED, DeploymentState.FAILED})


class ApplicationState(StrEnum):
    """One application's state, folded from the lifecycle events (the console's deployments)."""

    DEPLOYING = "deploying"
    ATTESTED = "attested"
    KEYS_RELEASED = "keys_released"
    RUNNING = "running"
    STOPPED = "stopped"  # exited because a member stopped it (kill switch or `deployment stop`)
    EXITED = "exited"
    FAILED = "failed"
