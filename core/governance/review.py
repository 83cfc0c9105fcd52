"""What a party votes on, made readable: a summary of the voted document and its diff.

A ballot accepts a JSON document: a contract's merged spec (with every party's member
certificate), a deployment spec or a clean-room policy. Read raw, a voter cannot tell who brings
what, what will run with which mounts, or whether it is what they agreed to. So `contract show`,
`proposal show` and the console's vote modal render the same summary (parties by persona and short
id, assets with owners and stores, applications with commands, mounts, cpu and memory, network
policy, logging and telemetry, and the hashes), and compare the voted document with the one the
voter regenerated themselves (`config view --output json`, `deployment generate`) field by field.

Pure functions over plain documents: the CLI and the console fetch, this module only reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config.canonical import canonical_json, document_hash
from core.errors import CleanroomError, InvalidInputError, NotFoundError
from core.governance.models import Action
from core.keys.measurement import policy_hash, policy_hash_of

SHORT_ID = 12
VALUE_WIDTH = 72  # a changed value is cut here: a certificate or a hash says enough in its head


@dataclass(frozen=True)
class Section:
    """One heading of the summary and its lines (already worded for a reader)."""

    title: str
    lines: tuple[str, ...]


def voted_document(proposal: Mapping[str, Any], contract: Mapping[str, Any] | None) -> dict[str, Any]:
    """The document a ballot on ``proposal`` accepts.

    ``set_contract`` names a contract version, not its content: the content is the contract's
    data, so ``contract`` (from `contract show`) must be given. Deployment specs and policies are
    carried in the proposal's ``data``; any other action is its arguments.
    """
    args = dict(proposal.get("args") or {})
    if proposal.get("action") == Action.SET_CONTRACT:
        return dict((contract or {}).get("data") or {})
    if proposal.get("action") in (Action.SET_DEPLOYMENT_SPEC, Action.SET_CLEAN_ROOM_POLICY):
        data = args.get("data")
        return dict(data) if isinstance(data, dict) else {}
    return args


def read_regenerated(path: Path) -> dict[str, Any]:
    """The document the voter regenerated, from a file; `config view --output json` wraps the
    spec with its hash, so that wrapper is taken off."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(
            f"--diff file {path} does not exist",
            hint="regenerate it: `cleanroom config view --output json > spec.json` "
            "or `cleanroom governance deployment generate`",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(
            f"--diff file {path} is not a readable JSON document ({exc})", hint="pass the JSON file you regenerated"
        ) from None
    if not isinstance(document, dict):
        raise InvalidInputError(f"--diff file {path} is not a JSON object", hint="pass the JSON file you regenerated")
    if {"spec", "specHash"} <= set(document) and isinstance(document["spec"], dict):
        return dict(document["spec"])
    return document


# -- summary -----------------------------------------------------------------------------------
def summarize(document: Mapping[str, Any], names: Mapping[str, str] | None = None) -> list[Section]:
    """The readable summary of a contract spec, deployment spec, clean-room policy or other args.

    ``names`` maps member ids to personas for documents that do not list their parties (a
    deployment spec names owners by member id only).
    """
    if not document:
        return [Section("document", ("(empty)",))]
    known = dict(names or {})
    for party in document.get("parties") or []:
        if isinstance(party, dict) and party.get("member_id"):
            known[str(party["member_id"])] = str(party.get("persona") or "")
    if isinstance(document.get("policy"), dict):
        return _policy_sections(document, known)
    if any(key in document for key in ("parties", "applications", "datasources", "datasinks")):
        return _spec_sections(document, known)
    return [Section("arguments", tuple(f"{key}: {_short_value(value)}" for key, value in sorted(document.items())))]


def render(sections: Iterable[Section]) -> str:
    """Plain text: a heading per section, its lines indented (the CLI prints this as it is)."""
    return "\n".join(f"{section.title}\n" + "\n".join(f"  {line}" for line in section.lines) for section in sections)


def _who(member_id: Any, names: Mapping[str, str]) -> str:
    if not member_id:
        return "nobody"
    short = str(member_id)[:SHORT_ID]
    persona = names.get(str(member_id))
    return f"{persona} ({short})" if persona else short


def _store(store: Any) -> str:
    if not isinstance(store, dict):
        return "–"
    where = (
        store.get("path")
        or store.get("account_url")
        or (f"${store['connection_string_env']}" if store.get("connection_string_env") else "?")
    )
    container = f", container {store['container']}" if store.get("container") else ""
    return f"{store.get('kind', '?')} {where}{container}"


def _spec_sections(document: Mapping[str, Any], names: Mapping[str, str]) -> list[Section]:
    sections = []
    parties = [p for p in document.get("parties") or [] if isinstance(p, dict)]
    if parties:
        sections.append(
            Section(
                "parties",
                tuple(f"{p.get('persona', '?')}  member {str(p.get('member_id', ''))[:SHORT_ID]}" for p in parties),
            )
        )
    assets = [
        (kind, asset)
        for kind in ("datasource", "datasink")
        for asset in document.get(f"{kind}s") or []
        if isinstance(asset, dict)
    ]
    sections.append(
        Section(
            "assets",
            tuple(
                line
                for kind, asset in assets
                for line in (
                    f"{kind} {asset.get('name')}  owner {_who(asset.get('owner'), names)}",
                    f"    store {_store(asset.get('store'))}",
                    *_privacy_lines(asset),
                )
            )
            or ("(none)",),
        )
    )
    kinds = {str(asset.get("name")): kind for kind, asset in assets}
    sections.append(
        Section(
            "applications",
            tuple(
                line
                for app in document.get("applications") or []
                if isinstance(app, dict)
                for line in _application_lines(app, names, kinds)
            )
            or ("(none)",),
        )
    )
    sections.append(Section("network policy", _network_lines(document.get("network_policy"))))
    sections.append(
        Section(
            "logging and telemetry",
            tuple(_export_line(name, document.get(name), names) for name in ("logging", "telemetry")),
        )
    )
    hashes = [f"document sha256 {document_hash(dict(document))}"]
    if document.get("contract_hash"):  # a deployment spec: the contract it came from, what it measures to
        hashes.append(f"contract hash {document['contract_hash']}")
        try:
            hashes.append(f"policy hash {policy_hash(dict(document))} (what its clean room must attest)")
        except CleanroomError as exc:
            hashes.append(f"policy hash: none ({exc.one_line()})")
    sections.append(Section("hashes", tuple(hashes)))
    return sections


def _application_lines(
    app: Mapping[str, Any], names: Mapping[str, str], kinds: Mapping[str, str] | None = None
) -> list[str]:
    """An application's lines; ``kinds`` (asset name -> datasource|datasink) words a spec's mounts,
    which name only their source, as read-only or write-only."""
    runs = f"image {app['image']}" if app.get("image") else f"entrypoint {app.get('entrypoint') or '?'}"
    lines = [
        f"{app.get('name')}  owner {_who(app.get('owner'), names)}  {runs}",
        f"    command {' '.join(str(part) for part in app.get('command') or []) or '–'}",
    ]
    if app.get("cpu") is not None or app.get("memory_gb") is not None:
        lines.append(f"    cpu {app.get('cpu', '?')}  memory {app.get('memory_gb', '?')} GiB")
    for mount in app.get("mounts") or []:
        if not isinstance(mount, dict):
            continue
        source = mount.get("source") or mount.get("name")
        target = mount.get("target") or mount.get("path")
        kind = mount.get("kind") or (kinds or {}).get(str(source))
        read_only = mount.get("read_only", kind == "datasource" if kind else None)
        mode = "" if read_only is None else "  read-only" if read_only else "  write-only"
        lines.append(f"    mount {source} -> {target}{mode}")
    if app.get("ports"):
        lines.append(f"    ports {', '.join(str(port) for port in app['ports'])}")
    if app.get("env"):
        lines.append("    env " + " ".join(f"{key}={value}" for key, value in sorted(app["env"].items())))
    if app.get("env_names"):
        lines.append(f"    env supplied at deployment {', '.join(app['env_names'])}")
    return lines + _private_training_lines(app.get("private_training"))


def _privacy_lines(asset: Mapping[str, Any]) -> list[str]:
    """A datasource's privacy budget and pinned upload: what its owner protects, and which data."""
    lines = []
    budget = asset.get("privacy")
    if isinstance(budget, dict):
        lines.append(
            f"    privacy budget epsilon {budget.get('epsilon_total')} in all, delta {budget.get('delta')},"
            f" person column {budget.get('privacy_unit')}"
        )
    if asset.get("content_hash"):
        lines.append(f"    pinned upload {asset['content_hash']}")
    return lines


def _private_training_lines(training: Any) -> list[str]:
    """What a private training run spends: the charge governance reserves, and the join it runs."""
    if not isinstance(training, dict):
        return []
    join: dict[str, Any] = training["join"] if isinstance(training.get("join"), dict) else {}
    sources = [s for s in join.get("sources") or [] if isinstance(s, dict)]
    return [
        f"    private training epsilon {training.get('epsilon')} per run x {join.get('max_rows_per_key')} rows per"
        f" person, delta {training.get('delta')}, accountant {training.get('accountant', 'prv')}",
        f"    join on {join.get('key')}: "
        + ", ".join(f"{s.get('how')} {s.get('datasource')}/{s.get('file')}" for s in sources)
        + f"; at least {join.get('min_rows')} rows",
    ]


def _network_lines(policy: Any) -> tuple[str, ...]:
    policy = policy if isinstance(policy, dict) else {}
    inbound = policy.get("inbound_allow") or []
    return (
        f"inbound {', '.join(inbound) if inbound else 'none'}",
        "outbound ALL ALLOWED (data can leave the clean room)"
        if policy.get("allow_all_outbound")
        else "outbound denied",
    )


def _export_line(name: str, setting: Any, names: Mapping[str, str]) -> str:
    if isinstance(setting, bool):
        return f"{name} {'enabled' if setting else 'off'}"
    setting = setting if isinstance(setting, dict) else {}
    if not setting.get("enabled"):
        return f"{name} off"
    owner = f", owner {_who(setting['owner'], names)}" if setting.get("owner") else ""
    return f"{name} enabled -> datasink {setting.get('datasink') or '?'}{owner}"


def _policy_sections(document: Mapping[str, Any], names: Mapping[str, str]) -> list[Section]:
    policy = document["policy"]
    try:
        measured = policy_hash_of(dict(document))
        stated = f"policy hash {measured} (recomputed; the key service releases keys only to it)"
    except CleanroomError as exc:
        stated = f"policy hash INVALID: {exc.one_line()}"
    sections = [
        Section(
            "clean-room policy",
            (
                f"contract {policy.get('contract_id', '?')}  attestation {document.get('attestation_type', '?')}",
                stated,
                f"deployment spec sha256 {policy.get('deployment_spec_sha256', '?')}",
            ),
        )
    ]
    sections.append(
        Section(
            "applications",
            tuple(
                line
                for app in policy.get("applications") or []
                if isinstance(app, dict)
                for line in _application_lines(app, names)
            )
            or ("(none)",),
        )
    )
    sections.append(Section("network policy", _network_lines(policy.get("network_policy"))))
    return sections


# -- diff --------------------------------------------------------------------------------------
class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: its path (``applications[trainer].cpu``) and both values."""

    path: str
    voted: Any
    regenerated: Any

    def line(self) -> str:
        if self.voted is MISSING:
            return f"+ {self.path}: {_short_value(self.regenerated)}  (only in your file)"
        if self.regenerated is MISSING:
            return f"- {self.path}: {_short_value(self.voted)}  (only in the voted document)"
        return f"~ {self.path}: voted {_short_value(self.voted)}, yours {_short_value(self.regenerated)}"


@dataclass(frozen=True)
class DocumentDiff:
    """The voted document against the voter's own regeneration, compared on canonical JSON."""

    voted_hash: str
    regenerated_hash: str
    changes: tuple[FieldChange, ...]

    @property
    def identical(self) -> bool:
        return self.voted_hash == self.regenerated_hash

    def lines(self) -> list[str]:
        if self.identical:
            return [f"identical: both documents hash to {self.voted_hash}"]
        head = (
            f"DIFFERENT: voted {self.voted_hash[:SHORT_ID]}…, yours {self.regenerated_hash[:SHORT_ID]}…; "
            f"{len(self.changes)} field(s) differ"
        )
        return [head, *(change.line() for change in self.changes)]


def compare(voted: Mapping[str, Any], regenerated: Mapping[str, Any]) -> DocumentDiff:
    """Field-level diff; identical means equal canonical JSON (so equal hashes), nothing less."""
    changes: list[FieldChange] = []
    _walk("", dict(voted), dict(regenerated), changes)
    return DocumentDiff(document_hash(dict(voted)), document_hash(dict(regenerated)), tuple(changes))


def _walk(path: str, voted: Any, regenerated: Any, changes: list[FieldChange]) -> None:
    if isinstance(voted, dict) and isinstance(regenerated, dict):
        for key in sorted(set(voted) | set(regenerated)):
            _walk(
                f"{path}.{key}" if path else str(key), voted.get(key, MISSING), regenerated.get(key, MISSING), changes
            )
    elif isinstance(voted, list) and isinstance(regenerated, list) and _named(voted) and _named(regenerated):
        # lists of named things (applications, assets, parties) line up by name, not position
        before, after = _by_name(voted), _by_name(regenerated)
        for name in sorted(set(before) | set(after)):
            _walk(f"{path}[{name}]", before.get(name, MISSING), after.get(name, MISSING), changes)
    elif isinstance(voted, list) and isinstance(regenerated, list) and len(voted) == len(regenerated):
        for index, (left, right) in enumerate(zip(voted, regenerated, strict=True)):
            _walk(f"{path}[{index}]", left, right, changes)
    elif voted is MISSING or regenerated is MISSING or canonical_json(voted) != canonical_json(regenerated):
        changes.append(FieldChange(path or "(document)", voted, regenerated))


def _named(items: list[Any]) -> bool:
    keys = [_name_of(item) for item in items]
    return bool(items) and None not in keys and len(set(keys)) == len(keys)


def _name_of(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    for key in ("name", "persona"):
        if isinstance(item.get(key), str):
            return str(item[key])
    return None


def _by_name(items: list[Any]) -> dict[str, Any]:
    return {str(_name_of(item)): item for item in items}


def _short_value(value: Any) -> str:
    if isinstance(value, str) and "-----BEGIN CERTIFICATE-----" in value:
        return f"<certificate, sha256 {document_hash(value)[:SHORT_ID]}…>"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= VALUE_WIDTH else f"{text[: VALUE_WIDTH - 1]}…"
