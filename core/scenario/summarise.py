"""The summarise scenario as data: one party's documents summarised for another, who sees only summaries.

Two data parties and a hoster:

- **owner** (party II, the documents owner) encrypts and uploads its documents (``.txt`` files
  and a parquet file) to a datasource. Nobody else ever holds their DEK.
- **reader** (party I) owns the datasink the summaries are sealed to, and receives nothing else.
- **hoster** brings the summariser (``containers/summariser``, extractive: MiniLM sentence
  embeddings, centroid/MMR selection, pySBD sentences) with its summary policy: at most
  ``max_sentences`` sentences, at most ``max_ratio`` of each document's characters, documents of
  at most ``max_document_bytes``. The policy is part of the application, so it is in the
  contract every party votes on and in the measured clean-room policy: the owner's accept is its
  consent to exactly these caps, and a clean room run with looser ones gets no key.

1. The owner writes and uploads its documents; the reader declares its datasink.
2. The hoster adds the summariser and its caps; every party votes the contract and deployment.
3. The clean room summarises every document in batch mode and seals the summaries to the reader.
4. The reader downloads them (`summarise show`), re-checks every summary against the voted caps,
   and the scenario checks that no document reached the reader's sink: the over-size archive is
   refused by id, and no document's text is in the sink.

Quick (CI): six documents; full: the 50 of the evaluation set. Both add the over-size archive.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from core.crypto.secret_file import write_public_file
from core.scenario import summarise_operations
from core.scenario.operations import perform_each
from core.scenario.steps import (
    Invocation,
    Phase,
    Reporter,
    ScenarioDefinition,
    Step,
    cleanroom,
    consortium_setup,
    consortium_step_keys,
    python_module,
)
from core.scenario.three_personas import _contract_steps

if TYPE_CHECKING:
    from core.scenario.run import Scenario

NAME = "summarise"
PERSONAS = ("hoster", "owner", "reader")
PHASES = (
    Phase("setup", "Setup: a documents owner, a reader of summaries and a hoster; one consortium"),
    Phase("data", "1. The owner uploads its documents encrypted; the reader declares its datasink"),
    Phase("contract", "2. The summariser and its voted caps: every party votes"),
    Phase("summarise", "3. Summaries in the clean room, sealed to the reader"),
    Phase("proofs", "4. The reader reads its summaries: within the caps, and no document"),
)

CONTRACT = "summarisation"
APPLICATION = "summariser"
DOCUMENTS = "documents"
SUMMARIES = "summaries"
DOCUMENTS_FOLDER = "W/owner/documents"
SUMMARY_POLICY_FILE = "W/hoster/summary-policy.json"
RECEIVED_FOLDER = "W/reader/summaries"
MOUNT_ROOT = "/mnt/remote"
# The caps the owner consents to: three sentences, at most 40 % of a document's characters,
# documents of at most 16 KiB (each evaluation document is under 1 KiB; the archive is ~34 KiB).
SUMMARY_POLICY: dict[str, Any] = {"max_sentences": 3, "max_ratio": 0.4, "max_document_bytes": 16 * 1024}


def _add_summariser(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`write FILE` (the caps), then `config add-application --summary-policy FILE`: the caps
    travel in the application, hence in the contract and the measured policy, not in a side file."""
    (write,) = [i for i in step.invocations if i.program == "write"]
    (narrated,) = write.args
    path = scenario.path(narrated)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_public_file(path, (json.dumps(SUMMARY_POLICY, indent=2) + "\n").encode())
    scenario.state.results["summaryPolicy"] = dict(SUMMARY_POLICY)
    add = step.invocation("config", "add-application")
    return f"{narrated}: the caps; " + perform_each(scenario, replace(step, invocations=(add,)), reporter)


# -- steps ---------------------------------------------------------------------------------------
def _data_steps() -> list[Step]:
    return [
        Step(
            "upload-documents",
            "data",
            "owner",
            "write its documents (.txt files and a parquet file), encrypt and upload them",
            (
                python_module("core.scenario.summary_documents", "--output-dir", DOCUMENTS_FOLDER),
                cleanroom("owner", "config", "add-datasource", "--name", DOCUMENTS),
                cleanroom("owner", "datasource", "upload", "--name", DOCUMENTS, "--dataset-folder", DOCUMENTS_FOLDER),
            ),
            summarise_operations.upload_documents,
        ),
        Step(
            "declare-sink",
            "data",
            "reader",
            "declare the datasink the summaries are sealed to",
            (cleanroom("reader", "config", "add-datasink", "--name", SUMMARIES),),
            perform_each,
        ),
    ]


def _summariser_step() -> Step:
    command = (
        f"python -m containers.summariser --input-dir {MOUNT_ROOT}/{DOCUMENTS} --output-dir {MOUNT_ROOT}/{SUMMARIES}"
    )
    return Step(
        "add-summariser",
        "contract",
        "hoster",
        "add the summariser with its caps ({max_sentences} sentences, ratio {max_ratio}, "
        "{max_document_bytes} bytes per document)".format(**SUMMARY_POLICY),
        (
            Invocation((SUMMARY_POLICY_FILE,), program="write"),
            cleanroom(
                "hoster",
                "config",
                "add-application",
                "--name",
                APPLICATION,
                "--entrypoint",
                "containers/summariser",
                "--command",
                command,
                "--mounts",
                f"src={DOCUMENTS},dst={MOUNT_ROOT}/{DOCUMENTS}",
                "--mounts",
                f"src={SUMMARIES},dst={MOUNT_ROOT}/{SUMMARIES}",
                "--summary-policy",
                SUMMARY_POLICY_FILE,
                "--cpu",
                "2",
                "--memory",
                "4",
            ),
        ),
        _add_summariser,
    )


def build_steps() -> list[Step]:
    steps = consortium_setup(PERSONAS, perform_each) + _data_steps() + [_summariser_step()]
    steps += _contract_steps(
        "contract", CONTRACT, [APPLICATION], serves=False, data_owners=["owner", "reader"], personas=PERSONAS
    )
    steps += [
        Step(
            f"{CONTRACT}:run",
            "summarise",
            "hoster",
            "run the summariser in the clean room (batch); the reader follows its events",
            (
                cleanroom("hoster", "deployment", "start", "--contract-id", CONTRACT, services=True),
                cleanroom("reader", "governance", "contract", "event", "list", "--id", CONTRACT, "--follow"),
            ),
            summarise_operations.summarise_run,
        ),
        Step(
            "read-summaries",
            "proofs",
            "reader",
            "download and decrypt its summaries; re-check each against the voted caps",
            (
                cleanroom("reader", "datasink", "download", "--name", SUMMARIES, "--target-folder", RECEIVED_FOLDER),
                cleanroom("reader", "summarise", "show", "--contract", CONTRACT),
            ),
            summarise_operations.read_summaries,
        ),
    ]
    return steps


def summarise(scenario: Scenario) -> dict[str, Any]:
    """The results part of ``cleanroom demo --scenario summarise --output json`` (camelCase)."""
    results = scenario.state.results
    received = results.get("summaries", {})
    return {
        "summaryPolicy": results.get("summaryPolicy"),
        "documents": results.get("documents"),
        "method": received.get("method"),
        "summarised": received.get("summarised"),
        "refused": received.get("refused"),
        "withinCaps": received.get("withinCaps"),
        "withinCapsPct": received.get("withinCapsPct"),
        "documentsInSink": received.get("documentsInSink"),
        "sinkFiles": received.get("sinkFiles"),
        "summaries": received.get("items"),
        "run": results.get("run"),
    }


SUMMARISE = ScenarioDefinition(
    name=NAME,
    personas=PERSONAS,
    phases=PHASES,
    steps=tuple(build_steps()),
    contracts=(CONTRACT,),
    consortium_steps=consortium_step_keys(PERSONAS),
    summarise=summarise,
)
