"""`cleanroom config ...`: building fragments verb by verb, merging them, and bad input."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from core.config.canonical import document_hash
from tests.cli_runner import Outcome, cleanroom


def _ok(*args: str | Path) -> Outcome:
    outcome = cleanroom(*args)
    assert outcome.code == 0, outcome.stderr
    return outcome


def _error(outcome: Outcome, code: int, *needles: str) -> None:
    assert outcome.code == code, outcome
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("W")
    ws = {name: root / name for name in ("hoster", "provider", "consumer")}
    for name, path in ws.items():
        _ok("-w", path, "config", "init", "--persona", name)
    _ok("-w", ws["provider"], "config", "add-datasource", "--name", "model")
    _ok("-w", ws["provider"], "config", "add-datasink", "--name", "trained-model")
    _ok("-w", ws["consumer"], "config", "add-datasource", "--name", "training-data")
    _ok("-w", ws["consumer"], "config", "set-telemetry", "--datasink", "consumer-telemetry")
    _ok("-w", ws["hoster"], "config", "set-logging", "--datasink", "hoster-logs")
    _ok(
        "-w",
        ws["hoster"],
        "config",
        "add-application",
        "--name",
        "trainer",
        "--entrypoint",
        "containers/trainer",
        "--command",
        "python -m trainer --epochs 1",
        "--mounts",
        "src=model,dst=/mnt/model",
        "--mounts",
        "src=training-data,dst=/mnt/data",
        "--mounts",
        "src=trained-model,dst=/mnt/output",
        "--ports",
        "8080,9090",
        "--cpu",
        "2",
        "--memory",
        "4",
        "--env-names",
        "HF_HOME,SEED",
        "--env",
        "LOG_LEVEL=info",
    )
    _ok("-w", ws["hoster"], "config", "set-network-policy", "--allow", "POST /infer", "--allow", "GET /health")
    return ws


def _view(*paths: Path) -> dict:
    return json.loads(_ok("config", "view", "--configs", *paths, "--output", "json").stdout)


def test_init_writes_keys_0600(parties: dict[str, Path]) -> None:
    for name in ("identity/member_privk.pem", "keys/kek_privk.pem"):
        assert stat.S_IMODE((parties["consumer"] / name).stat().st_mode) == 0o600
    assert (parties["consumer"] / "keys" / "deks" / "training-data.dek.wrapped").is_file()
    assert (parties["consumer"] / "keys" / "deks" / "consumer-telemetry.dek.wrapped").is_file()


def test_init_refuses_an_existing_workspace(parties: dict[str, Path]) -> None:
    _error(cleanroom("-w", parties["consumer"], "config", "init", "--persona", "consumer"), 5, "already exists")


def test_fragment_holds_what_the_verbs_said(parties: dict[str, Path]) -> None:
    fragment = json.loads((parties["hoster"] / "config.json").read_text())
    [app] = fragment["applications"]
    assert app["command"] == ["python", "-m", "trainer", "--epochs", "1"]
    assert app["mounts"][2] == {"source": "trained-model", "target": "/mnt/output"}
    assert app["ports"] == [8080, 9090] and app["cpu"] == 2 and app["memory_gb"] == 4
    assert app["env_names"] == ["HF_HOME", "SEED"] and app["env"] == {"LOG_LEVEL": "info"}
    assert fragment["logging"] == {"enabled": True, "datasink": "hoster-logs"}
    assert fragment["network_policy"] == {"inbound_allow": ["GET /health", "POST /infer"], "allow_all_outbound": False}


def test_view_merges_and_hashes_in_any_order(parties: dict[str, Path]) -> None:
    one = _view(parties["hoster"], parties["provider"], parties["consumer"])
    two = _view(parties["consumer"] / "config.json", parties["hoster"], parties["provider"])
    assert one == two
    assert one["specHash"] == document_hash(one["spec"])
    assert one["unresolvedMounts"] == []
    assert [p["persona"] for p in one["spec"]["parties"]] == ["consumer", "hoster", "provider"]
    assert one["spec"]["telemetry"]["datasink"] == "consumer-telemetry"


def test_view_of_one_workspace_shows_unresolved_mounts(parties: dict[str, Path]) -> None:
    outcome = _ok("-w", parties["hoster"], "config", "view")
    assert "unresolved mount" in outcome.stdout and "spec sha256" in outcome.stdout
    assert _view(parties["hoster"])["unresolvedMounts"] == [
        "trainer -> model",
        "trainer -> training-data",
        "trainer -> trained-model",
    ]


def test_duplicate_names_across_parties(parties: dict[str, Path], tmp_path: Path) -> None:
    clash = tmp_path / "clash"
    _ok("-w", clash, "config", "init", "--persona", "intruder")
    _ok("-w", clash, "config", "add-datasource", "--name", "model")
    _error(
        cleanroom("config", "view", "--configs", parties["provider"], clash),
        5,
        "datasource name 'model' is declared by both intruder and provider",
    )


def test_invalid_fragment_file(parties: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    document = json.loads((parties["consumer"] / "config.json").read_text())
    document["datasources"][0]["store"]["kind"] = "ftp"
    bad.write_text(json.dumps(document))
    _error(
        cleanroom("config", "view", "--configs", bad),
        2,
        "bad.json is not a valid config fragment",
        "datasources.0.store",
    )
    bad.write_text("[1, 2")
    _error(cleanroom("config", "view", "--configs", bad), 2, "bad.json is not valid JSON")
    _error(cleanroom("config", "view", "--configs", tmp_path / "missing.json"), 3, "missing.json does not exist")


def test_wrong_workspace(tmp_path: Path) -> None:
    _error(
        cleanroom("-w", tmp_path / "nowhere", "config", "add-datasource", "--name", "x1"),
        3,
        "no workspace at",
        "nowhere",
    )
    _error(cleanroom("-w", tmp_path / "nowhere", "config", "view"), 3, "no workspace at")


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["add-datasource", "--name", "Bad_Name"], 2, "datasource name 'Bad_Name' is not valid"),
        (["add-datasource", "--name", "training-data"], 5, "'training-data' is already"),
        (["add-datasource", "--name", "x-1", "--store", "{nope"], 2, "--store is not a JSON object"),
        (
            ["add-datasource", "--name", "x-1", "--store", '{"kind": "azure_blob"}'],
            2,
            "exactly one of account_url or connection_string_env",
        ),
        (
            ["add-application", "--name", "app", "--image", "i", "--entrypoint", "e"],
            2,
            "exactly one of image or entrypoint",
        ),
        (
            ["add-application", "--name", "app", "--image", "i", "--mounts", "training-data:/x"],
            2,
            "is not 'src=<datasource>,dst=<path>'",
        ),
        (["add-application", "--name", "app", "--image", "i", "--mounts", "src=a,dst=rel"], 2, "absolute path"),
        (["add-application", "--name", "app", "--image", "i", "--ports", "http"], 2, "--ports"),
        (["add-application", "--name", "app", "--image", "i", "--env", "NOVALUE"], 2, "NAME=VALUE"),
        (["set-network-policy", "--allow", "infer"], 2, "is not 'METHOD /path'"),
        (["set-logging"], 2, "exactly one of --datasink NAME or --disable"),
    ],
)
def test_bad_edits_leave_the_fragment_untouched(
    parties: dict[str, Path], args: list[str], code: int, needle: str
) -> None:
    before = (parties["consumer"] / "config.json").read_bytes()
    _error(cleanroom("-w", parties["consumer"], "config", *args), code, needle)
    assert (parties["consumer"] / "config.json").read_bytes() == before


def test_disable_and_outbound(tmp_path: Path) -> None:
    ws = tmp_path / "p"
    _ok("-w", ws, "config", "init", "--persona", "provider")
    _ok("-w", ws, "config", "set-logging", "--datasink", "plogs")
    _ok("-w", ws, "config", "set-logging", "--disable")
    _ok("-w", ws, "config", "set-network-policy", "--allow-all-outbound")
    spec = _view(ws)["spec"]
    assert spec["logging"] == {"enabled": False, "datasink": None, "owner": None}
    assert spec["network_policy"] == {"inbound_allow": [], "allow_all_outbound": True}


def test_every_config_verb_has_help_with_an_example() -> None:
    for verb in (
        "init",
        "add-datasource",
        "add-datasink",
        "set-logging",
        "set-telemetry",
        "add-application",
        "set-network-policy",
        "view",
    ):
        outcome = cleanroom("config", verb, "--help")
        assert outcome.code == 0 and "Example" in outcome.stdout and "cleanroom" in outcome.stdout, verb
    assert "Example" in cleanroom("config", "--help").stdout
