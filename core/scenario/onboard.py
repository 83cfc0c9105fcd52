"""The onboarding scenario as data: a provider's model verified in a clean room, then published by vote.

Two parties, every one of them a voter:

- **provider** builds the shipped MiniLM classifier as a model package (`model package init`),
  registers it (`model onboard`: status created, both hashes pinned), and uploads it encrypted.
- **hoster** adds the onboarding application (containers/onboarding) whose voted env pins the
  hashes it read back from the registry; both parties vote the contract and its deployment.

1. The provider builds the package, and a copy of it carrying a code-running pickle.
2. MiniLM: onboard, upload, onboarding contract voted, clean room run in the sandbox: the
   clean room itself writes downloaded -> scanning -> environmentCreated -> deployed -> verified.
   The summary gives the wall time from `model onboard` to `verified` by the ledger's own times.
3. The pickled package goes the same way and ends `vulnerable`, its finding named, never loaded.
4. The provider registers version 2 (a re-release of the same package) and brings regression
   cases; the hoster's regression application pins both versions' registry hashes and the voted
   gate; the clean room compares them and writes version 2's regression result itself, which
   `model show` prints (a no-change release regresses on no case: the gate passes).
5. Publishing MiniLM is proposed and accepted by every member; `model versions` shows it published.
6. The hoster adds an inference application serving the published version (its voted env names
   it and pins the registry's package hash, which the runtime checks on the decrypted mount);
   both vote it, the clean room starts, the provider load-tests it per rps through the
   contract's TLS ingress with a short plan and records the report on the version (`--record`:
   governance takes it only through a contract serving exactly that version); `model show`
   prints it; the clean room stops.

Quick and full runs are the same (the package is the shipped model either way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.governance.model_registry import ModelStatus
from core.governance.onboarding_contract import onboarding_env
from core.governance.regression_contract import regression_env
from core.governance.serving_contract import serving_env
from core.runtime.deployment import socket_path
from core.scenario import onboard_operations
from core.scenario.operations import perform_each
from core.scenario.steps import Invocation, Phase, ScenarioDefinition, Step, cleanroom, consortium_setup
from core.scenario.three_personas import _contract_steps

if TYPE_CHECKING:
    from core.scenario.run import Scenario

NAME = "onboard"
PERSONAS = ("hoster", "provider")
PHASES = (
    Phase("setup", "Setup: a model provider and a hoster; one consortium"),
    Phase("package", "1. The provider builds the MiniLM model package (and a pickled copy)"),
    Phase("onboard-minilm", "2. MiniLM onboarded: its onboarding clean room verifies it"),
    Phase("onboard-pickled", "3. The pickled package onboarded: the clean room finds it vulnerable"),
    Phase("regression", "4. Version 2 against version 1 on regression cases, under a voted gate"),
    Phase("publish", "5. Every member votes to publish the verified version"),
    Phase("serve", "6. The published version served in a clean room, load-tested, the report recorded"),
)

VERSION = "1"
MINILM, PICKLED = "minilm", "minilm-pickled"
PACKAGE_FOLDER = "W/provider/minilm-package"
PICKLED_FOLDER = "W/provider/minilm-pickled-package"
PICKLE_FILE = f"{PICKLED_FOLDER}/model/extra.pkl"
MOUNT = "/mnt/remote/package"
TARGET_SECONDS = 60.0  # issue #15: a new user onboards the shipped package to verified within this
CANDIDATE = "2"  # the re-release compared with VERSION
REGRESSION_APP = f"regression-{MINILM}"
REGRESSION_CONTRACT = f"regression-{MINILM}-{CANDIDATE}"
CASES_SOURCE, REPORT_SINK = "regression-cases", "regression-report"
CASES_FILE = "W/provider/regression-cases/cases.jsonl"
GATE = {"min_accuracy_delta": 0.0, "max_regressions": 0}  # the voted gate: no case may regress
SERVE_APP = f"serve-{MINILM}"
SERVE_CONTRACT = f"serve-{MINILM}-{VERSION}"
SERVE_ROUTE = "POST /infer"
# A plan for a scenario step, not a benchmark: three short open-loop steps at low rates (about ten
# seconds of load on a shared 2-core machine); `cleanroom model loadtest` without --steps runs the
# full default plan.
LOADTEST_PLAN = ("--steps", "5,10,20", "--duration", "3", "--slo-ms", "200")


def contract_of(model: str) -> str:
    """The onboarding contract of one model version (`model onboard` prints the same id)."""
    return f"onboard-{model}-{VERSION}"


def _package_steps(base: str | None) -> list[Step]:
    init = ["model", "package", "init", "--task", "text-classification", "--output-dir", PACKAGE_FOLDER]
    return [
        Step(
            "build-package",
            "package",
            "provider",
            "build the shipped MiniLM classifier as a model package (prepare, export, scaffold, check)",
            (cleanroom("provider", *init, *(("--base", base) if base else ())),),
            onboard_operations.build_package,
        ),
        Step(
            "build-pickled-package",
            "package",
            "provider",
            "copy it and slip a code-running pickle beside the weights",
            (
                Invocation(("-r", PACKAGE_FOLDER, PICKLED_FOLDER), program="cp"),
                Invocation((PICKLE_FILE,), program="write"),
            ),
            onboard_operations.build_pickled_package,
        ),
    ]


def _pinned_application(
    model: str, name: str, entrypoint: str, command: str, mounts: list[tuple[str, str]], env: dict[str, str], *more: str
) -> tuple[Invocation, Invocation]:
    """The hoster's `model show` (the hashes the registry holds), then `config add-application` with
    ``mounts`` ((source, path) pairs: one source may be mounted twice), ``more`` options and the env
    pinning those hashes (its placeholders are filled by onboard_operations.add_pinned_application)."""
    return (
        cleanroom("hoster", "model", "show", "--output", "json", model),
        cleanroom(
            "hoster", "config", "add-application", "--name", name, "--entrypoint", entrypoint, "--command", command,
            *(word for source, path in mounts for word in ("--mounts", f"src={source},dst={path}")),
            *more,
            *(word for key, value in env.items() for word in ("--env", f"{key}={value}")),
        ),
    )  # fmt: skip


def _onboarding_steps(phase: str, model: str, folder: str, description: str, expected: str) -> list[Step]:
    """`model onboard`, then the next commands it prints: upload, the hoster's application pinning
    the registered hashes, the contract voted by all, the clean room run to its last status."""
    source, application, contract = f"{model}-package", f"onboard-{model}", contract_of(model)
    env = onboarding_env(model, VERSION, "PACKAGE_SHA256", "WRAPPER_SHA256")
    onboard = cleanroom(
        "provider", "model", "onboard", "--package", folder, "--name", model, "--version", VERSION,
        "--description", description,
    )  # fmt: skip
    steps = [
        Step(
            f"{model}:onboard",
            phase,
            "provider",
            f"register {model} {VERSION} (status created)"
            + ("" if expected == ModelStatus.VERIFIED else "; the CLI refuses it, the registry API does not"),
            (onboard,),
            onboard_operations.onboard,
        ),
        Step(
            f"{model}:upload",
            phase,
            "provider",
            "encrypt and upload the package (the weights stay sealed)",
            (
                cleanroom("provider", "config", "add-datasource", "--name", source),
                cleanroom("provider", "datasource", "upload", "--name", source, "--dataset-folder", folder),
            ),
            perform_each,
        ),
        Step(
            f"{model}:add-onboarding",
            phase,
            "hoster",
            "add the onboarding application, pinning the hashes the registry holds",
            _pinned_application(
                model,
                application,
                "containers/onboarding",
                f"python -m containers.onboarding --package-dir {MOUNT}",
                [(source, MOUNT)],
                env,
            ),
            onboard_operations.add_pinned_application,
        ),
    ]
    steps += _contract_steps(phase, contract, [application], serves=False, data_owners=["provider"], personas=PERSONAS)
    steps.append(
        Step(
            f"{contract}:run",
            phase,
            "hoster",
            f"run the onboarding clean room (sandbox); {model} must end {expected}",
            (
                cleanroom("hoster", "deployment", "start", "--contract-id", contract, services=True),
                cleanroom("provider", "model", "versions", "--output", "json", model),
            ),
            onboard_operations.follow_onboarding(expected, VERSION),
        )
    )
    return steps


def _regression_steps() -> list[Step]:
    """Version 2 registered, the provider's cases uploaded, the hoster's regression application
    pinning both versions' registry hashes and the gate, the contract voted, the clean room run."""
    env = regression_env(MINILM, (CANDIDATE, "CANDIDATE_SHA256"), (VERSION, "BASELINE_SHA256"), GATE)
    package = f"{MINILM}-package"  # mounted twice: the baseline and the candidate version
    roles = [(CASES_SOURCE, "cases"), (package, "baseline"), (REPORT_SINK, "output"), (package, "candidate")]
    mounts = [(source, f"/mnt/remote/{role}") for source, role in roles]
    command = "python -m containers.regression --cases-dir /mnt/remote/cases --baseline-dir /mnt/remote/baseline "
    command += "--candidate-dir /mnt/remote/candidate --output-dir /mnt/remote/output --threads 1"
    steps = [
        Step(
            f"{MINILM}:onboard-{CANDIDATE}",
            "regression",
            "provider",
            f"register {MINILM} {CANDIDATE}: a re-release of the same package (status created)",
            (
                cleanroom(
                    "provider",
                    "model",
                    "onboard",
                    "--package",
                    PACKAGE_FOLDER,
                    "--name",
                    MINILM,
                    "--version",
                    CANDIDATE,
                    "--description",
                    "sentiment classifier",
                ),
            ),
            onboard_operations.onboard,
        ),
        Step(
            "regression:cases",
            "regression",
            "provider",
            "write regression cases (rotten_tomatoes test rows), upload them encrypted, add the report sink",
            (
                Invocation((CASES_FILE,), program="write"),
                cleanroom("provider", "config", "add-datasource", "--name", CASES_SOURCE),
                cleanroom(
                    "provider",
                    "datasource",
                    "upload",
                    "--name",
                    CASES_SOURCE,
                    "--dataset-folder",
                    CASES_FILE.rsplit("/", 1)[0],
                ),
                cleanroom("provider", "config", "add-datasink", "--name", REPORT_SINK),
            ),
            onboard_operations.write_cases,
        ),
        Step(
            "regression:add-application",
            "regression",
            "hoster",
            "add the regression application, pinning both versions' registry hashes and the gate",
            _pinned_application(MINILM, REGRESSION_APP, "containers/regression", command, mounts, env),
            onboard_operations.add_regression_application,
        ),
    ]
    steps += _contract_steps(
        "regression", REGRESSION_CONTRACT, [REGRESSION_APP], serves=False, data_owners=["provider"], personas=PERSONAS
    )
    steps.append(
        Step(
            f"{REGRESSION_CONTRACT}:run",
            "regression",
            "hoster",
            f"run the regression clean room (sandbox); it writes {MINILM} {CANDIDATE}'s regression result",
            (
                cleanroom("hoster", "deployment", "start", "--contract-id", REGRESSION_CONTRACT, services=True),
                cleanroom("provider", "model", "show", "--output", "table", MINILM),
            ),
            onboard_operations.follow_regression,
        )
    )
    return steps


def _publish_steps() -> list[Step]:
    steps = [
        Step(
            "publish",
            "publish",
            "provider",
            f"propose publishing {MINILM} {VERSION}",
            (cleanroom("provider", "model", "publish", "--version", VERSION, MINILM),),
            onboard_operations.propose_publish,
        )
    ]
    for persona in ("provider", "hoster"):
        steps.append(
            Step(
                f"publish:vote:{persona}",
                "publish",
                persona,
                f"read {MINILM}'s versions (verified, pinned hashes) and accept publishing it",
                (
                    cleanroom(persona, "model", "versions", "--output", "json", MINILM),
                    cleanroom(persona, "governance", "proposal", "vote", "--proposal-id", "ID", "--action", "accept"),
                ),
                onboard_operations.vote_publish,
            )
        )
    steps.append(
        Step(
            "versions",
            "publish",
            "hoster",
            "read every version: MiniLM published, the pickled one vulnerable",
            (
                cleanroom("hoster", "model", "versions", "--output", "json", MINILM),
                cleanroom("hoster", "model", "versions", "--output", "json", PICKLED),
            ),
            onboard_operations.read_versions,
        )
    )
    return steps


def _serve_steps() -> list[Step]:
    """The published version mounted by an inference application whose voted env names it, the
    contract voted by all and started, a load test recorded on the version, the clean room stopped."""
    env = serving_env(MINILM, VERSION, "PACKAGE_SHA256", MOUNT)
    command = f"python -m containers.inference_server --model-dir {MOUNT} --uds {socket_path(SERVE_APP)}"
    steps = [
        Step(
            "serve:add-application",
            "serve",
            "hoster",
            f"add an inference application serving {MINILM} {VERSION} (its registry package hash pinned) "
            "and the route it serves",
            (
                *_pinned_application(
                    MINILM,
                    SERVE_APP,
                    "containers/inference_server",
                    command,
                    [(f"{MINILM}-package", MOUNT)],
                    env,
                    "--ports",
                    "8000",
                ),
                cleanroom("hoster", "config", "set-network-policy", "--allow", SERVE_ROUTE),
            ),
            onboard_operations.add_pinned_application,
        )
    ]
    steps += _contract_steps(
        "serve", SERVE_CONTRACT, [SERVE_APP], serves=True, data_owners=["provider"], personas=PERSONAS
    )
    loadtest = ("model", "loadtest", "--contract", SERVE_CONTRACT, "--mode", "per-rps", *LOADTEST_PLAN)
    steps += [
        Step(
            f"{SERVE_CONTRACT}:start",
            "serve",
            "hoster",
            "start the clean room (attest, key release, the package hashed against the registry, TLS ingress)",
            (cleanroom("hoster", "deployment", "start", "--contract-id", SERVE_CONTRACT, services=True),),
            perform_each,
        ),
        Step(
            f"{SERVE_CONTRACT}:loadtest",
            "serve",
            "provider",
            f"load-test it per rps through the contract's ingress; record the report on {MINILM} {VERSION}",
            (
                cleanroom("provider", *loadtest, "--record", f"{MINILM}@{VERSION}"),
                cleanroom("provider", "model", "show", "--output", "table", MINILM),
            ),
            onboard_operations.record_load_test,
        ),
        Step(
            f"{SERVE_CONTRACT}:stop",
            "serve",
            "hoster",
            "stop the clean room (plaintext mounts removed)",
            (cleanroom("hoster", "deployment", "stop", "--contract-id", SERVE_CONTRACT, services=True),),
            perform_each,
        ),
    ]
    return steps


def build_steps(base: str | None = None) -> list[Step]:
    """The scenario's steps; ``base`` (a `model package init --base`) packages another model than
    the shipped MiniLM (the tests' tiny BERT)."""
    steps = consortium_setup(PERSONAS, perform_each) + _package_steps(base)
    steps += _onboarding_steps("onboard-minilm", MINILM, PACKAGE_FOLDER, "sentiment classifier", "verified")
    steps += _onboarding_steps(
        "onboard-pickled", PICKLED, PICKLED_FOLDER, "the same classifier with a pickle", "vulnerable"
    )
    return steps + _regression_steps() + _publish_steps() + _serve_steps()


def summarise(scenario: Scenario) -> dict[str, Any]:
    """The results part of ``cleanroom demo --scenario onboard --output json`` (camelCase)."""
    models = scenario.state.results.get("models", {})
    verified, pickled = models.get(MINILM, {}), models.get(PICKLED, {})
    shown = ("version", "status", "published", "history", "writers")
    findings = {key: pickled.get("details", {}).get(key) for key in ("reasons", "findings")}
    seconds = verified.get("secondsToEnd")
    return {
        "buildPackageSeconds": scenario.state.durations_s.get("build-package"),
        "onboardToVerifiedSeconds": seconds,
        "targetSeconds": TARGET_SECONDS,
        "withinTarget": seconds is not None and seconds <= TARGET_SECONDS,
        "verified": {key: verified.get(key) for key in shown},
        "vulnerable": {key: pickled.get(key) for key in shown} | findings,
        "regression": scenario.state.results.get("regression"),
        "loadtest": scenario.state.results.get("loadtest"),
    }


def definition(base: str | None = None) -> ScenarioDefinition:
    """The scenario over the shipped MiniLM, or over ``base`` (see ``build_steps``)."""
    return ScenarioDefinition(
        name=NAME,
        personas=PERSONAS,
        phases=PHASES,
        steps=tuple(build_steps(base)),
        contracts=(contract_of(MINILM), contract_of(PICKLED), REGRESSION_CONTRACT, SERVE_CONTRACT),
        consortium_steps=frozenset({*(f"init:{p}" for p in PERSONAS), "services-up"}),
        summarise=summarise,
    )


ONBOARD = definition()
