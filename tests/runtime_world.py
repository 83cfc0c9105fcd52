"""A real three-party world for runtime tests: governance and key service processes on loopback,
provider/consumer/hoster workspaces, and a contract voted through to an accepted deployment."""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import embedded
from core.config.fragment import StoreSpec
from core.config.merge import merge_fragments
from core.config.party import add_application, add_data_asset, init_party, party_fragment, set_network_policy
from core.datasource import upload_datasource
from core.errors import CleanroomError
from core.governance import launcher as governance_launcher
from core.governance.client import GovernanceClient
from core.keys import launcher as key_launcher
from core.keys.client import KeyServiceClient
from core.keys.wrap_deks import wrap_deks
from core.runtime.deployment import deployment_spec, policy_document
from core.runtime.governance_port import HttpGovernance
from core.runtime.local import LocalRuntime, write_status
from core.storage.locator import local_store_spec
from core.workspace import Workspace


@dataclass
class World:
    root: Path
    parties: dict[str, Workspace] = field(default_factory=dict)
    clients: dict[str, GovernanceClient] = field(default_factory=dict)
    opened: list[Any] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def runtime_state(self) -> Path:
        return embedded.runtime_state_dir(self.home)

    @property
    def governance_state(self) -> Path:
        return embedded.governance_state_dir(self.home)

    @property
    def key_state(self) -> Path:
        return embedded.key_service_state_dir(self.home)

    @classmethod
    def create(cls, root: Path) -> World:
        """`cleanroom up` for three fresh parties (services under ``root/home``)."""
        world = cls(root)
        for persona in ("provider", "consumer", "hoster"):
            world.parties[persona] = init_party(root / persona, persona)
        embedded.up(list(world.parties.values()), home_dir=world.home)
        for persona, workspace in world.parties.items():
            workspace = world.parties[persona] = Workspace.open(workspace.root)  # re-read: up deployed it
            client = GovernanceClient.from_workspace(workspace)
            try:
                client.activate_member()
            except CleanroomError:  # genesis members are already active
                pass
            world.clients[persona] = client
        return world

    def close(self) -> None:
        for client in [*self.clients.values(), *self.opened]:
            client.close()
        embedded.down(home_dir=self.home)

    # -- building blocks ----------------------------------------------------------------------
    def keys(self) -> KeyServiceClient:
        client = key_launcher.info(self.key_state).client()
        self.opened.append(client)
        return client

    def governance_port(self) -> HttpGovernance:
        info = governance_launcher.info(self.governance_state)
        port = HttpGovernance(info.endpoint, info.service_cert_pem)
        self.opened.append(port)
        return port

    def runtime(self, **kwargs: Any) -> LocalRuntime:
        return LocalRuntime(self.runtime_state, self.governance_port(), self.keys(), **kwargs)

    def vote_all(self, proposal: dict[str, Any]) -> None:
        for client in self.clients.values():
            state = client.proposal(proposal["proposalId"])["proposalState"]
            if state != "Open":
                break
            client.vote(proposal["proposalId"], "accept")
        assert self.clients["hoster"].proposal(proposal["proposalId"])["proposalState"] == "Accepted"

    def setup_assets(
        self,
        source_files: dict[str, str] | None = None,
        *,
        source_folder: Path | None = None,
        store: StoreSpec | None = None,
    ) -> None:
        """Provider datasource "model" (the given files or folder), consumer datasink "results";
        both in each party's local store folder unless ``store`` names another (e.g. azurite)."""
        provider, consumer = self.parties["provider"], self.parties["consumer"]
        add_data_asset(provider, "datasource", "model", store or local_store_spec(provider.root / "store"))
        folder = source_folder or self.root / "plain-model"
        if source_folder is None:
            folder.mkdir()
            for name, text in (source_files or {}).items():
                (folder / name).write_text(text)
        upload_datasource(provider, "model", folder)
        add_data_asset(consumer, "datasink", "results", store or local_store_spec(consumer.root / "store"))

    def add_app(
        self, command: list[str], *, ports: list[int] | None = None, routes: list[str] | None = None, name: str = "app"
    ) -> None:
        hoster = self.parties["hoster"]
        add_application(
            hoster,
            name=name,
            entrypoint="containers/inference_server",
            command=command,
            mounts=[
                {"source": "model", "target": "/mnt/remote/model"},
                {"source": "results", "target": "/mnt/remote/results"},
            ],
            ports=ports or [],
        )
        if routes:
            set_network_policy(hoster, inbound_allow=routes, allow_all_outbound=False)

    def accept_contract(self, contract_id: str, *, enable_ca: bool = False) -> dict[str, Any]:
        merged = merge_fragments(party_fragment(ws) for ws in self.parties.values()).document()
        hoster = self.clients["hoster"]
        hoster.create_contract(contract_id, merged)
        self.vote_all(hoster.propose_contract(contract_id, hoster.contract(contract_id)["version"]))
        spec = deployment_spec(contract_id, merged)
        self.vote_all(hoster.propose_deployment_spec(contract_id, spec))
        self.vote_all(hoster.propose_clean_room_policy(contract_id, policy_document(spec)))
        if enable_ca:
            self.vote_all(hoster.propose_enable_ca(contract_id))
            hoster.generate_ca_key(contract_id)
        keys = self.keys()
        for persona in ("provider", "consumer"):
            wrap_deks(self.parties[persona], contract_id, governance=self.clients[persona], keys=keys)
        return spec

    def events(self, contract_id: str) -> list[dict[str, Any]]:
        return self.clients["consumer"].events(contract_id)["events"]

    def event_types(self, contract_id: str) -> list[str]:
        return [event["type"] for event in self.events(contract_id)]

    @contextlib.contextmanager
    def serving(self, contract_id: str, payload: Any) -> Iterator[LocalRuntime]:
        """The accepted ``contract_id`` run by the local runtime in a thread until its ingress
        answers ``POST /infer`` with ``{"data": payload}`` (the model has loaded); stopped after."""
        import httpx

        runtime = self.runtime()
        thread = threading.Thread(target=lambda: runtime.run(contract_id))
        thread.start()
        try:
            consumer = self.clients["consumer"]
            deadline = time.monotonic() + 300  # a shared, busy machine loads even a tiny model slowly
            while runtime.ingress_url is None:
                assert time.monotonic() < deadline and thread.is_alive()
                time.sleep(0.05)
            write_status(self.runtime_state, contract_id, {"pid": os.getpid(), "state": "running"})
            verify = ssl.create_default_context(cadata=consumer.ca(contract_id)["caCert"])
            headers = {"authorization": f"Bearer {consumer.issue_token(contract_id)['token']}"}
            while True:
                try:
                    answer = httpx.post(
                        f"{runtime.ingress_url}/infer", json={"data": payload}, verify=verify, headers=headers
                    )
                    if answer.status_code == 200:
                        break
                except httpx.HTTPError:  # the ingress closes the connection while the model still loads
                    pass
                assert time.monotonic() < deadline, "the model did not serve"
                time.sleep(0.2)
            yield runtime
        finally:
            runtime.request_stop("test finished")
            thread.join(timeout=60)
