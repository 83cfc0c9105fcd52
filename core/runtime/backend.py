"""Where a clean room runs: one `DeploymentBackend` interface, a local and an Azure (ACI) implementation.

`cleanroom deployment start|status|logs|stop` build one backend from ``--backend local|aci``
(`deployment_backend`) and `cleanroom governance deployment generate` from the same option
(`generation_backend`: writing files needs neither the local services nor an Azure resource
group); they call only this interface, so a new place to run a clean room is a new class here,
not a new branch in every verb. Backends return data (JSON-able dicts, snake_case); how it is
shown is the front end's business.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.errors import CleanroomError, InvalidInputError, NotFoundError

if TYPE_CHECKING:  # the runtime and the Azure SDK load only when a verb uses them, not with `--help`
    from core.runtime.process import RuntimeEnvironment

BACKEND_NAMES = ("local", "aci")
NOT_DEPLOYED = "not deployed on this machine"
GENERATE_HINT = "write the template with `cleanroom governance deployment generate --backend aci`"


@dataclass(frozen=True)
class StartOptions:
    """How to start a clean room; each backend reads the fields that apply to it (the CLI offers
    them all, as `az` does), so the interface stays one signature."""

    insecure_no_sandbox: bool = False  # local: plain processes instead of bubblewrap
    spec_file: Path | None = None  # local: run this spec instead of the accepted one
    ingress_port: int = 0  # local: loopback port of the TLS ingress
    template_file: Path | None = None  # aci: the ARM template `governance deployment generate` wrote
    location: str | None = None  # aci: Azure region
    cce_policy_file: Path | None = None  # aci: base64 ccePolicy from `az confcom acipolicygen`
    allow_debug_policy: bool = False  # aci: no ccePolicy (not confidential)


@dataclass(frozen=True)
class GenerateOptions:
    """How to write a contract's deployment files; like ``StartOptions``, every field belongs to
    the backends that read it (all to aci today: the local files need nothing more)."""

    runtime_image: str | None = None  # aci: the runtime sidecar image
    maa_endpoint: str | None = None  # aci: the MAA the SKR policy trusts
    cce_policy_file: Path | None = None  # aci: base64 ccePolicy from `az confcom acipolicygen`
    kek_vaults: tuple[str, ...] = ()  # aci: MEMBER=URL of each data owner's Key Vault
    identity_id: str | None = None  # aci: the group's user-assigned managed identity
    identity_client_id: str | None = None


@dataclass(frozen=True)
class GovernedContract:
    """A contract as governance holds it, and the governance a deployed clean room reports to."""

    data: dict[str, Any]
    governance_url: str
    governance_cert_pem: str


@runtime_checkable
class DeploymentBackend(Protocol):
    """generate/start/status/logs/stop of one contract's clean room, wherever it runs."""

    def generate(
        self, contract_id: str, contract: Callable[[], GovernedContract], output_dir: Path, options: GenerateOptions
    ) -> dict[str, Any]:
        """Write the files the parties vote on and the hoster deploys into ``output_dir``; a summary
        naming them. ``options`` are checked before ``contract`` is read, so a mistyped flag
        costs no governance round trip and writes nothing."""
        ...

    def start(self, contract_id: str, options: StartOptions) -> dict[str, Any]:
        """Start the clean room; its status once it runs (or has been provisioned)."""
        ...

    def status(self, contract_id: str) -> dict[str, Any]:
        """Its current status."""
        ...

    def logs(self, contract_id: str, *, follow: bool = False) -> Iterator[dict[str, Any]]:
        """Its log records (``follow``: until it ends, where the backend can tell)."""
        ...

    def stop(self, contract_id: str) -> dict[str, Any]:
        """Stop it; its status afterwards."""
        ...


class LocalBackend:
    """This machine's sandboxed runtime, as a detached process (``core.runtime.process``).

    Built without an environment (``generation_backend``) it writes files only."""

    def __init__(self, environment: RuntimeEnvironment | None, *, poll_seconds: float = 0.5) -> None:
        self._environment = environment
        self._poll_seconds = poll_seconds

    @property
    def environment(self) -> RuntimeEnvironment:
        if self._environment is None:
            raise NotFoundError(
                "this local backend was built to write deployment files, not to run them",
                hint="build it with deployment_backend('local', ...)",
            )
        return self._environment

    def generate(
        self, contract_id: str, contract: Callable[[], GovernedContract], output_dir: Path, options: GenerateOptions
    ) -> dict[str, Any]:
        """The deployment spec and the clean-room policy (with its hash) the runtime attests."""
        from core.runtime.aci_artifacts import refuse_aci_flags
        from core.runtime.deployment import write_deployment

        refuse_aci_flags(options)
        return write_deployment(contract_id, contract().data, output_dir)

    def start(self, contract_id: str, options: StartOptions) -> dict[str, Any]:
        from core.runtime import process

        return process.start_background(
            self.environment,
            contract_id,
            insecure_no_sandbox=options.insecure_no_sandbox,
            spec_file=options.spec_file,
            ingress_port=options.ingress_port,
        )

    def status(self, contract_id: str) -> dict[str, Any]:
        """The status file, or ``NOT_DEPLOYED``: status is asked of any contract by any party."""
        from core.runtime.local import read_status

        state_dir = self.environment.runtime_state_dir
        try:
            return read_status(state_dir, contract_id)
        except CleanroomError:
            return {"contract_id": contract_id, "state": NOT_DEPLOYED}

    def logs(self, contract_id: str, *, follow: bool = False) -> Iterator[dict[str, Any]]:
        from core.runtime import process
        from core.runtime.lifecycle import LIVE_STATES
        from core.runtime.local import read_status

        shown = 0
        while True:
            lines = process.log_lines(self.environment, contract_id)
            yield from lines[shown:]
            shown = len(lines)
            if (
                not follow
                or read_status(self.environment.runtime_state_dir, contract_id).get("state") not in LIVE_STATES
            ):
                return
            time.sleep(self._poll_seconds)

    def stop(self, contract_id: str) -> dict[str, Any]:
        from core.runtime import process

        return process.stop(self.environment, contract_id)


class AciBackend:
    """A confidential container group on Azure Container Instances (``core.runtime.aci``), one per
    contract, named by `container_group_name`."""

    def __init__(self, deployment: Any) -> None:
        # core.runtime.aci.AciDeployment (or one over a test client); None: writes files only
        self._deployment = deployment

    @property
    def deployment(self) -> Any:
        if self._deployment is None:
            raise NotFoundError(
                "this ACI backend was built to write deployment files, not to deploy them",
                hint="build it with deployment_backend('aci', resource_group=...)",
            )
        return self._deployment

    def generate(
        self, contract_id: str, contract: Callable[[], GovernedContract], output_dir: Path, options: GenerateOptions
    ) -> dict[str, Any]:
        """The local files plus the confidential container group's ARM template and, with the
        real ccePolicy, the policy to vote carrying it and the Key Vault SKR policy."""
        from core.runtime.aci_artifacts import check_aci_flags, check_aci_spec, write_aci_artifacts
        from core.runtime.deployment import write_deployment

        check_aci_flags(options)
        governed = contract()
        check_aci_spec(contract_id, governed.data, options)
        summary = write_deployment(contract_id, governed.data, output_dir)
        return write_aci_artifacts(
            summary,
            governance_url=governed.governance_url,
            governance_cert_pem=governed.governance_cert_pem,
            options=options,
        )

    @classmethod
    def in_resource_group(cls, resource_group: str | None, subscription: str | None = None) -> AciBackend:
        from core.runtime.aci import AciDeployment

        if not resource_group:
            raise InvalidInputError("--backend aci needs --resource-group", hint="pass --resource-group RG")
        return cls(AciDeployment(resource_group, subscription_id=subscription))

    def start(self, contract_id: str, options: StartOptions) -> dict[str, Any]:
        from core.runtime.aci import container_group_name, secret_env_names

        if options.template_file is None or options.location is None:
            raise InvalidInputError(
                "--backend aci start needs --template FILE and --location REGION", hint=GENERATE_HINT
            )
        try:
            template = json.loads(options.template_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInputError(
                f"ACI template {options.template_file} cannot be read as JSON ({exc})",
                hint="re-generate it with `cleanroom governance deployment generate --backend aci`",
            ) from None
        cce_policy = options.cce_policy_file.read_text().strip() if options.cce_policy_file else None
        # secure environment values are template parameters, filled from this shell, never written
        secrets = {name: os.environ[name] for name in secret_env_names(template) if name in os.environ}
        status = self.deployment.start(
            template,
            location=options.location,
            cce_policy=cce_policy,
            name=container_group_name(contract_id),
            secrets=secrets,
            allow_debug_policy=options.allow_debug_policy,
        )
        return asdict(status)

    def status(self, contract_id: str) -> dict[str, Any]:
        from core.runtime.aci import container_group_name

        return asdict(self.deployment.status(container_group_name(contract_id)))

    def logs(self, contract_id: str, *, follow: bool = False) -> Iterator[dict[str, Any]]:
        """Each container's log once (ACI keeps no cursor to follow)."""
        from core.runtime.aci import container_group_name

        name = container_group_name(contract_id)
        for container in self.deployment.status(name).containers:
            yield {"container": container["name"], "log": self.deployment.logs(name, container["name"])}

    def stop(self, contract_id: str) -> dict[str, Any]:
        from core.runtime.aci import container_group_name

        self.deployment.stop(container_group_name(contract_id))
        return self.status(contract_id)


def deployment_backend(
    name: str,
    *,
    local_environment: Callable[[], RuntimeEnvironment],
    resource_group: str | None = None,
    subscription: str | None = None,
) -> DeploymentBackend:
    """The backend ``--backend NAME`` chose. ``local_environment`` is only called for ``local``
    (finding the services' home may print a note or fail, which an Azure deployment must not)."""
    if name == "local":
        return LocalBackend(local_environment())
    if name == "aci":
        return AciBackend.in_resource_group(resource_group, subscription)
    raise InvalidInputError(f"no deployment backend '{name}'", hint=f"use one of: {', '.join(BACKEND_NAMES)}")


def generation_backend(name: str) -> DeploymentBackend:
    """The backend ``--backend NAME`` chose, for writing a contract's deployment files only
    (`governance deployment generate`): neither the local services nor an Azure resource group
    is looked for, since writing the files needs neither."""
    if name == "local":
        return LocalBackend(None)
    if name == "aci":
        return AciBackend(None)
    raise InvalidInputError(f"no deployment backend '{name}'", hint=f"use one of: {', '.join(BACKEND_NAMES)}")
