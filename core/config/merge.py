"""Merging config fragments into the clean-room spec that parties vote on (``config view``).

The merged spec is order-independent: fragments given in any order produce the same canonical
JSON and the same SHA-256, so every party can recompute the hash of what it is voting for.
Conflicts are errors, never silent overrides: two parties declaring the same datasource name,
or both claiming the logging sink, must be resolved by the people, not by argument order.

Merged spec document (``schema_version`` 1; lists sorted by name, parties by persona then id)::

    {
      "schema_version": 1,
      "parties": [{"persona", "member_id", "member_cert"}...],
      "datasources": [DataAsset...], "datasinks": [DataAsset...],   # each with its owner member id
      "applications": [Application...],
      "logging":   {"enabled", "datasink", "owner"},                # owner: member id or null
      "telemetry": {"enabled", "datasink", "owner"},
      "network_policy": {"inbound_allow": [union of routes], "allow_all_outbound": any party}
    }
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field

from core.config.canonical import canonical_json, document_hash
from core.config.fragment import Application, DataAsset, Fragment, NetworkPolicy, SpecModel, load_fragment, parse_model
from core.config.private_training import check_private_training
from core.crypto.identity import load_certificate, member_id_of
from core.errors import ConflictError, InvalidInputError, NotFoundError

Named = TypeVar("Named", DataAsset, Application)


class Party(SpecModel):
    persona: str
    member_id: str
    member_cert: str


class ExportSetting(SpecModel):
    """Merged logging/telemetry: at most one party owns each, and its datasink receives the export."""

    enabled: bool = False
    datasink: str | None = None
    owner: str | None = None


class MergedSpec(SpecModel):
    schema_version: Literal[1] = 1
    parties: list[Party]
    datasources: list[DataAsset] = Field(default_factory=list)
    datasinks: list[DataAsset] = Field(default_factory=list)
    applications: list[Application] = Field(default_factory=list)
    logging: ExportSetting = ExportSetting()
    telemetry: ExportSetting = ExportSetting()
    network_policy: NetworkPolicy = NetworkPolicy()

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def canonical_json(self) -> bytes:
        return canonical_json(self.document())

    @property
    def spec_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON: the identity of this spec in a contract."""
        return document_hash(self.document())

    def asset(self, name: str) -> tuple[str, DataAsset]:
        """("datasource" | "datasink", asset) for a mount source name."""
        for kind, assets in (("datasource", self.datasources), ("datasink", self.datasinks)):
            for asset in assets:
                if asset.name == name:
                    return kind, asset
        raise NotFoundError(
            f"'{name}' is not a datasource or datasink of any party in the spec",
            hint="add it with `cleanroom config add-datasource` in its owner's workspace",
        )

    def unresolved_mounts(self) -> list[str]:
        """Mount sources no party declares, as ``application -> source``.

        A single party's view may legitimately mount another party's datasource; a spec that
        goes to a contract must have none (see :meth:`check_complete`).
        """
        known = {asset.name for asset in self.datasources + self.datasinks}
        return [
            f"{app.name} -> {mount.source}"
            for app in self.applications
            for mount in app.mounts
            if mount.source not in known
        ]

    def for_applications(self, names: Iterable[str]) -> MergedSpec:
        """The spec of one contract: only these applications and the assets they mount.

        Fragments accumulate over a collaboration (a hoster's holds every application it ever
        brought); a contract carries only what its clean room runs, so the clean room never
        receives data it does not use. An export (logging/telemetry) survives only if its
        datasink is mounted."""
        wanted = set(names)
        applications = [app for app in self.applications if app.name in wanted]
        missing = sorted(wanted - {app.name for app in applications})
        if missing:
            raise NotFoundError(
                f"application '{missing[0]}' is in no party's config",
                hint="the hoster adds it with `cleanroom config add-application`",
            )
        mounted = {mount.source for app in applications for mount in app.mounts}
        return self.model_copy(
            update={
                "applications": applications,
                "datasources": [a for a in self.datasources if a.name in mounted],
                "datasinks": [a for a in self.datasinks if a.name in mounted],
                "logging": self.logging if self.logging.datasink in mounted else ExportSetting(),
                "telemetry": self.telemetry if self.telemetry.datasink in mounted else ExportSetting(),
            }
        )

    def check_complete(self) -> None:
        """Raise if the spec cannot be deployed as is (dangling mounts)."""
        dangling = self.unresolved_mounts()
        if dangling:
            raise InvalidInputError(
                f"mount source {dangling[0]} is not declared by any party",
                hint="include the owner's fragment in --configs, or fix the mount",
            )


def _export(kind: str, fragments: list[Fragment]) -> ExportSetting:
    claimed = [(fragment, getattr(fragment, kind)) for fragment in fragments if getattr(fragment, kind).enabled]
    if len(claimed) > 1:
        who = " and ".join(fragment.persona for fragment, _ in claimed)
        raise ConflictError(
            f"{kind} is enabled by both {who}", hint=f"only one party may own the {kind} sink; disable it in the others"
        )
    if not claimed:
        return ExportSetting()
    fragment, setting = claimed[0]
    return ExportSetting(enabled=True, datasink=setting.datasink, owner=fragment.member_id)


def merge_fragments(fragments: Iterable[Fragment]) -> MergedSpec:
    """Join fragments into one spec; duplicate names or members are ConflictErrors naming both parties."""
    fragments = sorted(fragments, key=lambda fragment: (fragment.persona, fragment.member_id))
    if not fragments:
        raise InvalidInputError("no config fragments to merge", hint="pass --configs DIR_OR_FILE ...")
    members: dict[str, Fragment] = {}
    for fragment in fragments:
        if fragment.member_id in members:
            raise ConflictError(
                f"member {fragment.member_id[:12]} ({fragment.persona}) is given twice",
                hint="pass each party's fragment once",
            )
        members[fragment.member_id] = fragment

    owners: dict[str, str] = {}
    for kind in ("datasource", "datasink", "application"):
        for fragment in fragments:
            items = (
                fragment.applications
                if kind == "application"
                else (fragment.datasources if kind == "datasource" else fragment.datasinks)
            )
            for item in items:
                namespace = "application" if kind == "application" else "asset"
                key = f"{namespace}:{item.name}"
                if key in owners:
                    raise ConflictError(
                        f"{kind} name '{item.name}' is declared by both {owners[key]} and {fragment.persona}",
                        hint="names must be unique across parties; rename one of them",
                    )
                owners[key] = fragment.persona

    def by_name(items: Iterable[Named]) -> list[Named]:
        return sorted(items, key=lambda item: item.name)

    return MergedSpec(
        parties=[Party(persona=f.persona, member_id=f.member_id, member_cert=f.member_cert) for f in fragments],
        datasources=by_name(a for f in fragments for a in f.datasources),
        datasinks=by_name(a for f in fragments for a in f.datasinks),
        applications=by_name(a for f in fragments for a in f.applications),
        logging=_export("logging", fragments),
        telemetry=_export("telemetry", fragments),
        network_policy=NetworkPolicy(
            inbound_allow=sorted({route for f in fragments for route in f.network_policy.inbound_allow}),
            allow_all_outbound=any(f.network_policy.allow_all_outbound for f in fragments),
        ),
    )


SPEC_FIELDS = frozenset(MergedSpec.model_fields) - {"parties"}
"""Fields the runtime reads from a contract: a document with any of them is a clean-room spec."""


def parse_contract_spec(document: object, *, source: str = "contract data") -> MergedSpec:
    """Validate a merged spec received from elsewhere (a contract created at governance).

    ``merge_fragments`` builds a spec that is consistent by construction; a document sent over
    the wire is not, so besides the models' own checks (names, routes, mount targets, unknown
    fields) this checks what merging guarantees: every asset and application is owned by a
    listed party, names are unique, logging/telemetry sinks are datasinks of their owner, and
    every mount names a declared datasource or datasink; and that private training is accounted
    as declared (``core.config.private_training``). Errors are one InvalidInputError line naming
    the field.
    """
    spec = parse_model(MergedSpec, document, source=source)

    def refuse(where: str, problem: str) -> None:
        raise InvalidInputError(
            f"{source} is not valid: {where}: {problem}", hint="create the contract from `cleanroom config view` output"
        )

    if not spec.parties:
        refuse("parties", "a contract needs at least one party")
    party_ids = [party.member_id for party in spec.parties]
    if len(set(party_ids)) != len(party_ids):
        refuse("parties", "a member is listed twice")
    for index, party in enumerate(spec.parties):
        try:
            certificate = load_certificate(party.member_cert)
        except InvalidInputError:
            refuse(f"parties.{index}.member_cert", "not a PEM X.509 certificate")
        if member_id_of(certificate) != party.member_id:
            refuse(f"parties.{index}.member_id", "not the SHA-256 of member_cert")
    names: set[str] = set()
    for kind in ("datasources", "datasinks", "applications"):
        if kind == "applications":
            names = set()  # applications have their own namespace
        for index, item in enumerate(getattr(spec, kind)):
            if item.owner not in party_ids:
                refuse(f"{kind}.{index}.owner", f"{item.owner[:16]!r} is not one of the contract's parties")
            if item.name in names:
                refuse(f"{kind}.{index}.name", f"{item.name!r} is declared twice")
            names.add(item.name)
    sinks = {asset.name: asset.owner for asset in spec.datasinks}
    for kind in ("logging", "telemetry"):
        setting: ExportSetting = getattr(spec, kind)
        if setting.enabled and (setting.datasink not in sinks or sinks[setting.datasink] != setting.owner):
            refuse(f"{kind}.datasink", f"{setting.datasink!r} is not a datasink of its owner")
    try:
        spec.check_complete()
    except InvalidInputError as exc:
        refuse("applications.mounts", exc.message)
    check_private_training(spec.datasources, spec.datasinks, spec.applications)
    return spec


def merge_paths(paths: Iterable[Path]) -> MergedSpec:
    """:func:`merge_fragments` over workspace directories or fragment JSON files."""
    return merge_fragments(load_fragment(path) for path in paths)
