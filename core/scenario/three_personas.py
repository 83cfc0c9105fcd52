"""The reference scenario as data: three organisations, three contracts, then the proofs.

1. Inference on the base model: the provider uploads it, the hoster adds the inference
   server, every party votes the contract and its deployment, the consumer measures ~50%.
2. A governed fine-tuning run sealed to the provider (telemetry enabled by vote).
3. Inference on the fine-tuned model: the consumer measures again.
4. Proofs: isolation attempts, the ledger verified offline, every contract's events.

Every step is the ``cleanroom`` command lines its persona would type (``W/<persona>`` is a
workspace, ``W/services`` the embedded services); the bodies in ``operations`` and
``proofs`` perform exactly those lines.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from core.crypto.secret_file import write_public_file
from core.runtime.deployment import DEPLOYMENT_SPEC_FILE, POLICY_FILE, socket_path
from core.scenario import operations, proofs
from core.scenario.operations import perform_each
from core.scenario.steps import (
    EVERY_PERSONA,
    ROOT_NAME,
    Invocation,
    Phase,
    Reporter,
    ScenarioDefinition,
    Step,
    cleanroom,
    consortium_setup,
    consortium_step_keys,
    workspace_of,
)

if TYPE_CHECKING:
    from core.scenario.run import Scenario

PERSONAS = ("hoster", "provider", "consumer")
PHASES = (
    Phase("setup", "Setup: three organisations, three workspaces, one consortium"),
    Phase("baseline", "1. Inference on the base model"),
    Phase("fine-tuning", "2. Fine-tuning in the clean room"),
    Phase("fine-tuned", "3. Inference on the fine-tuned model"),
    Phase("proofs", "4. Proofs: isolation, ledger, events"),
)

BASE_CONTRACT = "inference-base"
TRAINING_CONTRACT = "finetune"
FINETUNED_CONTRACT = "inference-finetuned"
CONTRACTS = (BASE_CONTRACT, TRAINING_CONTRACT, FINETUNED_CONTRACT)

# Full run: one epoch of the 8,530 training rows (the field's recipe). Quick: at most 50 steps
# at a higher learning rate, which still moves the untrained head well clear of chance.
FULL_TRAINING = {
    "epochs": 1,
    "learning_rate": 5e-5,
    "batch_size": 32,
    "max_length": 64,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "seed": 42,
    "eval_each_epoch": True,
}
QUICK_TRAINING = {**FULL_TRAINING, "learning_rate": 1e-4, "max_steps": 50}
INFERENCE_ROUTES = ("GET /metadata", "POST /infer")
TRAINING_CONFIG = "W/provider/training-config"
TEST_SPLIT = "W/consumer/data/test.parquet"


def training_config(scenario: Scenario) -> dict[str, Any]:
    return QUICK_TRAINING if scenario.state.quick else FULL_TRAINING


# -- step-building helpers ----------------------------------------------------------------------
def _upload(persona: str, name: str, folder: str) -> tuple[Invocation, Invocation]:
    return (
        cleanroom(persona, "config", "add-datasource", "--name", name),
        cleanroom(persona, "datasource", "upload", "--name", name, "--dataset-folder", folder),
    )


def _inference_application(name: str, model: str) -> tuple[Invocation, Invocation]:
    command = [
        "python",
        "-m",
        "containers.inference_server",
        "--model-dir",
        "/mnt/remote/model",
        "--uds",
        socket_path(name),
    ]
    return (
        cleanroom(
            "hoster",
            "config",
            "add-application",
            "--name",
            name,
            "--entrypoint",
            "containers/inference_server",
            "--command",
            " ".join(command),
            "--mounts",
            f"src={model},dst=/mnt/remote/model",
            "--ports",
            "8000",
        ),
        cleanroom(
            "hoster",
            "config",
            "set-network-policy",
            *(word for route in INFERENCE_ROUTES for word in ("--allow", route)),
        ),
    )


def _contract_steps(
    phase: str,
    contract_id: str,
    applications: list[str],
    *,
    serves: bool,
    data_owners: list[str],
    telemetry: bool = False,
    personas: tuple[str, ...] = PERSONAS,
    runtime_options: tuple[str, ...] = (),
) -> list[Step]:
    """Propose, vote, deploy-propose, vote, (CA), wrap DEKs: the governance of one contract.

    ``personas`` are the parties whose fragments make the contract and who all vote (the hoster
    proposes, so it votes last); ``runtime_options`` are voted options enabled besides telemetry."""
    configs = [word for p in personas for word in ("--configs", workspace_of(p))]
    voters = [*(p for p in personas if p != "hoster"), "hoster"]
    options = (("telemetry",) if telemetry else ()) + runtime_options
    document = f"{contract_id}.json"
    steps = [
        Step(
            f"{contract_id}:propose",
            phase,
            "hoster",
            f"propose contract '{contract_id}'",
            (
                cleanroom(
                    "hoster",
                    "config",
                    "view",
                    *configs,
                    *(w for a in applications for w in ("--application", a)),
                    "--output",
                    "json",
                    stdout=document,
                ),
                cleanroom("hoster", "governance", "contract", "create", "--id", contract_id, "--data", f"@{document}"),
                cleanroom("hoster", "governance", "contract", "propose", "--id", contract_id, "--version", "VERSION"),
            ),
            operations.propose_contract,
        )
    ]
    for persona in voters:
        steps.append(
            Step(
                f"{contract_id}:vote-contract:{persona}",
                phase,
                persona,
                f"review and accept contract '{contract_id}'",
                (
                    cleanroom(persona, "governance", "contract", "show", "--id", contract_id),
                    cleanroom(
                        persona,
                        "governance",
                        "contract",
                        "vote",
                        "--id",
                        contract_id,
                        "--proposal-id",
                        "ID",
                        "--action",
                        "accept",
                    ),
                ),
                operations.vote_open,
            )
        )
    proposals = [
        cleanroom(
            "hoster", "governance", "deployment", "generate", "--contract-id", contract_id, "--output-dir", contract_id
        ),
        cleanroom(
            "hoster",
            "governance",
            "deployment",
            "template",
            "propose",
            "--contract-id",
            contract_id,
            "--template-file",
            f"{contract_id}/{DEPLOYMENT_SPEC_FILE}",
        ),
        cleanroom(
            "hoster",
            "governance",
            "deployment",
            "policy",
            "propose",
            "--contract-id",
            contract_id,
            "--policy-file",
            f"{contract_id}/{POLICY_FILE}",
        ),
    ]
    if serves:
        proposals.append(cleanroom("hoster", "governance", "ca", "propose-enable", "--contract-id", contract_id))
    for option in options:
        proposals.append(
            cleanroom(
                "hoster",
                "governance",
                "contract",
                "runtime-option",
                "set",
                "--id",
                contract_id,
                "--option",
                option,
                "--action",
                "enable",
            )
        )
    steps.append(
        Step(
            f"{contract_id}:propose-deployment",
            phase,
            "hoster",
            "propose the deployment spec, clean-room policy"
            + (" and CA" if serves else "")
            + "".join(f" and {option}" for option in options),
            tuple(proposals),
            operations.propose_deployment,
        )
    )
    for persona in voters:
        steps.append(
            Step(
                f"{contract_id}:vote-deployment:{persona}",
                phase,
                persona,
                "regenerate the spec and policy from the contract, compare, accept",
                (
                    cleanroom(
                        persona,
                        "governance",
                        "deployment",
                        "generate",
                        "--contract-id",
                        contract_id,
                        "--output-dir",
                        "mine",
                    ),
                    Invocation(("-r", "mine", contract_id), program="diff"),
                    cleanroom(
                        persona, "governance", "proposal", "list", "--contract-id", contract_id, "--state", "Open"
                    ),
                    cleanroom(persona, "governance", "proposal", "vote", "--proposal-id", "ID", "--action", "accept"),
                ),
                operations.vote_open,
            )
        )
    if serves:
        steps.append(
            Step(
                f"{contract_id}:ca",
                phase,
                "hoster",
                "generate the contract's CA key in governance",
                (cleanroom("hoster", "governance", "ca", "generate-key", "--contract-id", contract_id),),
                operations.generate_ca,
            )
        )
    for persona in data_owners:
        steps.append(
            Step(
                f"{contract_id}:wrap-deks:{persona}",
                phase,
                persona,
                "wrap its DEKs to its per-contract KEK (released only to the attested clean room)",
                (cleanroom(persona, "config", "wrap-deks", "--contract-id", contract_id),),
                perform_each,
            )
        )
    return steps


def _inference_steps(phase: str, contract_id: str) -> list[Step]:
    return [
        Step(
            f"{contract_id}:start",
            phase,
            "hoster",
            "start the clean room (attest, key release, TLS ingress)",
            (cleanroom("hoster", "deployment", "start", "--contract-id", contract_id, services=True),),
            perform_each,
        ),
        Step(
            f"{contract_id}:evaluate",
            phase,
            "consumer",
            "evaluate its 1,066 test rows through the endpoint",
            (
                cleanroom(
                    "consumer",
                    "governance",
                    "ca",
                    "show",
                    "--contract-id",
                    contract_id,
                    "--query",
                    "caCert",
                    stdout="ca.crt",
                ),
                cleanroom(
                    "consumer", "governance", "contract", "event", "list", "--id", contract_id
                ),  # the ingress URL
                # the token goes through the environment, not argv: `ps` shows every user a command line
                cleanroom("consumer", "governance", "contract", "token", "--id", contract_id, export="CLEANROOM_TOKEN"),
                cleanroom("consumer", "infer", "--dataset", TEST_SPLIT, "--endpoint", "URL", "--ca", "ca.crt"),
            ),
            operations.evaluate,
        ),
        Step(
            f"{contract_id}:stop",
            phase,
            "hoster",
            "stop the clean room (plaintext mounts removed)",
            (cleanroom("hoster", "deployment", "stop", "--contract-id", contract_id, services=True),),
            perform_each,
        ),
    ]


# -- step bodies of this scenario only ------------------------------------------------------------
def _training_assets(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """The provider writes its training config into the folder it then uploads: the narrated
    `write FILE` names the file only, since quick or full is known only when the step runs."""
    summaries = []
    for invocation in step.invocations:
        if invocation.program != "write":
            summaries.append(perform_each(scenario, replace(step, invocations=(invocation,)), reporter))
            continue
        (narrated,) = invocation.args
        write_public_file(scenario.path(narrated), (json.dumps(training_config(scenario), indent=2) + "\n").encode())
        summaries.append(f"{narrated}: the {'quick' if scenario.state.quick else 'full'} run's config")
    return "; ".join(summary for summary in summaries if summary)


def _train(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    summary = operations.train(scenario, step, reporter)
    scenario.state.results["training"]["config"] = training_config(scenario)
    return summary


def _download_trained(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    summary = perform_each(scenario, step, reporter)
    target = scenario.path(step.invocation("datasink", "download").value("--target-folder"))
    metrics = json.loads((target / "metrics.json").read_text()) if (target / "metrics.json").is_file() else {}
    scenario.state.results.setdefault("training", {})["metrics"] = {
        k: metrics.get(k) for k in ("steps", "wall_time_s", "train_loop_s") if k in metrics
    }
    return summary


def _attempts(persona: str) -> tuple[str, ...]:
    """Each party tries the others' DEKs and KEKs; the hoster, whose machine holds every store and
    mount, also looks for plaintext in them."""
    return ("secret", "release", "decrypt", *(("stores", "mounts") if persona == "hoster" else ()))


def _isolation_attempt(persona: str, attempt: str) -> Invocation:
    return Invocation(
        ("-m", "core.scenario", "isolation", "--root", ROOT_NAME, "--persona", persona, "--attempt", attempt),
        program="python",
    )


def build_steps() -> list[Step]:
    steps = consortium_setup(PERSONAS, perform_each)
    steps.append(
        Step(
            "consumer-data",
            "setup",
            "consumer",
            "keep its test split; stage its training data",
            (
                Invocation(("rotten_tomatoes/test.parquet", "W/consumer/data/"), program="cp"),
                Invocation(
                    (
                        "rotten_tomatoes/train.parquet",
                        "rotten_tomatoes/validation.parquet",
                        "W/consumer/data/training/",
                    ),
                    program="cp",
                ),
            ),
            perform_each,
        )
    )
    # 1. inference on the base model
    steps += [
        Step(
            "model-prepare",
            "baseline",
            "provider",
            "prepare the base model (MiniLM, untrained 2-label head)",
            (cleanroom("provider", "model", "prepare", "--output-dir", "W/provider/model"),),
            perform_each,
        ),
        Step(
            "upload-base-onnx",
            "baseline",
            "provider",
            "encrypt and upload the ONNX model as a datasource",
            _upload("provider", "base-onnx", "W/provider/model/onnx"),
            perform_each,
        ),
        Step(
            "add-inference",
            "baseline",
            "hoster",
            "add the inference application and its network policy",
            _inference_application("inference", "base-onnx"),
            perform_each,
        ),
    ]
    steps += _contract_steps("baseline", BASE_CONTRACT, ["inference"], serves=True, data_owners=["provider"])
    steps += _inference_steps("baseline", BASE_CONTRACT)
    # 2. fine-tuning
    steps += [
        Step(
            "upload-training-assets",
            "fine-tuning",
            "provider",
            "upload the PyTorch model and training config; declare the output datasink",
            (
                *_upload("provider", "base-pytorch", "W/provider/model/pytorch"),
                Invocation((f"{TRAINING_CONFIG}/training_config.json",), program="write"),
                *_upload("provider", "training-config", TRAINING_CONFIG),
                cleanroom("provider", "config", "add-datasink", "--name", "trained-model"),
            ),
            _training_assets,
        ),
        Step(
            "upload-training-data",
            "fine-tuning",
            "consumer",
            "encrypt and upload train + validation splits",
            _upload("consumer", "training-data", "W/consumer/data/training"),
            perform_each,
        ),
        Step(
            "add-trainer",
            "fine-tuning",
            "hoster",
            "add the trainer application",
            (
                cleanroom(
                    "hoster",
                    "config",
                    "add-application",
                    "--name",
                    "trainer",
                    "--entrypoint",
                    "containers/trainer",
                    "--command",
                    "python -m containers.trainer --model-dir /mnt/remote/model "
                    "--data-dir /mnt/remote/data --config-dir /mnt/remote/config --output-dir /mnt/remote/output",
                    "--mounts",
                    "src=base-pytorch,dst=/mnt/remote/model",
                    "--mounts",
                    "src=training-data,dst=/mnt/remote/data",
                    "--mounts",
                    "src=training-config,dst=/mnt/remote/config",
                    "--mounts",
                    "src=trained-model,dst=/mnt/remote/output",
                    "--cpu",
                    "2",
                    "--memory",
                    "4",
                ),
            ),
            perform_each,
        ),
    ]
    steps += _contract_steps(
        "fine-tuning",
        TRAINING_CONTRACT,
        ["trainer"],
        serves=False,
        data_owners=["provider", "consumer"],
        telemetry=True,
    )
    steps += [
        Step(
            f"{TRAINING_CONTRACT}:train",
            "fine-tuning",
            "hoster",
            "run the training clean room; every party watches its telemetry",
            (
                cleanroom("hoster", "deployment", "start", "--contract-id", TRAINING_CONTRACT, services=True),
                cleanroom("consumer", "governance", "contract", "event", "list", "--id", TRAINING_CONTRACT, "--follow"),
            ),
            _train,
        ),
        Step(
            "download-trained-model",
            "fine-tuning",
            "provider",
            "download and decrypt the sealed trained model",
            (
                cleanroom(
                    "provider",
                    "datasink",
                    "download",
                    "--name",
                    "trained-model",
                    "--target-folder",
                    "W/provider/finetuned",
                ),
            ),
            _download_trained,
        ),
    ]
    # 3. inference on the fine-tuned model
    steps += [
        Step(
            "upload-finetuned-onnx",
            "fine-tuned",
            "provider",
            "encrypt and upload the fine-tuned ONNX model",
            _upload("provider", "finetuned-onnx", "W/provider/finetuned/onnx"),
            perform_each,
        ),
        Step(
            "add-inference-finetuned",
            "fine-tuned",
            "hoster",
            "add an inference application for the new model and its network policy",
            _inference_application("inference-finetuned", "finetuned-onnx"),
            perform_each,
        ),
    ]
    steps += _contract_steps(
        "fine-tuned", FINETUNED_CONTRACT, ["inference-finetuned"], serves=True, data_owners=["provider"]
    )
    steps += _inference_steps("fine-tuned", FINETUNED_CONTRACT)
    # 4. proofs: the attacks are not CLI verbs (a forged attestation, a raw read of a store), so
    # each is the proof module's own command line, which the step performs exactly
    for persona in PERSONAS:
        steps.append(
            Step(
                f"isolation:{persona}",
                "proofs",
                persona,
                "try to open the other parties' assets (every attempt must be refused)",
                tuple(_isolation_attempt(persona, attempt) for attempt in _attempts(persona)),
                proofs.isolation(persona),
            )
        )
    steps.append(
        Step(
            "ledger-verify",
            "proofs",
            EVERY_PERSONA,
            "export the ledger and verify it offline",
            tuple(
                invocation
                for p in PERSONAS
                for invocation in (
                    cleanroom(p, "governance", "ledger", "export", "--file", f"{p}-ledger.jsonl"),
                    cleanroom(p, "governance", "ledger", "verify", "--file", f"{p}-ledger.jsonl", "--full"),
                )
            ),
            proofs.verify_ledger,
        )
    )
    steps.append(
        Step(
            "event-counts",
            "proofs",
            "consumer",
            "count every contract's events and record the contracts",
            tuple(cleanroom("consumer", "governance", "contract", "event", "list", "--id", c) for c in CONTRACTS),
            proofs.count_events,
        )
    )
    return steps


def summarise(scenario: Scenario) -> dict[str, Any]:
    """The results part of ``cleanroom demo --output json``, camelCase like every CLI document
    (the training config and its metrics keep the trainer's own keys: they are its files)."""
    results = scenario.state.results
    baseline = results.get("evaluation", {}).get(BASE_CONTRACT, {})
    finetuned = results.get("evaluation", {}).get(FINETUNED_CONTRACT, {})
    checks = results.get("isolation_checks", [])
    training = results.get("training")
    ledger = results.get("ledger")
    return {
        "baselineAccuracy": baseline.get("accuracy"),
        "finetunedAccuracy": finetuned.get("accuracy"),
        "gain": (
            round(finetuned["accuracy"] - baseline["accuracy"], 6)
            if "accuracy" in baseline and "accuracy" in finetuned
            else None
        ),
        "testRows": finetuned.get("total_rows", baseline.get("total_rows")),
        "training": (
            {
                "steps": training.get("steps"),
                "valAccuracy": training.get("val_accuracy"),
                "sealed": training.get("sealed"),
                "config": training.get("config"),
                "metrics": training.get("metrics"),
            }
            if training
            else None
        ),
        "contracts": results.get("contracts", []),
        "ledgerVerified": (ledger or {}).get("verified"),
        "ledger": (
            {
                "entries": ledger.get("entries"),
                "checkpoints": ledger.get("checkpoints"),
                "memberSignaturesChecked": ledger.get("member_signatures_checked"),
                "verified": ledger.get("verified"),
                "byPersona": ledger.get("by_persona"),
            }
            if ledger
            else None
        ),
        "isolationChecks": checks,
        "isolationPassed": bool(checks) and all(c["passed"] for c in checks),
        "eventCounts": results.get("event_counts", {}),
    }


THREE_PERSONAS = ScenarioDefinition(
    name="three-personas",
    personas=PERSONAS,
    phases=PHASES,
    steps=tuple(build_steps()),
    contracts=CONTRACTS,
    consortium_steps=consortium_step_keys(PERSONAS),
    summarise=summarise,
)
