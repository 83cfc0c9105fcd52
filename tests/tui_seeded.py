"""A seeded persona for snapshot tests: fixed member ids, proposals and times.

Snapshots must be byte-stable, and real member identities and proposal ids are random by
design (fresh P-384 keys, digests of signed requests). So pixel tests render this fixed
scenario through the real widgets, while behaviour tests (test_tui_governance.py) drive a
real governance service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

from core.engine import (
    ApplicationStatus,
    CleanroomEvent,
    Contract,
    DataAssetStatus,
    EndpointHealth,
    LedgerEntry,
    LedgerVerification,
    Member,
    PersonaEngine,
    Proposal,
)
from core.engine.usage import UsageLog
from core.workspace import Workspace

NOW = 1_790_000_000.0
MEMBERS = [Member("a1" * 32, "hoster"), Member("b2" * 32, "provider"), Member("c3" * 32, "consumer")]
ENDPOINT = "https://127.0.0.1:8443"
CONTRACT_V1 = {
    "datasources": [{"name": "model", "owner": "provider"}],
    "applications": [{"name": "inference-server", "command": ["python", "-m", "server"]}],
    "telemetry": False,
}
CONTRACT_V2 = {
    "datasources": [{"name": "model", "owner": "provider"}, {"name": "training-data", "owner": "consumer"}],
    "applications": [{"name": "trainer", "command": ["python", "-m", "trainer"]}],
    "telemetry": True,
}

# what a ballot on the open set_contract accepts: the contract's merged spec (tui vote modal)
FINETUNE_SPEC = {
    "schema_version": 1,
    "parties": [
        {"persona": m.name, "member_id": m.member_id, "member_cert": "-----BEGIN CERTIFICATE-----\n…"} for m in MEMBERS
    ],
    "datasources": [
        {
            "name": "model",
            "owner": MEMBERS[1].member_id,
            "store": {"kind": "local", "path": "/srv/cleanroom/provider/store", "container": None},
        },
        {
            "name": "training-data",
            "owner": MEMBERS[2].member_id,
            "store": {"kind": "local", "path": "/srv/cleanroom/consumer/store", "container": None},
        },
    ],
    "datasinks": [
        {
            "name": "trained-model",
            "owner": MEMBERS[1].member_id,
            "store": {"kind": "local", "path": "/srv/cleanroom/provider/store", "container": None},
        }
    ],
    "applications": [
        {
            "name": "trainer",
            "owner": MEMBERS[0].member_id,
            "image": None,
            "entrypoint": "containers/trainer",
            "command": ["python", "-m", "trainer"],
            "mounts": [
                {"source": "model", "target": "/mnt/remote/model"},
                {"source": "training-data", "target": "/mnt/remote/data"},
                {"source": "trained-model", "target": "/mnt/remote/output"},
            ],
            "ports": [],
            "cpu": 4.0,
            "memory_gb": 8.0,
            "env_names": [],
            "env": {},
        }
    ],
    "logging": {"enabled": False, "datasink": None, "owner": None},
    "telemetry": {"enabled": True, "datasink": "trained-model", "owner": MEMBERS[1].member_id},
    "network_policy": {"inbound_allow": [], "allow_all_outbound": False},
}


def seeded_proposals() -> list[Proposal]:
    hoster, provider, consumer = (m.member_id for m in MEMBERS)
    return [
        Proposal(
            "5e1f0a9c33d2",
            "set_contract",
            "inference-1",
            hoster,
            "Accepted",
            NOW - 7200,
            {hoster: "accept", provider: "accept", consumer: "accept"},
            CONTRACT_V1,
            None,
        ),
        Proposal(
            "7b44c0de91aa",
            "set_deployment_spec",
            "inference-1",
            hoster,
            "Accepted",
            NOW - 6900,
            {hoster: "accept", provider: "accept", consumer: "accept"},
            {"policy_hash": "9f2c…"},
            None,
        ),
        Proposal(
            "0d9e2f7711c4",
            "set_contract",
            "finetune-1",
            hoster,
            "Withdrawn",
            NOW - 1800,
            {provider: "accept"},
            CONTRACT_V1,
            None,
        ),
        Proposal(
            "c0ffee5b2a19",
            "set_contract",
            "finetune-1",
            hoster,
            "Open",
            NOW - 300,
            {hoster: "accept", provider: "accept"},
            CONTRACT_V2,
            CONTRACT_V1,
        ),
        Proposal(
            "e7a1b3d5f902",
            "enable_telemetry",
            "finetune-1",
            provider,
            "Open",
            NOW - 240,
            {provider: "accept"},
            {"contract_id": "finetune-1"},
            None,
        ),
    ]


class SeededPersona(PersonaEngine):
    """The real facade's interface with fixed answers; nothing here talks to a service."""

    def __init__(self, root: Path, index: int) -> None:
        member = MEMBERS[index]
        workspace = Workspace(
            root=root / member.name, settings={"persona": member.name, "governance_endpoint": ENDPOINT}
        )
        self.workspace = workspace
        self.member_id = member.member_id
        self._client = None

    def health(self) -> EndpointHealth:
        return EndpointHealth(ENDPOINT, True, "ok")

    def members(self) -> list[Member]:
        return MEMBERS

    def proposals(self) -> list[Proposal]:
        return seeded_proposals()

    def voted_document(self, proposal_id: str) -> dict:
        proposal = next(p for p in seeded_proposals() if p.proposal_id == proposal_id)
        return FINETUNE_SPEC if proposal.action == "set_contract" else proposal.content

    def contracts(self) -> list[Contract]:
        return [
            Contract("inference-1", "Accepted", "3f9a", "5d41402abc4b2a76b9719d911017c592", True),
            Contract("finetune-1", "Proposed", "8c21", None, True),
        ]

    def contract(self, contract_id: str) -> Contract:
        return next(c for c in self.contracts() if c.contract_id == contract_id)

    def ledger(self) -> list[LedgerEntry]:
        actions = ["member.genesis", "contract.create", "proposal.create", "ballot", "ballot", "ballot"]
        return [LedgerEntry(i + 1, NOW - 7300 + 60 * i, MEMBERS[i % 3].member_id, a) for i, a in enumerate(actions)]

    def verify_ledger(self) -> LedgerVerification:
        return LedgerVerification(True, 6, "1 signed checkpoint")

    def data_assets(self) -> list[DataAssetStatus]:
        return {
            "hoster": [],
            "provider": [
                DataAssetStatus("datasource", "model", "store/provider", "/mnt/remote/model", True, 7, 91_234_567),
                DataAssetStatus("datasink", "trained-model", "store/provider", "/mnt/remote/output"),
            ],
            "consumer": [
                DataAssetStatus("datasource", "training-data", "store/consumer", "/mnt/remote/data", True, 2, 1_456_789)
            ],
        }[self.persona]

    def deployments(self) -> list[ApplicationStatus]:
        return [
            ApplicationStatus("inference-1", "inference-server", "running", NOW - 3600, None),
            ApplicationStatus("finetune-0", "trainer", "exited", NOW - 9000, 0),
        ]

    def follow_events(self, should_stop: Callable[[], bool], poll_seconds: float = 1.0) -> Iterator[CleanroomEvent]:
        return iter(())

    def privacy_datasets(self) -> list[dict]:
        return PRIVACY_DATASETS

    def models(self) -> list[dict]:
        return MODELS

    def read_usage(self, log: UsageLog) -> UsageLog:
        for seqno, record in enumerate(USAGE_MINUTES, start=10):
            log.add("inference-1", seqno, record)
        return log


# what the inference-1 ingress reported for three minutes: an app, a member and refused strangers
USAGE_MINUTES = [
    {
        "minute": int(NOW) - 60 * offset - 20,
        "seconds": 60.0,
        "callers": {
            "app:scorer": {"requests": requests, "rows": 3 * requests, "refusals": {"429": throttled}},
            MEMBERS[2].member_id: {"requests": 2, "rows": 2, "refusals": {}},
            "(unauthenticated)": {"requests": 0, "rows": 0, "refusals": {"401": 1}},
        },
    }
    for offset, requests, throttled in ((4, 40, 0), (2, 120, 3), (0, 90, 1))
]


# two budgets: one with a run reserved, one nearly spent (the privacy view's gauges)
PRIVACY_DATASETS = [
    {
        "dataset": f"{MEMBERS[1].member_id}/model",
        "owner": MEMBERS[1].member_id,
        "name": "model",
        "privacyUnit": "person_id",
        "epsilonTotal": 10.0,
        "delta": 1e-5,
        "spent": 2.9,
        "reserved": 3.0,
        "left": 4.1,
    },
    {
        "dataset": f"{MEMBERS[2].member_id}/training-data",
        "owner": MEMBERS[2].member_id,
        "name": "training-data",
        "privacyUnit": "person_id",
        "epsilonTotal": 8.0,
        "delta": 1e-5,
        "spent": 5.8,
        "reserved": 0.0,
        "left": 2.2,
    },
]


def training_events() -> list[CleanroomEvent]:
    """A deterministic fine-tuning run: 60 of 200 steps, one epoch evaluated."""
    events = []
    for step in range(1, 61):
        loss = 0.70 * (0.985**step) + 0.02 * ((step * 7) % 5) / 5
        events.append(
            CleanroomEvent(
                "finetune-1",
                step,
                NOW + 1.5 * step,
                "progress",
                {
                    "event": "step",
                    "step": step,
                    "epoch": step / 100,
                    "loss": round(loss, 4),
                    "learning_rate": 5e-5 * (1 - step / 200),
                    "examples_per_s": 42.7,
                    "total_steps": 200,
                },
                category="telemetry",
            )
        )
        if step == 50:
            events.append(
                CleanroomEvent(
                    "finetune-1",
                    1000,
                    NOW + 76,
                    "progress",
                    {"event": "eval", "epoch": 1, "val_accuracy": 0.8115},
                    category="telemetry",
                )
            )
    return events


class EvaluatingPersona(SeededPersona):
    """Scores a fixed 200-row run in batches of 50, the way the evaluation client reports it."""

    accuracy_by_contract: ClassVar[dict[str, float]] = {"inference-1": 0.5, "inference-2": 0.85}

    def run_evaluation(
        self,
        contract_id: str,
        on_progress: Callable[[int, int, int], None],
        *,
        dataset: str | Path = "rotten_tomatoes",
        split: str = "test",
    ) -> dict:
        accuracy = self.accuracy_by_contract[contract_id]
        for done in range(50, 201, 50):
            on_progress(done, round(done * accuracy), 200)
        return {"total": 200, "correct": round(200 * accuracy), "accuracy": accuracy}


def _version(status: str, history: list[tuple[str, dict]], *, published: bool = False) -> dict:
    steps = [
        {"status": name, "details": details, "at": NOW - 600 + i, "writer": "attested:onboard-minilm", "seqno": 40 + i}
        for i, (name, details) in enumerate(history)
    ]
    steps[0]["writer"] = MEMBERS[1].member_id
    return {
        "status": status,
        "details": history[-1][1],
        "history": steps,
        "packageHash": "ab" * 32,
        "wrapperHash": "cd" * 32,
        "published": published,
        "loadtest": None,
        "regression": None,
    }


# the models view: one verified version, one the scan found vulnerable
MODELS = [
    {
        "name": "minilm",
        "owner": MEMBERS[1].member_id,
        "description": "sentiment classifier",
        "versions": {
            "1": _version(
                "verified",
                [
                    ("created", {}),
                    ("downloaded", {"packageHash": "ab" * 32}),
                    ("scanning", {}),
                    ("environmentCreated", {"python": "3.11"}),
                    ("deployed", {"wrapperClass": "TextClassifier"}),
                    ("verified", {"sampleValid": True, "latencyMs": 12.5}),
                ],
            ),
            "2": _version(
                "vulnerable",
                [
                    ("created", {}),
                    ("downloaded", {}),
                    ("scanning", {}),
                    (
                        "vulnerable",
                        {"findings": ["model/extra.pkl: raw pickle stream (protocol 4)"], "reasons": ["pickle"]},
                    ),
                ],
            ),
        },
    }
]
