"""Config fragments and their merge: typed, strict, order-independent, conflicts are errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config.canonical import canonical_json, document_hash
from core.config.fragment import (
    Application,
    Fragment,
    LocalStoreSpec,
    Mount,
    NetworkPolicy,
    SinkSetting,
    load_fragment,
    save_fragment,
)
from core.config.merge import merge_fragments, merge_paths
from core.crypto.identity import MemberIdentity
from core.errors import ConflictError, InvalidInputError, NotFoundError


@pytest.fixture(scope="module")
def identities() -> dict[str, MemberIdentity]:
    return {name: MemberIdentity.generate(name) for name in ("consumer", "provider", "hoster")}


def _store(tmp: str = "/srv/store") -> LocalStoreSpec:
    return LocalStoreSpec(path=tmp)


def _consumer(identity: MemberIdentity) -> Fragment:
    return (
        Fragment.new("consumer", identity)
        .with_datasource("training-data", _store())
        .with_datasink("consumer-logs", _store())
        .with_logging(SinkSetting(enabled=True, datasink="consumer-logs"))
        .with_network_policy(NetworkPolicy(inbound_allow=["POST /infer"]))
    )


def _hoster(identity: MemberIdentity) -> Fragment:
    app = Application(
        name="inference",
        owner=identity.member_id,
        entrypoint="containers/inference_server",
        command=["python", "-m", "server"],
        mounts=[Mount(source="model", target="/mnt/model"), Mount(source="training-data", target="/mnt/data")],
        ports=[8080],
        cpu=2,
        memory_gb=4,
        env_names=["MODEL_NAME"],
        env={"LOG_LEVEL": "info"},
    )
    return (
        Fragment.new("hoster", identity)
        .with_application(app)
        .with_network_policy(NetworkPolicy(inbound_allow=["GET /health", "POST /infer"]))
    )


def _provider(identity: MemberIdentity) -> Fragment:
    return (
        Fragment.new("provider", identity).with_datasource("model", _store()).with_datasink("trained-model", _store())
    )


def test_fragment_round_trips_through_json(tmp_path: Path, identities) -> None:
    fragment = _consumer(identities["consumer"])
    save_fragment(tmp_path / "config.json", fragment)
    assert load_fragment(tmp_path) == fragment
    assert load_fragment(tmp_path / "config.json") == fragment
    assert fragment.datasource("training-data").container == "training-data"


def test_merge_is_order_independent_and_hashed(identities) -> None:
    fragments = [_consumer(identities["consumer"]), _hoster(identities["hoster"]), _provider(identities["provider"])]
    one = merge_fragments(fragments)
    other = merge_fragments(reversed(fragments))
    assert one.canonical_json() == other.canonical_json()
    assert one.spec_hash == other.spec_hash == document_hash(json.loads(one.canonical_json()))
    assert one.canonical_json() == canonical_json(one.document())
    assert [p.persona for p in one.parties] == ["consumer", "hoster", "provider"]
    assert [a.name for a in one.datasources] == ["model", "training-data"]
    assert one.network_policy.inbound_allow == ["GET /health", "POST /infer"]
    assert one.network_policy.allow_all_outbound is False
    assert one.logging.owner == identities["consumer"].member_id
    assert one.unresolved_mounts() == []
    one.check_complete()
    assert one.asset("trained-model")[0] == "datasink"


def test_a_partial_view_lists_unresolved_mounts(identities) -> None:
    spec = merge_fragments([_hoster(identities["hoster"])])
    assert spec.unresolved_mounts() == ["inference -> model", "inference -> training-data"]
    with pytest.raises(InvalidInputError, match="inference -> model"):
        spec.check_complete()


def test_duplicate_names_across_parties_are_a_clear_error(identities) -> None:
    clash = Fragment.new("provider", identities["provider"]).with_datasource("training-data", _store())
    with pytest.raises(ConflictError, match="'training-data' is declared by both consumer and provider"):
        merge_fragments([_consumer(identities["consumer"]), clash])


def test_two_logging_owners_conflict(identities) -> None:
    other = (
        Fragment.new("provider", identities["provider"])
        .with_datasink("plogs", _store())
        .with_logging(SinkSetting(enabled=True, datasink="plogs"))
    )
    with pytest.raises(ConflictError, match="logging is enabled by both consumer and provider"):
        merge_fragments([_consumer(identities["consumer"]), other])


def test_same_member_twice_is_an_error(identities) -> None:
    fragment = _consumer(identities["consumer"])
    with pytest.raises(ConflictError, match="given twice"):
        merge_fragments([fragment, fragment])


def test_duplicate_name_inside_a_fragment_is_refused(identities) -> None:
    with pytest.raises(ConflictError, match="already a datasource or datasink"):
        _consumer(identities["consumer"]).with_datasink("training-data", _store())


def test_unknown_datasource_names_the_known_ones(identities) -> None:
    with pytest.raises(NotFoundError, match=r"datasource 'nope' is not in .* \(known: training-data\)"):
        _consumer(identities["consumer"]).datasource("nope")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(extra_field=1), "extra_field: Extra inputs are not permitted"),
        (lambda d: d.update(member_id="0" * 64), "member_id is not the SHA-256 of member_cert"),
        (lambda d: d.update(member_cert="not a cert"), "member_cert is not a PEM X.509 certificate"),
        (lambda d: d["datasources"][0].update(name="Bad Name"), "datasources.0.name"),
        (lambda d: d["datasources"][0]["store"].update(kind="ftp"), "datasources.0.store"),
        (lambda d: d["datasources"][0]["store"].update(path="relative/x"), "must be absolute"),
        (lambda d: d["logging"].update(datasink="nope"), "logging datasink 'nope'"),
        (lambda d: d["network_policy"].update(inbound_allow=["infer"]), "is not 'METHOD /path'"),
        (lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_invalid_fragment_files_name_the_field(tmp_path: Path, identities, mutate, message) -> None:
    document = json.loads(_consumer(identities["consumer"]).to_json())
    mutate(document)
    path = tmp_path / "frag.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InvalidInputError) as caught:
        load_fragment(path)
    line = caught.value.one_line()
    assert "\n" not in line and str(path) in line and message in line


def test_not_json_and_missing_fragments(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="bad.json is not valid JSON"):
        load_fragment(tmp_path / "bad.json")
    with pytest.raises(NotFoundError, match="does not exist"):
        load_fragment(tmp_path / "missing.json")
    with pytest.raises(NotFoundError, match="has no config fragment"):
        merge_paths([tmp_path])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image": "x", "entrypoint": "y"}, "exactly one of image or entrypoint"),
        ({}, "exactly one of image or entrypoint"),
        ({"image": "x", "ports": [0]}, "port 0"),
        ({"image": "x", "cpu": 0}, "above 0"),
        ({"image": "x", "env_names": ["1BAD"]}, "not valid"),
        ({"image": "x", "mounts": [{"source": "a", "target": "relative"}]}, "absolute path"),
        ({"image": "x", "mounts": [{"source": "a", "target": "/m"}, {"source": "b", "target": "/m"}]}, "same target"),
    ],
)
def test_application_rules(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        Application(name="app", owner="o", **kwargs)
