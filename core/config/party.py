"""A party's own config fragment, kept in its workspace: create it and edit it verb by verb.

Each edit loads ``config.json``, applies one change through the typed model (which re-validates
the whole fragment), and saves atomically, so a failed edit leaves the previous fragment intact.
Declaring a datasource also creates its DEK (wrapped by the party's KEK): the fragment names
the data, the workspace's ``keys/`` holds the only way to read it.
"""

from __future__ import annotations

from pathlib import Path

from core.config.fragment import (
    Application,
    AzureBlobStoreSpec,
    Fragment,
    LocalStoreSpec,
    NetworkPolicy,
    PrivacyBudget,
    SinkSetting,
    load_fragment,
    parse_model,
    save_fragment,
)
from core.crypto.kek import Kek, dek_for
from core.workspace import Workspace

StoreSpecValue = LocalStoreSpec | AzureBlobStoreSpec


def init_party(root: Path, persona: str, *, name: str | None = None, store_dir: Path | None = None) -> Workspace:
    """A new workspace: member identity, KEK (0600) and an empty config fragment."""
    workspace = Workspace.init(root, persona, name=name, store_dir=store_dir)
    Kek.generate().save(workspace.keys_dir)
    save_fragment(workspace.fragment_path, Fragment.new(persona, workspace.identity))
    return workspace


def default_store_spec(workspace: Workspace) -> LocalStoreSpec:
    """The embedded default: the workspace's own store folder (``<workspace>/store`` unless moved)."""
    return LocalStoreSpec(path=str(workspace.store_dir))


def party_fragment(workspace: Workspace) -> Fragment:
    return load_fragment(workspace.fragment_path)


def _save(workspace: Workspace, fragment: Fragment) -> Fragment:
    save_fragment(workspace.fragment_path, fragment)
    return fragment


def add_data_asset(
    workspace: Workspace,
    kind: str,
    name: str,
    store: StoreSpecValue | None = None,
    *,
    privacy: PrivacyBudget | None = None,
) -> Fragment:
    """Declare a datasource or datasink (``kind``) and create its DEK; a datasource may carry a privacy budget."""
    fragment = party_fragment(workspace)
    spec = store or default_store_spec(workspace)
    if kind == "datasource":
        edited = fragment.with_datasource(name, spec, privacy=privacy)
    else:
        edited = fragment.with_datasink(name, spec)
    dek_for(workspace.keys_dir, name, create=True)
    return _save(workspace, edited)


def pin_upload(workspace: Workspace, name: str, content_hash: str) -> Fragment:
    """Record the content hash of a datasource's new upload in the fragment (``content_hash``)."""
    return _save(workspace, party_fragment(workspace).with_content_hash(name, content_hash))


def set_export(workspace: Workspace, kind: str, datasink: str | None) -> tuple[Fragment, bool]:
    """Enable logging or telemetry (``kind``) into ``datasink``, or disable it when ``datasink`` is None.

    Returns the fragment and whether the datasink had to be declared first, so a front end
    can say so.
    """
    fragment = party_fragment(workspace)
    created = False
    if datasink is not None and all(sink.name != datasink for sink in fragment.datasinks):
        fragment = add_data_asset(workspace, "datasink", datasink)
        created = True
    setting = SinkSetting(enabled=datasink is not None, datasink=datasink)
    edited = fragment.with_logging(setting) if kind == "logging" else fragment.with_telemetry(setting)
    return _save(workspace, edited), created


def add_application(workspace: Workspace, **fields: object) -> Fragment:
    """Add an application owned by this party; ``fields`` are :class:`Application` fields."""
    fragment = party_fragment(workspace)
    application = parse_model(
        Application, {**fields, "owner": fragment.member_id}, source=f"application '{fields.get('name')}'"
    )
    return _save(workspace, fragment.with_application(application))


def set_network_policy(workspace: Workspace, *, inbound_allow: list[str], allow_all_outbound: bool) -> Fragment:
    fragment = party_fragment(workspace)
    policy = parse_model(
        NetworkPolicy,
        {"inbound_allow": inbound_allow, "allow_all_outbound": allow_all_outbound},
        source="network policy",
    )
    return _save(workspace, fragment.with_network_policy(policy))
