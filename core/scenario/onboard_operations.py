"""The step bodies of the onboarding scenario: packages built, versions registered, clean rooms followed.

Like ``operations``, each body performs exactly its step's invocations through the step
persona's own engine. What is particular here: the hoster's onboarding application pins the
hashes the provider registered, read back from governance (``model show``) rather than taken
from the provider's folder, so the application every member votes names the registered bytes;
and a version's status is never the scenario's word: the body reads what the clean room wrote
to the ledger and refuses a version that did not end where its package deserves.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.crypto.secret_file import write_public_file
from core.engine import Proposal
from core.errors import IntegrityError, InvalidInputError, NotFoundError, ServiceUnavailableError
from core.governance.model_registry import ModelStatus
from core.governance.models import Action, ProposalState
from core.governance.serving_contract import VERSION_ENV as SERVE_VERSION_ENV
from core.onboarding.workload_env import ONBOARD_VERSION_ENV, REGRESSION_BASELINE_ENV, REGRESSION_CANDIDATE_ENV
from core.scenario import operations
from core.scenario.steps import Invocation, Perform, Reporter, Step

if TYPE_CHECKING:
    from core.onboarding.loadtest import LoadTestReport
    from core.scenario.run import Scenario

ONBOARDING_TIMEOUT_S = 600.0
SERVING_TIMEOUT_S = 180.0  # a started clean room announces its ingress, then its model loads
# What the provider's pickle-bearing package carries: a classic code-running pickle (it would call
# builtins.print if loaded; it never is: the allow-list scan stops the package at `scanning`).
CODE_RUNNING_PICKLE = b"cbuiltins\nprint\n(S'this pickle ran code in the clean room'\ntR."
# The placeholders of the onboarding application's --env, and the registry field each stands for.
HASH_PLACEHOLDERS = {"PACKAGE_SHA256": "packageHash", "WRAPPER_SHA256": "wrapperHash"}


def _persona(invocation: Invocation) -> str:
    if invocation.persona is None:
        raise InvalidInputError(f"`{invocation.narration()}` names no workspace", hint="fix the scenario definition")
    return invocation.persona


def _base(scenario: Scenario, invocation: Invocation) -> str | Path | None:
    """`--base`, a folder under W/ as a real path; none means the offline all-MiniLM-L6-v2."""
    if not invocation.has("--base"):
        return None
    base = invocation.value("--base")
    return scenario.path(base) if base.startswith("W/") else base


def build_package(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`model package init --task text-classification --output-dir D`: the shipped MiniLM
    classifier as a model package (prepared, exported, scaffolded, checked)."""
    from core.ml.classifier_package import build_classifier_package
    from core.onboarding.package import check_package

    init = step.invocation("model", "package", "init")
    output = scenario.path(init.value("--output-dir"))
    if not (output.is_dir() and check_package(output).ok):
        shutil.rmtree(output, ignore_errors=True)  # a half-written package from an interrupted run
        task = f"{_persona(init)}: model package init"
        build_classifier_package(
            output, base=_base(scenario, init), on_stage=lambda stage: reporter.progress(task, 0, None, stage)
        )
    report = check_package(output)
    return f"package {output.name}: wrapper {report.wrapper_class}, source sha256 {report.source_sha256[:16]}"


def build_pickled_package(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`cp -r GOOD BROKEN`, then `write BROKEN/model/extra.pkl`: the good package with one
    code-running pickle beside its weights, which `model package check` would flag (the
    provider onboards it anyway: the clean room must find it on its own)."""
    (copy,) = [i for i in step.invocations if i.program == "cp"]
    (write,) = [i for i in step.invocations if i.program == "write"]
    source, target = (scenario.path(word) for word in copy.args[-2:])
    pickle_file = scenario.path(write.args[0])
    if not pickle_file.is_file():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, symlinks=True)
        write_public_file(pickle_file, CODE_RUNNING_PICKLE)
    return f"{target.name}: a copy of {source.name} plus {pickle_file.relative_to(target)} (a code-running pickle)"


def _registered(scenario: Scenario, persona: str, name: str) -> dict[str, Any] | None:
    """The model as the registry holds it, or None before it was onboarded."""
    try:
        return scenario.engine(persona).model(name)
    except NotFoundError:
        return None


def onboard(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`model onboard --package P --name N --version V`: the package's own hashes registered as a
    new version (created). Unlike the verb, the body registers a package that fails its local check
    (the pickled one), as any provider could through the registry API: a local check is the
    provider's own, so what the clean room makes of such a package is the point of the scenario."""
    from core.onboarding.package import check_package
    from core.onboarding.package_digest import package_sha256

    line = step.invocation("model", "onboard")
    persona, name, version = _persona(line), line.value("--name"), line.value("--version")
    folder = scenario.path(line.value("--package"))
    registered = _registered(scenario, persona, name)
    if registered is None or version not in registered["versions"]:
        report = check_package(folder)
        if not report.ok:
            reporter.note(
                f"the CLI's own check refuses {folder.name} ({len(report.findings)} finding(s)); "
                "registered through the registry API, which takes any hashes: the clean room must scan"
            )
        scenario.engine(persona).onboard_model(
            name,
            version,
            package_hash=package_sha256(folder),
            wrapper_hash=report.source_sha256,
            description=line.value("--description"),
        )
        registered = scenario.engine(persona).model(name)
    entry = registered["versions"][version]
    hashes = f"package {entry['packageHash'][:16]}, wrapper {entry['wrapperHash'][:16]}"
    return f"{name} {version}: {entry['status']} ({hashes})"


def add_pinned_application(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`model show N`, then `config add-application ... --env ...=PACKAGE_SHA256 ...` (and any other
    config verb of the step): the hoster reads the hashes the provider registered for the version the
    env names (onboarded or served) and pins them in the application every member votes."""
    show = step.invocation("model", "show")
    name = show.args[-1]
    registered = _registered(scenario, _persona(show), name)
    if registered is None:
        raise NotFoundError(
            f"model '{name}' is not registered", hint="the provider runs `cleanroom model onboard` first"
        )
    add = step.invocation("config", "add-application")
    env = dict(value.partition("=")[::2] for value in add.values("--env"))
    version = env.get(ONBOARD_VERSION_ENV) or env[SERVE_VERSION_ENV]
    if version not in registered["versions"]:
        raise NotFoundError(f"model '{name}' has no version '{version}'", hint="register it first")
    entry = registered["versions"][version]
    args, pins = list(add.args), []
    for index, word in enumerate(args):
        key, _, value = word.partition("=")
        if index and args[index - 1] == "--env" and value in HASH_PLACEHOLDERS:
            field = HASH_PLACEHOLDERS[value]
            args[index] = f"{key}={entry[field]}"
            pins.append(f"{field.removesuffix('Hash')} {entry[field][:16]}")
    pinned = dataclasses.replace(add, args=tuple(args))
    rest = tuple(i for i in step.invocations if i.verb[0] == "config" and i is not add)
    added = operations.perform_each(scenario, dataclasses.replace(step, invocations=(pinned, *rest)), reporter)
    return f"{added}; pins {name} {version} ({', '.join(pins)})"


def _history_seconds(history: list[dict[str, Any]], status: str) -> float | None:
    """Seconds from the version's `created` to its first ``status``, by the ledger's own times."""
    at = {entry["status"]: float(entry["at"]) for entry in reversed(history)}
    return round(at[status] - at[ModelStatus.CREATED], 3) if status in at and ModelStatus.CREATED in at else None


def ended_as(model: dict[str, Any], expected: str, version: str = "1") -> dict[str, Any]:
    """The registry's word on a model's ``version``, which must be ``expected``: what the scenario
    records of it (statuses, their writers, the last details, seconds from created)."""
    entry = model["versions"][version]
    history = entry["history"]
    statuses = [h["status"] for h in history]
    if entry["status"] != expected:
        raise IntegrityError(
            f"{model['name']} {version} ended {entry['status']} ({' -> '.join(statuses)}), not {expected}",
            hint=f"see `cleanroom model show {model['name']}` for the details of each status",
        )
    return {
        "version": version,
        "status": entry["status"],
        "history": statuses,
        "writers": sorted({h["writer"] for h in history[1:]}),
        "details": entry["details"],
        "secondsToEnd": _history_seconds(history, expected),
    }


def follow_onboarding(expected: str, version: str) -> Perform:
    """`deployment start`, then `model versions N` until the clean room ends: ``version`` must end
    ``expected`` (verified for the shipped package, vulnerable for the pickled one), by the
    clean room's own ledger entries."""

    def perform(scenario: Scenario, step: Step, reporter: Reporter) -> str:
        start = step.invocation("deployment", "start")
        contract_id = start.value("--contract-id")
        versions = step.invocation("model", "versions")
        name = versions.args[-1]
        entry = scenario.engine(_persona(versions)).model(name)["versions"][version]
        if entry["status"] == ModelStatus.CREATED:  # a resumed run whose clean room already ran does not run it again
            operations.perform_each(scenario, dataclasses.replace(step, invocations=(start,)), reporter)
        _wait_for_end(scenario, _persona(start), contract_id, "onboarding")
        ended = ended_as(scenario.engine(_persona(versions)).model(name), expected, version)
        scenario.state.results.setdefault("models", {})[name] = ended
        why = ended["details"].get("reasons") or ended["details"].get("reason") or ""
        return f"{name} {ended['version']}: {' -> '.join(ended['history'])} in {ended['secondsToEnd']} s" + (
            f" ({why})" if why else ""
        )

    return perform


def _wait_for_end(scenario: Scenario, persona: str, contract_id: str, what: str) -> None:
    """Until the clean room has ended; refused unless every workload exited 0."""
    hoster = scenario.engine(persona)
    deadline = time.monotonic() + ONBOARDING_TIMEOUT_S
    while (status := hoster.deployment_status(contract_id)) is not None and status.alive:
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(
                f"{what} clean room '{contract_id}' did not end within {ONBOARDING_TIMEOUT_S:.0f}s",
                hint=f"stop it with `cleanroom deployment stop --contract-id {contract_id}`",
            )
        time.sleep(0.5)
    if status is None or any(code != 0 for code in status.exit_codes.values()):
        raise ServiceUnavailableError(
            f"{what} clean room '{contract_id}' ended {status.state if status else 'unrecorded'} "
            f"(exit codes {status.exit_codes if status else {}})",
            hint=f"see `cleanroom deployment logs --contract-id {contract_id}`",
        )


# -- the regression run ---------------------------------------------------------------------------------
CASE_STRIDE = 5  # every fifth row of the vendored test split: both labels, ~210 cases


def write_cases(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`write FOLDER/cases.jsonl` (every fifth row of the vendored rotten_tomatoes test split as
    ``{text, label}``), then the upload and the report sink, each by its own verb."""
    import json

    import pyarrow.parquet as pq

    from core.ml.datasets import VENDORED_DIR

    (write,) = [i for i in step.invocations if i.program == "write"]
    cases = scenario.path(write.args[0])
    if not cases.is_file():
        table = pq.read_table(VENDORED_DIR / "rotten_tomatoes" / "test.parquet", columns=["text", "label"])
        rows = zip(table.column("text").to_pylist(), table.column("label").to_pylist(), strict=True)
        lines = [json.dumps({"text": t, "label": int(y)}) for i, (t, y) in enumerate(rows) if i % CASE_STRIDE == 0]
        cases.parent.mkdir(parents=True, exist_ok=True)
        write_public_file(cases, ("\n".join(lines) + "\n").encode())
    rest = tuple(i for i in step.invocations if i.program == "cleanroom")
    done = operations.perform_each(scenario, dataclasses.replace(step, invocations=rest), reporter)
    count = sum(1 for _ in cases.open(encoding="utf-8"))
    return f"{count} cases in {cases.name}; {done}"


REGRESSION_PLACEHOLDERS = {"CANDIDATE_SHA256": REGRESSION_CANDIDATE_ENV, "BASELINE_SHA256": REGRESSION_BASELINE_ENV}


def add_regression_application(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`model show N`, then `config add-application ... --env ...=CANDIDATE_SHA256 ...`: the hoster
    reads both versions' package hashes from the registry and pins them, with the gate, in the
    application every member votes."""
    show = step.invocation("model", "show")
    name = show.args[-1]
    registered = _registered(scenario, _persona(show), name)
    if registered is None:
        raise NotFoundError(
            f"model '{name}' is not registered", hint="the provider runs `cleanroom model onboard` first"
        )
    add = step.invocation("config", "add-application")
    env = dict(value.partition("=")[::2] for value in add.values("--env"))
    args = list(add.args)
    for index, word in enumerate(args):
        key, _, value = word.partition("=")
        if index and args[index - 1] == "--env" and value in REGRESSION_PLACEHOLDERS:
            version = env[REGRESSION_PLACEHOLDERS[value]]
            if version not in registered["versions"]:
                raise NotFoundError(f"model '{name}' has no version '{version}'", hint="register it first")
            args[index] = f"{key}={registered['versions'][version]['packageHash']}"
    pinned = dataclasses.replace(add, args=tuple(args))
    added = operations.perform_each(scenario, dataclasses.replace(step, invocations=(pinned,)), reporter)
    return f"{added}; pins {name} versions by their registry package hashes"


def follow_regression(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`deployment start`, then `model show N`: the clean room itself wrote the candidate's
    regression result (the scenario never writes one); the run is not repeated once it is there."""
    start = step.invocation("deployment", "start")
    contract_id = start.value("--contract-id")
    show = step.invocation("model", "show")
    name = show.args[-1]
    reader = scenario.engine(_persona(show))

    def written() -> tuple[str, dict[str, Any]] | None:
        for version, entry in reader.model(name)["versions"].items():
            regression = entry.get("regression")
            if regression is not None and regression.get("contractId") == contract_id:
                return version, regression
        return None

    if written() is None:
        operations.perform_each(scenario, dataclasses.replace(step, invocations=(start,)), reporter)
        _wait_for_end(scenario, _persona(start), contract_id, "regression")
    found = written()
    if found is None:
        raise IntegrityError(
            f"the regression clean room '{contract_id}' ended but {name} has no regression result of it",
            hint=f"see the audit events of {contract_id} (model_regression_refused) for why",
        )
    version, regression = found
    scenario.state.results["regression"] = {"version": version} | regression
    verdict = "passed" if regression["passed"] else "FAILED: " + "; ".join(regression["verdict"]["reasons"])
    return (
        f"{name} {version} against {regression['baselineVersion']} on {regression['cases']} cases: accuracy "
        f"{regression['baseline']['accuracy']:.4f} -> {regression['candidate']['accuracy']:.4f}, "
        f"McNemar p {regression['mcnemarP']:.3g}, gate {verdict}"
    )


def propose_publish(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`model publish N --version V`: a proposal every member must accept (none if one is open or
    the version is already published)."""
    line = step.invocation("model", "publish")
    name, version = line.args[-1], line.value("--version")
    engine = scenario.engine(_persona(line))
    if engine.model(name)["versions"][version]["published"]:
        return f"{name} {version} is already published"
    if _open_publish(scenario, _persona(line), name, version):
        return f"publishing {name} {version} is already proposed"
    proposal = engine.propose_publish_model(name, version)
    return f"proposed publishing {name} {version} ({proposal['proposalId'][:8]}); every member must accept"


def _open_publish(scenario: Scenario, persona: str, name: str, version: str | None = None) -> list[Proposal]:
    """The open proposals publishing ``name`` (``version`` only, if given)."""
    return [
        p
        for p in scenario.engine(persona).proposals()
        if p.action == Action.PUBLISH_MODEL_VERSION
        and p.state == ProposalState.OPEN
        and p.content.get("model") == name
        and version in (None, p.content.get("version"))
    ]


def vote_publish(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`model versions N` (the member reads the status and the hashes it voted in the onboarding
    contract), then `proposal vote --proposal-id ID --action accept` on each open proposal
    publishing N; governance itself refuses to publish a version that is not verified."""
    versions = step.invocation("model", "versions")
    persona, name = _persona(versions), versions.args[-1]
    engine = scenario.engine(persona)
    engine.model(name)
    cast = []
    for proposal in _open_publish(scenario, persona, name):
        version = str(proposal.content["version"])
        if engine.member_id in proposal.ballots:
            continue
        after = engine.vote(proposal.proposal_id, accept=True)
        cast.append(f"publish {name} {version} {proposal.proposal_id[:8]} -> {after.state}")
    return "; ".join(cast) if cast else "nothing open to vote on"


def read_versions(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`model versions N` for each model: the published flag and each version's last status, as
    every member reads them from governance."""
    lines = []
    for line in step.invocations_of("model", "versions"):
        name = line.args[-1]
        recorded = scenario.state.results["models"][name]
        for version, entry in scenario.engine(_persona(line)).model(name)["versions"].items():
            if version == recorded["version"]:
                recorded["published"] = entry["published"]
            lines.append(f"{name} {version} {entry['status']}{' (published)' if entry['published'] else ''}")
    return "; ".join(lines)


# -- the served version's load test ---------------------------------------------------------------------
def _load_test(scenario: Scenario, line: Invocation, reporter: Reporter) -> LoadTestReport:
    """`model loadtest` as the step narrates it. A clean room just started answers only once its
    model has loaded, and the load test's own probe (one request, before any step) refuses until
    then: it is run again, as a user would, until it starts or ``SERVING_TIMEOUT_S`` has passed."""
    from core.onboarding.loadtest import DEFAULT_ROUTE

    engine = scenario.engine(_persona(line))
    contract_id = line.value("--contract")
    deadline = time.monotonic() + SERVING_TIMEOUT_S
    waited = False
    while True:
        try:
            return engine.load_test(
                contract_id,
                line.value("--mode"),
                [int(target) for target in line.value("--steps").split(",")],
                duration_s=float(line.value("--duration")),
                slo_ms=float(line.value("--slo-ms")),
                route=DEFAULT_ROUTE,
                on_step=lambda s: reporter.note(
                    f"{s.target} rps: {s.actual_rps:.1f} rps achieved, p50 {s.latency_ms['p50']:.1f} ms, "
                    f"p99 {s.latency_ms['p99']:.1f} ms, {s.ok} ok, {s.failed} failed"
                ),
            )
        except (NotFoundError, ServiceUnavailableError) as exc:  # no ingress yet, or the model still loads
            if time.monotonic() > deadline:
                raise
            if not waited:
                reporter.note(f"{engine.persona} waits for '{contract_id}' to serve ({exc.one_line()})")
                waited = True
            time.sleep(1.0)


def loadtest_headline(loadtest: dict[str, Any]) -> dict[str, Any]:
    """What the summary says of a recorded load test: who recorded it through which contract, the
    plan, and the knee (the highest step within the SLO) with its latencies; None when none held."""
    knee = loadtest.get("knee")
    at_knee = next((s for s in loadtest["steps"] if knee is not None and s["target"] == knee["target"]), None)
    return {
        "contractId": loadtest["contractId"],
        "writer": loadtest["writer"],
        "mode": loadtest["mode"],
        "sloMs": loadtest["sloMs"],
        "steps": [step["target"] for step in loadtest["steps"]],
        "kneeRps": None if knee is None else knee["target"],
        "kneeActualRps": None if knee is None else knee["actualRps"],
        "p50AtKneeMs": None if at_knee is None else at_knee["latencyMs"]["p50"],
        "p99AtKneeMs": None if at_knee is None else at_knee["latencyMs"]["p99"],
    }


def record_load_test(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`model loadtest --contract C ... --record N@V`, then `model show N`: the member's report
    recorded on the version (governance takes it only through a contract serving exactly that
    version), read back from the registry; not run again once this contract's report is there."""
    line = step.invocation("model", "loadtest")
    contract_id = line.value("--contract")
    name, _, version = line.value("--record").rpartition("@")
    engine = scenario.engine(_persona(line))
    recorded = engine.model(name)["versions"][version]["loadtest"]
    if recorded is None or recorded["contractId"] != contract_id:
        report = _load_test(scenario, line, reporter)
        engine.record_load_test(name, version, contract_id, report.as_dict())
    show = step.invocation("model", "show")
    loadtest = scenario.engine(_persona(show)).model(show.args[-1])["versions"][version]["loadtest"]
    headline = loadtest_headline(loadtest)
    scenario.state.results["loadtest"] = {"model": name, "version": version} | headline
    steps = ",".join(str(target) for target in headline["steps"])
    knee = (
        f"knee {headline['kneeRps']} rps ({headline['kneeActualRps']:.1f} achieved), p50 "
        f"{headline['p50AtKneeMs']:.1f} ms, p99 {headline['p99AtKneeMs']:.1f} ms"
        if headline["kneeRps"] is not None
        else "no step held the SLO"
    )
    return f"{name} {version} load test through {contract_id} ({steps} rps, p99 <= {headline['sloMs']:g} ms): {knee}"
