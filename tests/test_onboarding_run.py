"""The onboarding workload, run for real over real packages, its statuses routed to real governance.

The workload (containers/onboarding) runs in-process over a package scaffolded from the tiny BERT
(real ONNX Runtime inference); its ``model_status`` telemetry is tailed and claimed by the
runtime's router (core.runtime.model_status) through the runtime's own TelemetryForwarder, and
sent to the governance service on loopback TLS with the clean room's attestation. The registry
must end where the package deserves: verified, vulnerable (a pickle, never loaded), toBeRetried
then verifyFailed (a wrapper that times out), verifyFailed (an output outside its schema, an older
python, an unpinned requirement, an init that raises), vulnerable (a pickle in a torch zip, a numpy
object array, a link out of the package, ONNX external data outside it); and a
package whose bytes differ from the registered ones moves no status at all.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from containers.onboarding.__main__ import main as onboarding_main
from core.governance.onboarding_contract import onboarding_env
from core.onboarding.package import check_package
from core.onboarding.package_digest import package_sha256
from core.onboarding.scaffold import scaffold_package
from core.runtime.local import TelemetryForwarder, _TelemetryTail
from core.runtime.model_status import ModelStatusRecords
from tests.governance_support import Attester, Consortium, start_consortium
from tests.model_package_corpus import CORPUS, global_pickle
from tests.model_registry_support import CONSUMER, PROVIDER, OnboardingRoom, onboarding_contract

TO_DEPLOYED = ["downloaded", "scanning", "environmentCreated", "deployed"]


@pytest.fixture(scope="module")
def attester(tmp_path_factory: pytest.TempPathFactory) -> Attester:
    return Attester(tmp_path_factory.mktemp("attestation"))


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory, attester: Attester) -> Iterator[Consortium]:
    consortium = start_consortium(
        tmp_path_factory.mktemp("gov") / "service", window_seconds=60, attestation=attester.spec
    )
    yield consortium
    consortium.close()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT through the project's preparation, scaffolded as a text-classification package."""
    from core.ml.model_preparation import prepare
    from tests.ml_tiny_model import build_tiny_base

    root = tmp_path_factory.mktemp("prepared")
    build_tiny_base(root / "base")
    prepared = prepare(root / "base", root / "model", max_length=32).output
    return scaffold_package(prepared, root / "package", task="text-classification")


@dataclass
class Run:
    code: int
    recorded: list[tuple[str, str, str]]
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    forwarded: list[dict[str, Any]] = field(default_factory=list)


def copy_of(package: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(package, tmp_path / "package", symlinks=True))


def onboard_and_run(
    gov: Consortium,
    attester: Attester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    registered: Path,
    *,
    mounted: Path | None = None,
) -> Run:
    """Onboard ``registered`` (status created), accept its onboarding contract, run the workload
    over ``mounted`` (default: the same folder) and route its statuses to governance."""
    package_hash, wrapper_hash = package_sha256(registered), check_package(registered).source_sha256
    gov.clients[PROVIDER].onboard_model(name, "1", package_hash=package_hash, wrapper_hash=wrapper_hash)
    contract_id = f"onboarding-{name}"
    room = OnboardingRoom(
        gov, attester, contract_id, onboarding_contract(gov, contract_id, name, "1", package_hash, wrapper_hash)
    )
    run = Run(0, [])
    records = ModelStatusRecords(
        room.client, contract_id, room.token, lambda kind, /, **detail: run.notes.append((kind, detail))
    )
    telemetry = tmp_path / "run" / "telemetry.jsonl"
    telemetry.parent.mkdir()
    telemetry.touch()
    forwarder = TelemetryForwarder(_TelemetryTail(telemetry), forward=run.forwarded.append, claim=records.take)
    for key, value in onboarding_env(name, "1", package_hash, wrapper_hash).items():
        monkeypatch.setenv(key, value)
    forwarder.start()
    try:
        run.code = onboarding_main(
            ["--package-dir", str(mounted or registered), "--status-file", str(telemetry), "--backoff-seconds", "0"]
        )
    finally:
        forwarder.stop()
    run.recorded = records.recorded
    return run


def registry_version(gov: Consortium, name: str) -> dict[str, Any]:
    return dict(gov.clients[CONSUMER].model(name)["versions"]["1"])


def test_a_valid_package_ends_verified(
    gov: Consortium, attester: Attester, package: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = onboard_and_run(gov, attester, monkeypatch, tmp_path, "tiny-bert", package)
    assert run.code == 0 and not run.notes and not run.forwarded  # statuses are claimed, never telemetry
    version = registry_version(gov, "tiny-bert")
    assert [h["status"] for h in version["history"]] == ["created", *TO_DEPLOYED, "verified"]
    assert [status for _, _, status in run.recorded] == [*TO_DEPLOYED, "verified"]
    assert version["status"] == "verified"
    assert version["details"]["sampleValid"] is True and version["details"]["outputFields"] == ["label", "score"]
    environment = version["history"][3]["details"]
    assert environment["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert set(environment["imagePackages"]) == {"onnxruntime", "tokenizers", "numpy"}
    assert environment["wrapperHash"] == version["wrapperHash"]
    assert version["history"][1]["details"]["packageHash"] == version["packageHash"]


def test_a_pickle_bearing_package_ends_vulnerable_with_the_reason_and_is_never_loaded(
    gov: Consortium, attester: Attester, package: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pickled = copy_of(package, tmp_path)
    marker = tmp_path / "payload-ran"
    (pickled / "model" / "extra.pkl").write_bytes(global_pickle("os", "system", f"touch {marker}"))
    run = onboard_and_run(gov, attester, monkeypatch, tmp_path, "pickled", pickled)
    assert run.code == 0
    version = registry_version(gov, "pickled")
    assert [h["status"] for h in version["history"]] == ["created", "downloaded", "scanning", "vulnerable"]
    details = version["details"]
    assert details["reasons"] == ["pickle"]
    assert any(line.startswith("model/extra.pkl") and "pickle" in line for line in details["findings"]), details
    assert not marker.exists()


PLANTED = ("torch-zip-bin", "numpy-object-npy", "symlink-to-etc-passwd", "onnx-external-data-traversal")


@pytest.mark.parametrize("malicious", [m for m in CORPUS if m.name in PLANTED], ids=lambda m: m.name)
def test_a_package_with_a_planted_payload_ends_vulnerable_naming_the_file(
    gov: Consortium,
    attester: Attester,
    package: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    malicious: Any,
) -> None:
    """More broken packages from the scan's corpus, each through the whole onboarding run: a
    pickle in a torch zip, a numpy object array, a link out of the package, ONNX external data
    outside it. Each ends vulnerable with the corpus's reason and the file named; none runs."""
    planted = copy_of(package, tmp_path)
    marker = tmp_path / "payload-ran"
    malicious.plant(planted, marker)
    run = onboard_and_run(gov, attester, monkeypatch, tmp_path, f"planted-{malicious.name}", planted)
    assert run.code == 0
    version = registry_version(gov, f"planted-{malicious.name}")
    assert [h["status"] for h in version["history"]] == ["created", "downloaded", "scanning", "vulnerable"]
    assert malicious.reason in version["details"]["reasons"]
    assert any(line.startswith(malicious.path) for line in version["details"]["findings"]), version["details"]
    assert not marker.exists()


def test_a_transient_error_is_retried_with_backoff_then_fails(
    gov: Consortium, attester: Attester, package: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    flaky = copy_of(package, tmp_path)
    source = (flaky / "src" / "inference.py").read_text()
    original = "        return self.inference_batch([record])[0]\n"
    assert original in source
    (flaky / "src" / "inference.py").write_text(
        source.replace(original, '        raise TimeoutError("the model did not answer within 5 s")\n')
    )
    run = onboard_and_run(gov, attester, monkeypatch, tmp_path, "flaky", flaky)
    assert run.code == 0
    history = registry_version(gov, "flaky")["history"]
    assert [h["status"] for h in history] == [
        "created", *TO_DEPLOYED, "toBeRetried", *TO_DEPLOYED, "toBeRetried", *TO_DEPLOYED, "verifyFailed",
    ]  # fmt: skip
    retries = [h["details"] for h in history if h["status"] == "toBeRetried"]
    assert [(r["attempt"], r["backoffSeconds"]) for r in retries] == [(1, 0.0), (2, 0.0)]
    assert "TimeoutError: the model did not answer within 5 s" in retries[0]["reason"]
    assert "still failing after 3 attempts" in history[-1]["details"]["reason"]


def test_an_output_outside_its_schema_ends_verify_failed(
    gov: Consortium, attester: Attester, package: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = copy_of(package, tmp_path)
    source = (broken / "src" / "inference.py").read_text()
    original = 'return {"label": self.labels[label_id], "score": float(probabilities[label_id])}'
    assert original in source
    (broken / "src" / "inference.py").write_text(
        source.replace(original, 'return {"label": self.labels[label_id], "score": 2.0}')
    )
    run = onboard_and_run(gov, attester, monkeypatch, tmp_path, "overconfident", broken)
    assert run.code == 0
    version = registry_version(gov, "overconfident")
    assert version["status"] == "verifyFailed"
    assert version["details"]["reason"] == "output.score breaks maximum (the wrapper's output schema)"


OLDER_PYTHON = f"3.{sys.version_info.minor - 1}"


def _older_python(root: Path) -> None:
    settings = root / "src" / "settings.yml"
    running = f'python: "{sys.version_info.major}.{sys.version_info.minor}"'
    assert running in settings.read_text()
    settings.write_text(settings.read_text().replace(running, f'python: "{OLDER_PYTHON}"'))


def _unpinned_requirement(root: Path) -> None:
    (root / "src" / "requirements.txt").write_text("requests\n")


def _init_raises(root: Path) -> None:
    source = root / "src" / "inference.py"
    original = "        folder = Path(model_dir)\n"
    assert original in source.read_text()
    source.write_text(source.read_text().replace(original, '        raise RuntimeError("no GPU found")\n' + original))


@pytest.mark.parametrize(
    ("name", "breaks", "reached", "reason"),
    [
        ("older-python", _older_python, ["downloaded", "scanning"], f"needs python {OLDER_PYTHON}, the clean room"),
        ("unpinned", _unpinned_requirement, ["downloaded", "scanning"], "src/requirements.txt"),
        ("no-gpu", _init_raises, ["downloaded", "scanning", "environmentCreated"], "the wrapper did not load"),
    ],
)
def test_a_broken_package_ends_verify_failed_with_the_reason_where_it_broke(
    gov: Consortium,
    attester: Attester,
    package: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    breaks: Any,
    reached: list[str],
    reason: str,
) -> None:
    broken = copy_of(package, tmp_path)
    breaks(broken)
    run = onboard_and_run(gov, attester, monkeypatch, tmp_path, name, broken)
    assert run.code == 0 and not run.notes
    version = registry_version(gov, name)
    assert [h["status"] for h in version["history"]] == ["created", *reached, "verifyFailed"]
    assert reason in version["details"]["reason"], version["details"]


def test_other_bytes_than_the_registered_ones_move_no_status(
    gov: Consortium,
    attester: Attester,
    package: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    swapped = Path(shutil.copytree(package, tmp_path / "swapped"))
    (swapped / "model" / "config.json").write_text((swapped / "model" / "config.json").read_text() + " ")
    run = onboard_and_run(gov, attester, monkeypatch, tmp_path, "swapped", package, mounted=swapped)
    assert run.code == 2 and run.recorded == []
    error = capsys.readouterr().err
    assert "swapped 1 stays created" in error and "not the packageHash" in error
    assert registry_version(gov, "swapped")["status"] == "created"


def test_a_status_for_a_model_the_contract_does_not_onboard_is_refused_and_noted(
    gov: Consortium, attester: Attester, package: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = onboard_and_run(gov, attester, monkeypatch, tmp_path, "honest", package)
    assert run.code == 0
    notes: list[tuple[str, dict[str, Any]]] = []
    policy_hash = gov.clients[CONSUMER].accepted_policy_hash("onboarding-honest")
    assert policy_hash is not None
    room = OnboardingRoom(gov, attester, "onboarding-honest", policy_hash)
    records = ModelStatusRecords(
        room.client, "onboarding-honest", room.token, lambda kind, /, **detail: notes.append((kind, detail))
    )
    forged = {"event": "model_status", "model": "tiny-bert", "version": "1", "status": "downloaded", "details": {}}
    assert records.take(forged) is True and records.recorded == []
    assert notes[0][0] == "model_status_refused"
    assert "does not onboard model 'tiny-bert' version '1'" in notes[0][1]["reason"]
    assert records.take({"event": "step", "step": 1}) is False  # other telemetry passes through


def test_the_onboarding_clean_room_verifies_a_package_in_the_sandbox(package: Path, tmp_path: Path) -> None:
    """The whole path: the provider uploads the package as an encrypted datasource, the contract's
    onboarding application runs sandboxed (bubblewrap) over its decrypted mount, and the runtime
    routes each status to governance, which ends the version verified."""
    from core.config.party import add_application
    from core.runtime import sandbox
    from tests.runtime_world import World

    if sandbox.bwrap_path() is None:
        pytest.skip("bubblewrap is not installed: the sandboxed run needs it")
    world = World.create(tmp_path / "world")
    try:
        world.setup_assets(source_folder=package)  # provider's datasource "model" holds the package
        package_hash, wrapper_hash = package_sha256(package), check_package(package).source_sha256
        world.clients["provider"].onboard_model("sandboxed", "1", package_hash=package_hash, wrapper_hash=wrapper_hash)
        add_application(
            world.parties["hoster"],
            name="onboarding",
            entrypoint="containers/onboarding",
            command=["python", "-m", "containers.onboarding", "--package-dir", "/mnt/remote/package"],
            mounts=[{"source": "model", "target": "/mnt/remote/package"}],
            env=onboarding_env("sandboxed", "1", package_hash, wrapper_hash),
        )
        world.accept_contract("onboard-sandboxed")
        outcome = world.runtime().run("onboard-sandboxed")
        assert outcome.exit_codes == {"onboarding": 0}
        version = world.clients["consumer"].model("sandboxed")["versions"]["1"]
        assert [h["status"] for h in version["history"]] == ["created", *TO_DEPLOYED, "verified"]
        assert {h["writer"] for h in version["history"][1:]} == {"attested:onboard-sandboxed"}
        statuses = [e["data"]["status"] for e in world.events("onboard-sandboxed") if e["type"] == "model_status"]
        assert statuses == [*TO_DEPLOYED, "verified"]
    finally:
        world.close()
