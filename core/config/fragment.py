"""Config fragments: one party's part of a clean-room spec, as typed (pydantic v2) models.

Each party builds its own fragment in its own workspace (``<workspace>/config.json``) and
nobody edits another's. ``core.config.merge`` joins the fragments into the clean-room spec
that becomes a contract. Field names here are a contract with the runtime (which builds the
deployment spec from the merged spec) and with other parties' tools: keep them stable.

A fragment document (JSON, ``schema_version`` 1)::

    {
      "schema_version": 1,
      "persona": "consumer",                       # the party's role name
      "member_id": "<hex sha256 of member cert>",  # checked against member_cert on load
      "member_cert": "-----BEGIN CERTIFICATE-----...",
      "datasources": [DataAsset...],               # read-only inputs this party owns
      "datasinks":   [DataAsset...],               # write-only outputs sealed to this party
      "applications": [Application...],           # workloads this party brings
      "logging":   {"enabled": false, "datasink": null},
      "telemetry": {"enabled": false, "datasink": null},
      "network_policy": {"inbound_allow": ["POST /infer"], "allow_all_outbound": false}
    }

Unknown fields are rejected, so a typo never silently disappears from a voted spec.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from core.config.join_spec import JoinSpec
from core.config.summary_policy import SummaryPolicy
from core.crypto.identity import MemberIdentity, load_certificate, member_id_of
from core.crypto.secret_file import write_public_file
from core.errors import ConflictError, InvalidInputError, NotFoundError
from core.names import check_name

SCHEMA_VERSION: Literal[1] = 1
FRAGMENT_FILE = "config.json"
_ROUTE = re.compile(r"^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /[A-Za-z0-9._~/{}:-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTENT_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def _valid_name(kind: str, value: str) -> str:
    """check_name inside a validator: pydantic reports ValueErrors with the field's location."""
    try:
        return check_name(kind, value)
    except InvalidInputError as exc:
        raise ValueError(exc.one_line()) from None


class SpecModel(BaseModel):
    """Frozen, strict base: unknown fields are errors, so typos never vanish from a voted spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalStoreSpec(SpecModel):
    """A blob store in a local folder (the embedded default).

    ``path`` is absolute: the merged spec is read by the runtime on the same machine, which
    must find each party's blobs without knowing where its workspace is.
    """

    kind: Literal["local"] = "local"
    path: str
    container: str | None = None  # defaults to the datasource name

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError("local store path must be absolute")
        return value


class AzureBlobStoreSpec(SpecModel):
    """A container in an Azure Storage account (or azurite). Secrets are named, never stored:
    ``connection_string_env`` is the name of an environment variable holding the connection string."""

    kind: Literal["azure_blob"] = "azure_blob"
    account_url: str | None = None
    connection_string_env: str | None = None
    container: str | None = None  # defaults to the datasource name

    @model_validator(mode="after")
    def _one_credential_source(self) -> AzureBlobStoreSpec:
        if (self.account_url is None) == (self.connection_string_env is None):
            raise ValueError("give exactly one of account_url or connection_string_env")
        return self


StoreSpec = Annotated[LocalStoreSpec | AzureBlobStoreSpec, Field(discriminator="kind")]
"""Where a datasource's blobs live. Dispatched on ``kind`` by ``core.storage.locator.open_store``."""


class PrivacyBudget(SpecModel):
    """A datasource's lifetime differential-privacy budget, declared by its owner and voted.

    Governance registers it in its privacy ledger when the contract is accepted and charges every
    private run against it, across runs and contracts. ``privacy_unit`` is the column naming the
    person a row belongs to: the unit the epsilon protects, and the key of every join on it."""

    epsilon_total: float = Field(gt=0)
    delta: float = Field(gt=0, lt=1)
    privacy_unit: str

    @field_validator("privacy_unit")
    @classmethod
    def _column(cls, value: str) -> str:
        if not value or value != value.strip():
            raise ValueError(f"privacy_unit {value!r} must be a column name (the person id)")
        return value


class DataAsset(SpecModel):
    """A datasource or datasink: a named encrypted folder in a blob store, owned by one member.

    The DEK that seals it is in the owner's workspace (``keys/deks/<name>.dek.wrapped``), never here.
    ``content_hash`` pins the uploaded ciphertext (``datasource upload`` writes it), so the
    runtime refuses data swapped after the vote; it is the hash of the ciphertext, never of the
    plaintext, which for low-entropy data would tell a reader whether a guessed dataset is it.
    """

    name: str
    owner: str  # member id of the owning party
    store: StoreSpec
    privacy: PrivacyBudget | None = None  # datasources only
    content_hash: str | None = None  # "sha256:<hex>" of the uploaded blobs

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _valid_name("datasource", value)

    @field_validator("content_hash")
    @classmethod
    def _content_hash(cls, value: str | None) -> str | None:
        if value is not None and not _CONTENT_HASH.match(value):
            raise ValueError(f"content_hash {value!r} is not 'sha256:<64 hex digits>'")
        return value

    @property
    def container(self) -> str:
        return self.store.container or self.name


class Mount(SpecModel):
    """A datasource (read-only) or datasink (write-only) mounted at ``target`` inside the clean room."""

    source: str  # a datasource or datasink name from any party's fragment
    target: str  # absolute POSIX path inside the clean room

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts or str(path) == "/":
            raise ValueError(f"mount target {value!r} must be an absolute path below /, without '..'")
        return str(path)


class LoraSpec(SpecModel):
    """The LoRA adapters trained instead of the whole model (peft): fewer trainable weights, so
    per-sample clipping and noise touch only these."""

    r: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1)


class PrivateTraining(SpecModel):
    """A differentially private training run (DP-SGD with opacus), voted with the contract.

    The privacy parameters come from here, never from a party's private config: every data owner
    sees the epsilon of one run, the join and ``max_rows_per_key`` (governance charges
    ``max_rows_per_key * epsilon``: group privacy over one person's rows). ``batch_size`` is the
    EXPECTED batch of Poisson sampling (``sample_rate = batch_size / rows``); without Poisson
    sampling the accountant's guarantee does not hold, so ``poisson_sampling: false`` is kept as a
    field only to be refused explicitly. ``delta`` must be below ``1 / join.min_rows``: a larger
    delta allows releasing a whole row outright, and it is refused rather than clamped."""

    epsilon: float = Field(gt=0)
    delta: float = Field(gt=0, lt=1)
    accountant: Literal["prv", "rdp"] = "prv"
    max_grad_norm: float = Field(default=1.0, gt=0)
    batch_size: int = Field(gt=0)
    epochs: int = Field(default=1, gt=0)
    # governance recomputes epsilon for at most 100,000 steps (core/governance/privacy.py MAX_STEPS)
    max_steps: int | None = Field(default=None, gt=0, le=100_000)
    learning_rate: float = Field(default=5e-4, gt=0)
    max_length: int = Field(default=64, gt=0, le=512)
    # "mean": classify the attention-masked mean of the token states, as a sentence-transformers
    # backbone was trained; "cls": the [CLS] pooler of BertForSequenceClassification.
    pooling: Literal["mean", "cls"] = "mean"
    lora: LoraSpec = LoraSpec()
    seed: int = Field(default=42, ge=0)
    poisson_sampling: bool = True
    join: JoinSpec

    @model_validator(mode="after")
    def _accounting_holds(self) -> PrivateTraining:
        if not self.poisson_sampling:
            raise ValueError(
                "poisson_sampling false is refused: the accountant's epsilon holds only with Poisson sampling;"
                " remove the field or set it to true"
            )
        if self.delta >= 1 / self.join.min_rows:
            raise ValueError(
                f"delta {self.delta:g} is not below 1/min_rows = {1 / self.join.min_rows:g}: lower delta"
                " (it is never clamped)"
            )
        return self


class Application(SpecModel):
    """A workload this party brings: a container image or an entrypoint, exactly one.

    ``entrypoint`` names a workload the embedded runtime runs as a sandboxed process (e.g. a
    ``containers/<name>`` directory); ``image`` names an OCI image for the Azure backend.
    ``env_names`` lists variables whose values are supplied at deployment (secrets stay out of
    the voted spec); ``env`` carries non-secret values that every party sees and votes on.
    ``cpu`` is in cores, ``memory_gb`` in GiB.
    """

    name: str
    owner: str
    image: str | None = None
    entrypoint: str | None = None
    command: list[str] = Field(default_factory=list)
    mounts: list[Mount] = Field(default_factory=list)
    ports: list[int] = Field(default_factory=list)
    cpu: float = 1.0
    memory_gb: float = 2.0
    env_names: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    private_training: PrivateTraining | None = None
    summary_policy: SummaryPolicy | None = None  # a summariser's voted output caps (core.config.summary_policy)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _valid_name("application", value)

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        for port in value:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not in 1..65535")
        if len(set(value)) != len(value):
            raise ValueError("ports are listed twice")
        return value

    @field_validator("cpu", "memory_gb")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 0 < value <= 1024:
            raise ValueError(f"{value} must be above 0 and at most 1024")
        return value

    @field_validator("env_names")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"environment variable name {name!r} is not valid")
        return value

    @model_validator(mode="after")
    def _checks(self) -> Application:
        if (self.image is None) == (self.entrypoint is None):
            raise ValueError(f"application {self.name!r} needs exactly one of image or entrypoint")
        targets = [mount.target for mount in self.mounts]
        if len(set(targets)) != len(targets):
            raise ValueError(f"application {self.name!r} mounts two sources at the same target")
        for name in self.env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"environment variable name {name!r} is not valid")
        return self


class SinkSetting(SpecModel):
    """Logging or telemetry export: off unless enabled, and then written to one of the party's datasinks."""

    enabled: bool = False
    datasink: str | None = None

    @model_validator(mode="after")
    def _sink_when_enabled(self) -> SinkSetting:
        if self.enabled and not self.datasink:
            raise ValueError("an enabled logging/telemetry setting needs a datasink")
        return self


class NetworkPolicy(SpecModel):
    """Inbound: only the listed routes ("METHOD /path") reach the clean room. Outbound: denied
    unless ``allow_all_outbound`` (a data-exfiltration path every party votes on)."""

    inbound_allow: list[str] = Field(default_factory=list)
    allow_all_outbound: bool = False

    @field_validator("inbound_allow")
    @classmethod
    def _routes(cls, value: list[str]) -> list[str]:
        for route in value:
            if not _ROUTE.match(route):
                raise ValueError(f"route {route!r} is not 'METHOD /path' (e.g. 'POST /infer')")
        return sorted(set(value))


class Fragment(SpecModel):
    """One party's config fragment. Mutators return a new fragment (models are frozen)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    persona: str
    member_id: str
    member_cert: str
    datasources: list[DataAsset] = Field(default_factory=list)
    datasinks: list[DataAsset] = Field(default_factory=list)
    applications: list[Application] = Field(default_factory=list)
    logging: SinkSetting = SinkSetting()
    telemetry: SinkSetting = SinkSetting()
    network_policy: NetworkPolicy = NetworkPolicy()

    @model_validator(mode="after")
    def _consistent(self) -> Fragment:
        try:
            certificate = load_certificate(self.member_cert)
        except InvalidInputError:
            raise ValueError("member_cert is not a PEM X.509 certificate") from None
        if member_id_of(certificate) != self.member_id:
            raise ValueError("member_id is not the SHA-256 of member_cert")
        names = [asset.name for asset in self.datasources + self.datasinks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"datasource/datasink name {duplicates[0]!r} is declared twice")
        apps = [app.name for app in self.applications]
        if len(set(apps)) != len(apps):
            raise ValueError("an application name is declared twice")
        for asset in self.datasources + self.datasinks + self.applications:
            if asset.owner != self.member_id:
                raise ValueError(f"{asset.name!r} is owned by another member; a fragment holds only its party's items")
        for asset in self.datasinks:
            if asset.privacy is not None:
                raise ValueError(f"datasink {asset.name!r} declares a privacy budget: only datasources have one")
        sinks = {asset.name for asset in self.datasinks}
        for kind, setting in (("logging", self.logging), ("telemetry", self.telemetry)):
            if setting.datasink is not None and setting.datasink not in sinks:
                raise ValueError(f"{kind} datasink {setting.datasink!r} is not a datasink of this fragment")
        return self

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def new(cls, persona: str, identity: MemberIdentity) -> Fragment:
        return cls(persona=persona, member_id=identity.member_id, member_cert=identity.cert_pem)

    # -- lookups -----------------------------------------------------------------------------
    def datasource(self, name: str) -> DataAsset:
        return self._asset(self.datasources, "datasource", name, "add-datasource")

    def datasink(self, name: str) -> DataAsset:
        return self._asset(self.datasinks, "datasink", name, "add-datasink")

    @staticmethod
    def _asset(assets: list[DataAsset], kind: str, name: str, verb: str) -> DataAsset:
        for asset in assets:
            if asset.name == name:
                return asset
        known = ", ".join(asset.name for asset in assets) or "none"
        raise NotFoundError(
            f"{kind} '{name}' is not in this workspace's config (known: {known})",
            hint=f"add it with `cleanroom config {verb} --name {name}`",
        )

    # -- edits -------------------------------------------------------------------------------
    def with_datasource(
        self, name: str, store: LocalStoreSpec | AzureBlobStoreSpec, *, privacy: PrivacyBudget | None = None
    ) -> Fragment:
        self._free_name(name)
        asset = DataAsset(name=name, owner=self.member_id, store=store, privacy=privacy)
        return self._replace(datasources=[*self.datasources, asset])

    def with_content_hash(self, name: str, content_hash: str) -> Fragment:
        """Pin what ``datasource upload`` just uploaded; a contract proposed from this fragment
        then names exactly these blobs (a re-upload changes the pin, and needs a new vote)."""
        self.datasource(name)
        pinned = [
            asset.model_copy(update={"content_hash": content_hash}) if asset.name == name else asset
            for asset in self.datasources
        ]
        return self._replace(datasources=pinned)

    def with_datasink(self, name: str, store: LocalStoreSpec | AzureBlobStoreSpec) -> Fragment:
        self._free_name(name)
        asset = DataAsset(name=name, owner=self.member_id, store=store)
        return self._replace(datasinks=[*self.datasinks, asset])

    def with_application(self, application: Application) -> Fragment:
        if any(app.name == application.name for app in self.applications):
            raise ConflictError(
                f"application '{application.name}' is already in this workspace's config", hint="choose another --name"
            )
        return self._replace(applications=[*self.applications, application])

    def with_logging(self, setting: SinkSetting) -> Fragment:
        return self._replace(logging=setting)

    def with_telemetry(self, setting: SinkSetting) -> Fragment:
        return self._replace(telemetry=setting)

    def with_network_policy(self, policy: NetworkPolicy) -> Fragment:
        return self._replace(network_policy=policy)

    def _free_name(self, name: str) -> None:
        check_name("datasource", name)
        if any(asset.name == name for asset in self.datasources + self.datasinks):
            raise ConflictError(
                f"'{name}' is already a datasource or datasink in this workspace's config", hint="choose another --name"
            )

    def _replace(self, **changes: object) -> Fragment:
        """Re-validate the whole fragment after an edit, so an edit can never save an invalid one."""
        return parse_fragment({**self.model_dump(mode="json"), **_dumped(changes)}, source="edited fragment")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def _dumped(changes: dict[str, object]) -> dict[str, object]:
    def dump(value: object) -> object:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        if isinstance(value, list):
            return [dump(item) for item in value]
        return value

    return {key: dump(value) for key, value in changes.items()}


def one_line_validation_error(exc: ValidationError) -> str:
    """The first pydantic error as ``field.path: message`` (one line for the CLI)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "document"
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}"


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], document: object, *, source: str) -> M:
    """Validate ``document`` as ``model``; errors become one InvalidInputError line naming ``source``."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidInputError(
            f"{source} is not valid: {one_line_validation_error(exc)}", hint="fix that value and retry"
        ) from None


def parse_store_spec(document: object, *, source: str) -> LocalStoreSpec | AzureBlobStoreSpec:
    """Validate a store spec given on its own (e.g. ``--store JSON``)."""
    try:
        return TypeAdapter(StoreSpec).validate_python(document)
    except ValidationError as exc:
        raise InvalidInputError(
            f"{source} is not a valid store spec: {one_line_validation_error(exc)}",
            hint='use {"kind": "local", "path": ...} or {"kind": "azure_blob", ...}',
        ) from None


def parse_fragment(document: object, *, source: str) -> Fragment:
    try:
        return Fragment.model_validate(document)
    except ValidationError as exc:
        raise InvalidInputError(
            f"{source} is not a valid config fragment: {one_line_validation_error(exc)}",
            hint="fix the field, or rebuild it with `cleanroom config` verbs",
        ) from None


def load_fragment(path: Path) -> Fragment:
    """Load a fragment from a workspace directory (its ``config.json``) or a fragment JSON file."""
    path = path.expanduser()
    file = path / FRAGMENT_FILE if path.is_dir() else path
    if not file.is_file():
        where = (
            f"workspace {path} has no config fragment" if path.is_dir() else f"config fragment {path} does not exist"
        )
        raise NotFoundError(where, hint="create one with `cleanroom --workspace DIR config init --persona NAME`")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"config fragment {file} is not valid JSON ({exc})",
            hint="restore it or rebuild it with `cleanroom config` verbs",
        ) from None
    return parse_fragment(document, source=f"config fragment {file}")


def save_fragment(path: Path, fragment: Fragment) -> None:
    """Write atomically: a crash mid-write never leaves a half fragment."""
    write_public_file(path, fragment.to_json().encode("utf-8"))
