"""The dp-join scenario as data: five organisations, one private training contract, three runs.

Three data providers hold parts of one dataset keyed by a person id (the split is
``core.ml.dp_split``): **texts** holds the review texts, **labels** the labels (a vertical
split, ~80 % of persons in both), **extra** whole rows of persons the inner join leaves out.
Each declares a lifetime privacy budget on its datasource. The **consumer** brings the base
model and receives the trained one; the **hoster** brings the DP trainer and runs the clean
room.

1. Each provider prepares and uploads its data, declaring (epsilon_total, delta, privacy unit);
   the upload pins the ciphertext's hash into its fragment.
2. The hoster adds the DP trainer with its ``private_training`` section (the join: texts base,
   labels inner, extra union; epsilon 3 per run). The hoster writes it, not the consumer, for
   the same reason the hoster brings the trainer in the reference scenario: it is the code's
   configuration, which every owner reads and votes on in the contract (no party's private
   config decides an epsilon). Every party votes the contract, its deployment, telemetry and the
   loss telemetry (a function of the data: every owner must agree).
3. Run 1 and run 2: governance reserves each run's epsilon before any key is released; the
   consumer downloads the sealed model and scores it on its own test split. Run 3 would
   overspend the labels provider's budget (8, the smallest) and is refused before any key.
4. The privacy ledger: the consumer exports the governance ledger and recomputes every run's
   epsilon offline (any party can: the export is the same for all).

Every step is the command lines its persona types; the bodies are in ``dp_operations``, or the
reference scenario's ``operations`` where the verb is the same.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from core.crypto.secret_file import write_public_file
from core.ml.dp_split import KEY, PROVIDERS
from core.scenario import dp_operations
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
    workspace_of,
)
from core.scenario.three_personas import _contract_steps

if TYPE_CHECKING:
    from core.scenario.run import Scenario

NAME = "dp-join"
PERSONAS = ("hoster", *PROVIDERS, "consumer")
PHASES = (
    Phase("setup", "Setup: five organisations, five workspaces, one consortium"),
    Phase("data", "1. Each provider prepares its data and declares its privacy budget"),
    Phase("contract", "2. The private training contract: the join, epsilon per run, every vote"),
    Phase("runs", "3. Private training runs against the budget"),
    Phase("proofs", "4. The privacy ledger, verified offline"),
)

CONTRACT = "dp-join"
APPLICATION = "dp-trainer"
MODEL_SINK = "dp-model"
BASE_MODEL = "base-model"
DELTA = 1e-5
# the lifetime budget each provider declares: labels is the strictest, so the run that would
# overspend is refused on its dataset (two runs of epsilon 3 fit in 8, a third does not)
BUDGETS = {"texts": 10.0, "labels": 8.0, "extra": 10.0}
RUN_EPSILON = 3.0
RUNS = 3
PRIVATE_TRAINING_FILE = "W/hoster/private-training.json"
TEST_SPLIT = "W/consumer/data/test.parquet"
MOUNT_ROOT = "/mnt/remote"

JOIN = {
    "key": KEY,
    "sources": [
        {"datasource": "texts", "file": "texts.parquet", "columns": [KEY, "text"], "how": "base"},
        {"datasource": "labels", "file": "labels.parquet", "columns": [KEY, "label"], "how": "inner"},
        {"datasource": "extra", "file": "extra.parquet", "columns": [KEY, "text", "label"], "how": "union"},
    ],
    "drop": [],
    "text_column": "text",
    "label_column": "label",
    "min_rows": 1000,
    "max_rows_per_key": 1,
}
# Full: the recipe of benchmarks/dp_training.py, two epochs of the ~7,800 joined rows in large
# Poisson batches (DP-SGD learns only with large batches at this epsilon), the head on the masked
# mean of the token states (containers/trainer/mean_pooling.py says why). Quick: a few steps of
# small batches, enough to run the whole accounting end to end in CI; its accuracy stays near chance.
FULL_PRIVATE_TRAINING: dict[str, Any] = {
    "epsilon": RUN_EPSILON,
    "delta": DELTA,
    "accountant": "prv",
    "max_grad_norm": 1.0,
    "batch_size": 512,
    "epochs": 2,
    "learning_rate": 5e-3,
    "max_length": 64,
    "pooling": "mean",
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["query", "value"]},
    "seed": 42,
    "poisson_sampling": True,
    "join": JOIN,
}
QUICK_PRIVATE_TRAINING: dict[str, Any] = {**FULL_PRIVATE_TRAINING, "batch_size": 32, "max_steps": 4}


def private_training(scenario: Scenario) -> dict[str, Any]:
    return QUICK_PRIVATE_TRAINING if scenario.state.quick else FULL_PRIVATE_TRAINING


def run_folder(run: int) -> str:
    return f"W/consumer/{MODEL_SINK}-run-{run}"


def _add_private_trainer(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """The hoster writes the private training section (quick or full) to the file its
    `config add-application --private-training FILE` reads, then adds the application."""
    document = private_training(scenario)
    path = scenario.path(step.invocation("config", "add-application").value("--private-training"))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_public_file(path, (json.dumps(document, indent=2) + "\n").encode())
    scenario.state.results["privateTraining"] = {
        k: document.get(k) for k in ("epsilon", "delta", "accountant", "batch_size", "epochs", "max_steps")
    }
    return perform_each(scenario, step, reporter)


# -- steps ---------------------------------------------------------------------------------------
def _data_steps() -> list[Step]:
    steps = []
    for provider in PROVIDERS:
        folder = f"{workspace_of(provider)}/data"
        steps.append(
            Step(
                f"upload:{provider}",
                "data",
                provider,
                f"prepare its rows keyed by {KEY}, declare its budget (epsilon {BUDGETS[provider]:g}), upload",
                (
                    python_module("core.ml.dp_split", "--provider", provider, "--output-dir", folder),
                    cleanroom(
                        provider,
                        "config",
                        "add-datasource",
                        "--name",
                        provider,
                        "--epsilon-total",
                        f"{BUDGETS[provider]:g}",
                        "--delta",
                        f"{DELTA:g}",
                        "--privacy-unit",
                        KEY,
                    ),
                    cleanroom(provider, "datasource", "upload", "--name", provider, "--dataset-folder", folder),
                ),
                dp_operations.perform_each,
            )
        )
    steps += [
        Step(
            "consumer-assets",
            "data",
            "consumer",
            "keep its test split; upload the base model; declare the datasink the model is sealed to",
            (
                Invocation(("rotten_tomatoes/test.parquet", "W/consumer/data/"), program="cp"),
                cleanroom("consumer", "model", "prepare", "--output-dir", "W/consumer/model"),
                cleanroom("consumer", "config", "add-datasource", "--name", BASE_MODEL),
                cleanroom(
                    "consumer",
                    "datasource",
                    "upload",
                    "--name",
                    BASE_MODEL,
                    "--dataset-folder",
                    "W/consumer/model/pytorch",
                ),
                cleanroom("consumer", "config", "add-datasink", "--name", MODEL_SINK),
            ),
            dp_operations.perform_each,
        ),
    ]
    return steps


def _trainer_step() -> Step:
    mounts = [
        *(f"src={provider},dst={MOUNT_ROOT}/{provider}" for provider in PROVIDERS),
        f"src={BASE_MODEL},dst={MOUNT_ROOT}/model",
        f"src={MODEL_SINK},dst={MOUNT_ROOT}/output",
    ]
    return Step(
        "add-dp-trainer",
        "contract",
        "hoster",
        f"add the DP trainer with its private training section (join, epsilon {RUN_EPSILON:g} per run)",
        (
            cleanroom(
                "hoster",
                "config",
                "add-application",
                "--name",
                APPLICATION,
                "--entrypoint",
                "containers/dp_trainer",
                "--command",
                f"python -m containers.dp_trainer --model-dir {MOUNT_ROOT}/model --output-dir {MOUNT_ROOT}/output",
                *(word for mount in mounts for word in ("--mounts", mount)),
                "--private-training",
                PRIVATE_TRAINING_FILE,
                "--cpu",
                "2",
                "--memory",
                "4",
            ),
        ),
        _add_private_trainer,
    )


def _run_steps(run: int) -> list[Step]:
    start = (
        cleanroom("hoster", "deployment", "start", "--contract-id", CONTRACT, services=True),
        cleanroom("consumer", "governance", "contract", "event", "list", "--id", CONTRACT, "--follow"),
    )
    if run == RUNS:
        return [
            Step(
                f"{CONTRACT}:run-{run}",
                "runs",
                "hoster",
                f"start run {run}: it would overspend a budget, so governance refuses it before any key",
                (
                    *start,
                    cleanroom("labels", "governance", "privacy", "history", "--dataset", "labels"),
                ),
                dp_operations.refused_run,
            )
        ]
    steps = [
        Step(
            f"{CONTRACT}:run-{run}",
            "runs",
            "hoster",
            f"run {run}: reserve epsilon, join, DP-SGD with LoRA, seal the model to the consumer",
            start,
            dp_operations.private_run,
        ),
        Step(
            f"{CONTRACT}:score-{run}",
            "runs",
            "consumer",
            f"download the model of run {run} and score it on its own 1,066 test rows",
            (
                cleanroom("consumer", "datasink", "download", "--name", MODEL_SINK, "--target-folder", run_folder(run)),
                python_module("core.ml.local_evaluation", "--model-dir", run_folder(run), "--dataset", TEST_SPLIT),
            ),
            dp_operations.score_run,
        ),
        Step(
            f"{CONTRACT}:budget-{run}",
            "runs",
            "labels",
            "read what is left of every budget",
            (cleanroom("labels", "governance", "privacy", "show"),),
            dp_operations.privacy_show,
        ),
    ]
    return steps


def build_steps() -> list[Step]:
    steps = consortium_setup(PERSONAS, perform_each) + _data_steps() + [_trainer_step()]
    steps += _contract_steps(
        "contract",
        CONTRACT,
        [APPLICATION],
        serves=False,
        data_owners=[*PROVIDERS, "consumer"],
        telemetry=True,
        personas=PERSONAS,
        runtime_options=("loss-telemetry",),
    )
    for run in range(1, RUNS + 1):
        steps += _run_steps(run)
    steps.append(
        Step(
            "privacy-verify",
            "proofs",
            "consumer",
            "export the ledger and recompute every run's epsilon offline",
            (
                cleanroom("consumer", "governance", "ledger", "export", "--file", "consumer-ledger.jsonl"),
                cleanroom("consumer", "governance", "privacy", "verify", "--file", "consumer-ledger.jsonl"),
            ),
            dp_operations.privacy_verify,
        )
    )
    return steps


def summarise(scenario: Scenario) -> dict[str, Any]:
    """The results part of ``cleanroom demo --scenario dp-join --output json`` (camelCase)."""
    results = scenario.state.results
    runs = results.get("runs", {})
    return {
        "runs": [
            {
                "run": int(run),
                "accepted": record.get("accepted"),
                "steps": record.get("steps"),
                "accuracy": record.get("accuracy"),
                "testRows": record.get("testRows"),
                "epsilon": record.get("epsilon"),
                "epsilonPrv": record.get("epsilonPrv"),
                "epsilonRdp": record.get("epsilonRdp"),
                "noiseMultiplier": record.get("noiseMultiplier"),
                "sampleRate": record.get("sampleRate"),
                "dpSteps": record.get("dpSteps"),
                "joinedRows": record.get("joinedRows"),
            }
            for run, record in sorted(runs.items(), key=lambda item: int(item[0]))
        ],
        "accuracyByRun": {run: record.get("accuracy") for run, record in runs.items() if "accuracy" in record},
        "epsilonSpent": results.get("epsilonSpent", {}),
        "budgets": results.get("budgets", {}),
        "refusedRun": results.get("refusedRun"),
        "privacyVerified": results.get("privacyVerified"),
        "privacyLedger": results.get("privacyLedger"),
        "privateTraining": results.get("privateTraining"),
    }


DP_JOIN = ScenarioDefinition(
    name=NAME,
    personas=PERSONAS,
    phases=PHASES,
    steps=tuple(build_steps()),
    contracts=(CONTRACT,),
    consortium_steps=consortium_step_keys(PERSONAS),
    summarise=summarise,
)
