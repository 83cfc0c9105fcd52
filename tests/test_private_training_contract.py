"""Private training in the contract: privacy budgets, pinned uploads and the voted join, each
refusal named, all of it measured, and the CLI flags that declare them."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from core.config.fragment import (
    Application,
    Fragment,
    LocalStoreSpec,
    Mount,
    PrivacyBudget,
    PrivateTraining,
    load_fragment,
)
from core.config.join_spec import JoinSpec
from core.config.merge import merge_fragments, parse_contract_spec
from core.crypto.identity import MemberIdentity
from core.errors import InvalidInputError
from core.governance import constitution
from core.governance.review import render, summarize
from core.keys.measurement import policy_hash
from core.runtime.deployment import PRIVATE_TRAINING_ENV, deployment_spec
from core.storage.locator import open_store
from core.storage.transfer import content_hash
from tests.cli_runner import cleanroom

PINNED = "sha256:" + "ab" * 32
UNIT = "person_id"


def training_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "epsilon": 3.0,
        "delta": 1e-5,
        "batch_size": 64,
        "max_steps": 5,
        "join": {
            "key": UNIT,
            "sources": [
                {"datasource": "texts", "file": "train.parquet", "columns": [UNIT, "text"], "how": "base"},
                {"datasource": "labels", "file": "train.parquet", "columns": [UNIT, "label"], "how": "inner"},
            ],
            "min_rows": 1000,
            "max_rows_per_key": 1,
        },
    }
    document.update(changes)
    return document


@pytest.fixture(scope="module")
def identities() -> dict[str, MemberIdentity]:
    return {name: MemberIdentity.generate(name) for name in ("texts", "labels", "hoster")}


def _provider(identity: MemberIdentity, name: str, column: str) -> Fragment:
    budget = PrivacyBudget(epsilon_total=10, delta=1e-5, privacy_unit=UNIT)
    return (
        Fragment.new(name, identity)
        .with_datasource(name, LocalStoreSpec(path=f"/srv/{name}"), privacy=budget)
        .with_content_hash(name, PINNED)
    )


def _hoster(identity: MemberIdentity, training: dict[str, Any]) -> Fragment:
    app = Application(
        name="dp-trainer",
        owner=identity.member_id,
        entrypoint="containers/dp_trainer",
        command=["python", "-m", "containers.dp_trainer"],
        mounts=[
            Mount(source="texts", target="/mnt/remote/texts"),
            Mount(source="labels", target="/mnt/remote/labels"),
            Mount(source="dp-model", target="/mnt/remote/output"),
        ],
        private_training=PrivateTraining.model_validate(training),
    )
    return (
        Fragment.new("hoster", identity)
        .with_datasink("dp-model", LocalStoreSpec(path="/srv/hoster"))
        .with_application(app)
    )


def contract_document(identities: dict[str, MemberIdentity], **training_changes: Any) -> dict[str, Any]:
    fragments = [
        _provider(identities["texts"], "texts", "text"),
        _provider(identities["labels"], "labels", "label"),
        _hoster(identities["hoster"], training_document(**training_changes)),
    ]
    return merge_fragments(fragments).document()


def _refused(document: dict[str, Any]) -> str:
    with pytest.raises(InvalidInputError) as refused:
        parse_contract_spec(document)
    return refused.value.one_line()


# -- declarations ------------------------------------------------------------------------------
def test_declarations_survive_merge_and_contract_validation(identities) -> None:
    document = contract_document(identities)
    spec = parse_contract_spec(document)
    texts = next(asset for asset in spec.datasources if asset.name == "texts")
    assert texts.privacy == PrivacyBudget(epsilon_total=10, delta=1e-5, privacy_unit=UNIT)
    assert texts.content_hash == PINNED
    training = spec.applications[0].private_training
    assert training is not None and training.accountant == "prv" and training.poisson_sampling
    assert training.join.datasources == ["texts", "labels"]
    constitution.check_contract_data(document)  # what governance runs on contract create / set_contract


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"delta": 0.01}, "delta 0.01 is not below 1/min_rows = 0.001: lower delta"),
        ({"poisson_sampling": False}, "poisson_sampling false is refused"),
        ({"accountant": "gdp"}, "accountant"),
        ({"epsilon": 0}, "epsilon"),
        ({"delta": 1.0}, "delta"),
        ({"clip": 1.0}, "clip"),
        ({"max_steps": 100_001}, "max_steps"),  # above what governance recomputes: refused at the vote
        ({"pooling": "max"}, "pooling"),
    ],
)
def test_a_private_training_section_that_breaks_the_accounting_is_refused(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        PrivateTraining.model_validate(training_document(**changes))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j: j["sources"][0].update(how="inner"), r"the first join source \('texts'\) must have how 'base'"),
        (lambda j: j["sources"][1].update(how="base"), "join source 'labels' is not the first"),
        (lambda j: j["sources"][1].update(columns=["label"]), "does not take the key column 'person_id'"),
        (lambda j: j["sources"][1].update(file="../texts/train.parquet"), "without '..'"),
        (lambda j: j["sources"][1].update(file="/etc/train.parquet"), "must be a relative path"),
        (lambda j: j["sources"][1].update(file="train.csv"), "is not a .parquet file"),
        (lambda j: j.update(min_rows=0), "min_rows"),
        (lambda j: j.update(max_rows_per_key=0), "max_rows_per_key"),
        (lambda j: j.update(drop=["label"]), "label_column 'label' is dropped"),
        (lambda j: j.update(sql="SELECT *"), "sql"),
    ],
)
def test_a_join_spec_that_is_not_well_formed_is_refused(mutate, message) -> None:
    document = training_document()["join"]
    mutate(document)
    with pytest.raises(ValueError, match=message):
        JoinSpec.model_validate(document)


def test_a_privacy_budget_on_a_datasink_is_refused(identities) -> None:
    fragment = Fragment.new("hoster", identities["hoster"]).with_datasink("dp-model", LocalStoreSpec(path="/srv/x"))
    document = fragment.model_dump(mode="json")
    document["datasinks"][0]["privacy"] = {"epsilon_total": 1, "delta": 1e-5, "privacy_unit": UNIT}
    with pytest.raises(ValueError, match="datasink 'dp-model' declares a privacy budget"):
        Fragment.model_validate(document)
    spec = contract_document(identities)
    spec["datasinks"][0]["privacy"] = {"epsilon_total": 1, "delta": 1e-5, "privacy_unit": UNIT}
    assert "datasink 'dp-model' declares a privacy budget" in _refused(spec)


# -- contract-time refusals --------------------------------------------------------------------
def _app(document: dict[str, Any]) -> dict[str, Any]:
    return next(app for app in document["applications"] if app["name"] == "dp-trainer")


def _source(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(asset for asset in document["datasources"] if asset["name"] == name)


def test_a_join_source_without_a_budget_is_refused(identities) -> None:
    document = contract_document(identities)
    _source(document, "labels")["privacy"] = None
    assert "join source 'labels' of application 'dp-trainer' is not a budgeted datasource of the contract" in _refused(
        document
    )


def test_a_join_source_the_application_does_not_mount_is_refused(identities) -> None:
    document = contract_document(identities)
    _app(document)["mounts"] = [m for m in _app(document)["mounts"] if m["source"] != "labels"]
    assert "application 'dp-trainer' does not mount its join source 'labels'; add --mounts src=labels" in _refused(
        document
    )


def test_a_join_key_that_is_not_the_privacy_unit_is_refused(identities) -> None:
    document = contract_document(identities)
    _source(document, "labels")["privacy"]["privacy_unit"] = "customer_id"
    assert (
        "join key 'person_id' of application 'dp-trainer' is not the privacy unit 'customer_id' of datasource 'labels'"
        in _refused(document)
    )


def test_a_delta_above_a_sources_delta_is_refused_not_clamped(identities) -> None:
    document = contract_document(identities, delta=1e-4)
    message = _refused(document)
    assert "delta 0.0001 of application 'dp-trainer' is above datasource 'texts''s delta 1e-05" in message
    assert "lower private_training.delta to at most 1e-05" in message


def test_delta_not_below_one_over_min_rows_is_refused_in_the_contract(identities) -> None:
    document = contract_document(identities)
    _app(document)["private_training"]["delta"] = 0.01
    for source in document["datasources"]:
        source["privacy"]["delta"] = 0.5
    assert "delta 0.01 is not below 1/min_rows = 0.001: lower delta" in _refused(document)


def test_poisson_sampling_off_is_refused_in_the_contract(identities) -> None:
    document = contract_document(identities)
    _app(document)["private_training"]["poisson_sampling"] = False
    assert "poisson_sampling false is refused" in _refused(document)


def test_a_shadow_model_on_budgeted_rows_is_refused(identities) -> None:
    document = contract_document(identities)
    shadow = {
        key: value for key, value in copy.deepcopy(_app(document)).items() if key not in ("private_training", "name")
    }
    shadow["name"] = "shadow"
    shadow["mounts"] = [{"source": "texts", "target": "/mnt/texts"}]
    document["applications"].append(shadow)
    assert (
        "application 'shadow' mounts budgeted datasource 'texts' without private_training:"
        " a non-private model on private rows is refused" in _refused(document)
    )


def test_a_second_private_training_application_is_refused(identities) -> None:
    """Both would write privacy records to the clean room's one telemetry stream: one could
    send a record in the other's name first, so a contract runs one private application."""
    document = contract_document(identities)
    twin = copy.deepcopy(_app(document))
    twin["name"] = "dp-trainer-2"
    document["applications"].append(twin)
    message = _refused(document)
    assert "applications 'dp-trainer', 'dp-trainer-2' all have private_training" in message
    assert "put each private training run in its own contract" in message


def test_a_budgeted_mount_outside_the_join_is_refused(identities) -> None:
    document = contract_document(identities)
    join = _app(document)["private_training"]["join"]
    join["sources"].pop()
    join["sources"][0]["columns"].append("label")
    assert "application 'dp-trainer' mounts budgeted datasource 'labels' that its join does not use" in _refused(
        document
    )


def test_a_run_charging_more_than_a_whole_budget_is_refused(identities) -> None:
    document = contract_document(identities)
    _app(document)["private_training"]["join"]["max_rows_per_key"] = 4  # 4 x 3.0 > 10
    assert "charges epsilon 12 (4 rows per person x 3) but datasource 'texts' has 10 in all" in _refused(document)


def test_a_join_source_without_a_pinned_upload_is_refused(identities) -> None:
    document = contract_document(identities)
    _source(document, "texts")["content_hash"] = None
    assert "datasource 'texts' has no pinned upload (content_hash)" in _refused(document)


def test_governance_runs_the_checks_on_contract_data(identities) -> None:
    document = contract_document(identities)
    _source(document, "labels")["privacy"] = None
    with pytest.raises(InvalidInputError, match="is not a budgeted datasource of the contract"):
        constitution.check_contract_data(document)


# -- measured ----------------------------------------------------------------------------------
def test_the_job_and_every_declaration_are_measured(identities) -> None:
    document = contract_document(identities)
    spec = deployment_spec("dp", document)
    app = spec["applications"][0]
    job = json.loads(app["env"][PRIVATE_TRAINING_ENV])
    assert job["epsilon"] == 3.0 and job["join"]["key"] == UNIT
    assert job["mounts"] == {"texts": "/mnt/remote/texts", "labels": "/mnt/remote/labels"}
    assert app["private_training"]["epsilon"] == 3.0  # governance reads the charge here
    baseline = policy_hash(spec)

    def measured(edit: Any) -> str:
        changed = copy.deepcopy(document)
        edit(changed)
        return policy_hash(deployment_spec("dp", changed))

    assert measured(lambda d: None) == baseline
    assert measured(lambda d: _app(d)["private_training"].update(epsilon=2.0)) != baseline
    assert measured(lambda d: _app(d)["private_training"]["join"].update(max_rows_per_key=2)) != baseline
    assert measured(lambda d: _source(d, "texts")["privacy"].update(epsilon_total=20)) != baseline
    assert measured(lambda d: _source(d, "texts").update(content_hash="sha256:" + "cd" * 32)) != baseline


def test_a_spec_without_private_training_is_generated_as_before(identities) -> None:
    hoster = Fragment.new("hoster", identities["hoster"]).with_application(
        Application(name="plain", owner=identities["hoster"].member_id, entrypoint="containers/x", command=["x"])
    )
    app = deployment_spec("plain", merge_fragments([hoster]).document())["applications"][0]
    assert "private_training" not in app and PRIVATE_TRAINING_ENV not in app["env"]


# -- CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def texts_workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "W" / "texts"
    assert cleanroom("-w", workspace, "config", "init", "--persona", "texts").code == 0
    return workspace


def test_add_datasource_declares_a_privacy_budget(texts_workspace: Path) -> None:
    outcome = cleanroom(
        "-w", texts_workspace, "config", "add-datasource", "--name", "texts",
        "--epsilon-total", "10", "--delta", "1e-5", "--privacy-unit", UNIT, "-o", "json",
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    assert json.loads(outcome.stdout)["privacy"] == {"epsilonTotal": 10.0, "delta": 1e-5, "privacyUnit": UNIT}
    assert load_fragment(texts_workspace).datasource("texts").privacy == PrivacyBudget(
        epsilon_total=10, delta=1e-5, privacy_unit=UNIT
    )
    view = cleanroom("-w", texts_workspace, "config", "view")
    assert "ε 10, δ 1e-05, by person_id" in view.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epsilon-total", "10"], "--epsilon-total, --delta and --privacy-unit declare one privacy budget together"),
        (["--epsilon-total", "10", "--delta", "1.5", "--privacy-unit", UNIT], "privacy budget is not valid: delta"),
        (["--epsilon-total", "-1", "--delta", "1e-5", "--privacy-unit", UNIT], "epsilon_total"),
    ],
)
def test_add_datasource_refuses_a_partial_or_invalid_budget(texts_workspace: Path, flags, message) -> None:
    outcome = cleanroom("-w", texts_workspace, "config", "add-datasource", "--name", "texts", *flags)
    assert outcome.code == 2 and message in outcome.stderr
    assert load_fragment(texts_workspace).datasources == []  # nothing declared


def test_add_datasink_has_no_budget_flags(texts_workspace: Path) -> None:
    outcome = cleanroom("-w", texts_workspace, "config", "add-datasink", "--name", "out", "--epsilon-total", "1")
    assert outcome.code != 0 and "No such option '--epsilon-total'" in outcome.stderr


def test_add_application_reads_and_validates_private_training(tmp_path: Path) -> None:
    hoster = tmp_path / "W" / "hoster"
    assert cleanroom("-w", hoster, "config", "init", "--persona", "hoster").code == 0
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(training_document()))
    bad.write_text(json.dumps(training_document(poisson_sampling=False)))
    base = ["-w", hoster, "config", "add-application", "--entrypoint", "containers/dp_trainer", "--command", "x"]

    refused = cleanroom(*base, "--name", "dp-trainer", "--private-training", bad)
    assert refused.code == 2 and "poisson_sampling false is refused" in refused.stderr
    missing = cleanroom(*base, "--name", "dp-trainer", "--private-training", tmp_path / "none.json")
    assert missing.code == 2 and "none.json does not exist" in missing.stderr
    (tmp_path / "broken.json").write_text("{")
    broken = cleanroom(*base, "--name", "dp-trainer", "--private-training", tmp_path / "broken.json")
    assert broken.code == 2 and "is not readable JSON" in broken.stderr
    assert load_fragment(hoster).applications == []  # nothing added by a refusal

    added = cleanroom(*base, "--name", "dp-trainer", "--private-training", good, "-o", "json")
    assert added.code == 0, added.stderr
    assert json.loads(added.stdout)["privateTraining"]["epsilon"] == 3.0
    training = load_fragment(hoster).applications[0].private_training
    assert training == PrivateTraining.model_validate(training_document())


def test_datasource_upload_pins_the_ciphertext_hash(texts_workspace: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.parquet").write_bytes(b"person_id,text\n")
    assert cleanroom("-w", texts_workspace, "config", "add-datasource", "--name", "texts").code == 0
    outcome = cleanroom(
        "-w", texts_workspace, "datasource", "upload", "--name", "texts", "--dataset-folder", data, "-o", "json"
    )
    assert outcome.code == 0, outcome.stderr
    pinned = json.loads(outcome.stdout)["contentHash"]
    asset = load_fragment(texts_workspace).datasource("texts")
    assert asset.content_hash == pinned == content_hash(open_store(asset.store), asset.container)
    plaintext_digest = hashlib.sha256(b"person_id,text\n").hexdigest()
    assert plaintext_digest not in pinned  # the ciphertext is hashed, never the plaintext
    again = cleanroom("-w", texts_workspace, "datasource", "upload", "--name", "texts", "--dataset-folder", data)
    assert again.code == 0 and "pinned sha256:" in again.stdout
    assert load_fragment(texts_workspace).datasource("texts").content_hash != pinned  # fresh nonces: a new pin


def test_loss_telemetry_is_a_runtime_option_of_the_cli() -> None:
    outcome = cleanroom("governance", "contract", "runtime-option", "set", "--help")
    assert "loss-telemetry" in outcome.stdout


def test_contract_show_names_budgets_pins_and_the_private_run(identities) -> None:
    text = render(summarize(contract_document(identities)))
    assert "privacy budget epsilon 10.0 in all, delta 1e-05, person column person_id" in text
    assert f"pinned upload {PINNED}" in text
    assert "private training epsilon 3.0 per run x 1 rows per person, delta 1e-05, accountant prv" in text
    assert "join on person_id: base texts/train.parquet, inner labels/train.parquet; at least 1000 rows" in text
