"""The clean-room runtime end to end: real governance, key service, sandbox and sealing."""

from __future__ import annotations

import copy
import json
import os
import threading
import time

import pytest

from core.config.party import party_fragment, set_export
from core.crypto.kek import Kek, read_wrapped_dek
from core.datasource import download_asset
from core.errors import AccessDeniedError, ConflictError, IntegrityError, NotFoundError
from core.keys.measurement import policy_hash
from core.runtime import sandbox
from core.storage.locator import open_store
from core.storage.transfer import read_manifest
from tests.cli_runner import cleanroom
from tests.runtime_world import World

COPY = (
    "import pathlib; "
    "text = pathlib.Path('/mnt/remote/model/weights.txt').read_text(); "
    "pathlib.Path('/mnt/remote/results/out.txt').write_text(text.upper()); print('done')"
)


@pytest.fixture()
def world(tmp_path):
    world = World.create(tmp_path)
    yield world
    world.close()


def test_accepted_contract_runs_and_seals_output_to_its_owner(world, tmp_path) -> None:
    world.setup_assets({"weights.txt": "provider secret weights"})
    world.add_app(["python", "-c", COPY])
    world.accept_contract("collab1")
    runtime = world.runtime()
    outcome = runtime.run("collab1")
    assert outcome.exit_codes == {"app": 0}
    assert outcome.sealed == ["results"]
    download_asset(world.parties["consumer"], "datasink", "results", tmp_path / "got")
    assert (tmp_path / "got" / "out.txt").read_text() == "PROVIDER SECRET WEIGHTS"
    types = world.event_types("collab1")
    for expected in ("key_released", "deploying", "attested", "keys_released", "running", "exited", "sealed"):
        assert expected in types, types
    assert not any((world.runtime_state / "mounts").iterdir())


@pytest.mark.parametrize("where", ["command", "mount", "entrypoint"])
def test_one_changed_character_gets_no_keys_and_never_runs(world, tmp_path, where) -> None:
    world.setup_assets({"weights.txt": "provider secret weights"})
    world.add_app(["python", "-c", COPY])
    spec = world.accept_contract("collab1")
    changed = copy.deepcopy(spec)
    app = changed["applications"][0]
    if where == "command":
        app["command"][-1] = app["command"][-1].replace("done", "d0ne")
    elif where == "mount":
        app["mounts"][0]["path"] = "/mnt/remote/mode1"
    else:
        app["entrypoint"] = "containers/inference_serveR"
    started: list[str] = []
    runtime = world.runtime(listener=lambda kind, _detail: started.append(kind))
    with pytest.raises(AccessDeniedError, match="differs from the accepted"):
        runtime.run("collab1", spec_override=changed)
    assert "running" not in started and "first_output" not in started
    refusals = [e for e in world.events("collab1") if e["type"] == "key_release_refused"]
    assert refusals and refusals[-1]["data"]["policy_hash"] == policy_hash(changed)
    # the runtime's own word on the failure reaches governance too, marked as the changed measurement
    failed = [e for e in world.events("collab1") if e["type"] == "failed"]
    assert failed and failed[-1]["data"]["unaccepted_policy_hash"] == policy_hash(changed)
    with pytest.raises(NotFoundError):  # nothing was sealed: the workload never ran
        download_asset(world.parties["consumer"], "datasink", "results", tmp_path / "got")
    assert not any((world.runtime_state / "mounts").iterdir())


def test_hoster_cannot_decrypt_provider_or_consumer_assets(world) -> None:
    world.setup_assets({"weights.txt": "provider secret weights"})
    world.add_app(["python", "-c", COPY])
    world.accept_contract("collab1")
    world.runtime().run("collab1")  # the consumer's datasink now holds sealed output
    hoster = world.parties["hoster"]
    with pytest.raises(NotFoundError, match="not in this workspace's config"):
        download_asset(hoster, "datasource", "model", hoster.root / "stolen")
    for owner, asset in (("provider", "model"), ("consumer", "results")):
        workspace = world.parties[owner]
        wrapped = read_wrapped_dek(workspace.keys_dir, asset)
        with pytest.raises(IntegrityError, match="cannot be unwrapped with this workspace's KEK"):
            Kek.load(hoster.keys_dir).unwrap(wrapped, label=f"{owner}'s DEK of '{asset}'")
        # even with direct access to the owner's store, the hoster's guess of a key fails closed
        store = open_store(
            party_fragment(workspace).datasource(asset).store
            if owner == "provider"
            else party_fragment(workspace).datasink(asset).store
        )
        with pytest.raises(IntegrityError):
            read_manifest(store, asset, os.urandom(32), label=asset)
        # the wrapped DEK in governance is only for an attested clean room
        with pytest.raises(AccessDeniedError):
            world.clients["hoster"].get_secret("collab1", f"dek-{asset}", "not-an-attestation")


SLEEPER = (
    "import time, pathlib; pathlib.Path('/mnt/remote/results/partial.txt').write_text('x'); "
    "print('up', flush=True); time.sleep(300)"
)


def test_kill_switch_stops_a_running_deployment_and_refuses_new_starts(world) -> None:
    world.setup_assets({"weights.txt": "w"})
    world.add_app(["python", "-c", SLEEPER])
    world.accept_contract("collab1")
    seen: list[str] = []
    runtime = world.runtime(listener=lambda kind, _detail: seen.append(kind))
    outcome: dict[str, object] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=runtime.run("collab1")))
    thread.start()
    deadline = time.monotonic() + 60
    while "first_output" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "first_output" in seen
    world.clients["consumer"].set_runtime_option("collab1", "execution", enable=False)
    thread.join(timeout=60)
    assert not thread.is_alive()
    result = outcome["result"]
    assert result.stopped_by == "execution disabled by a member"
    assert result.exit_codes["app"] != 0
    # the kill switch stops execution, not the audit trail: the stopped run's end reaches governance
    listed = cleanroom(
        "-w",
        world.parties["provider"].root,
        "governance",
        "contract",
        "event",
        "list",
        "--id",
        "collab1",
        "--output",
        "json",
    )
    assert listed.code == 0, listed.stderr
    ending = {e["type"]: e["data"] for e in json.loads(listed.stdout)["events"]}
    assert ending["stopping"]["reason"] == "execution disabled by a member"
    assert ending["exited"]["stopped_by"] == "execution disabled by a member"
    assert ending["sealed"]["datasink"] == "results"
    assert "unaccepted_policy_hash" not in ending["exited"]
    with pytest.raises(AccessDeniedError, match="disabled"):
        world.runtime().run("collab1")
    assert not any((world.runtime_state / "mounts").iterdir())


CHATTY = (
    "import json, os; print('hello-log', flush=True); "
    "open(os.environ['CLEANROOM_TELEMETRY_FILE'], 'a').write(json.dumps({'step': 1, 'loss': 0.5}) + '\\n')"
)


@pytest.mark.parametrize("enabled", [True, False])
def test_logs_and_telemetry_leave_only_when_the_contract_enables_them(world, tmp_path, enabled) -> None:
    world.setup_assets({"weights.txt": "w"})
    set_export(world.parties["consumer"], "logging", "app-logs")
    world.add_app(["python", "-c", CHATTY])
    world.accept_contract("collab1")
    if enabled:
        for option in ("logging", "telemetry"):
            world.vote_all(world.clients["hoster"].set_runtime_option("collab1", option, enable=True))
    outcome = world.runtime().run("collab1")
    assert outcome.exit_codes == {"app": 0}
    telemetry = [e for e in world.events("collab1") if e["type"] == "telemetry"]
    if enabled:
        assert [(e["data"]["step"], e["data"]["loss"]) for e in telemetry] == [(1, 0.5)]
        download_asset(world.parties["consumer"], "datasink", "app-logs", tmp_path / "logs")
        assert (tmp_path / "logs" / "app.log").read_text() == "hello-log\n"
    else:
        assert telemetry == []
        assert "app-logs" not in outcome.sealed
        with pytest.raises(NotFoundError):
            download_asset(world.parties["consumer"], "datasink", "app-logs", tmp_path / "logs")


def test_start_is_refused_for_a_contract_not_ready_to_run(world) -> None:
    world.setup_assets({"weights.txt": "w"})
    world.add_app(["python", "-c", COPY])
    from core.config.merge import merge_fragments

    merged = merge_fragments(party_fragment(ws) for ws in world.parties.values()).document()
    hoster = world.clients["hoster"]
    hoster.create_contract("draft1", merged)
    with pytest.raises(ConflictError, match="is Draft, not Accepted"):
        world.runtime().run("draft1")
    world.vote_all(hoster.propose_contract("draft1", hoster.contract("draft1")["version"]))
    with pytest.raises(ConflictError, match="no accepted deployment spec"):
        world.runtime().run("draft1")
    with pytest.raises(NotFoundError):
        world.runtime().run("nosuchcontract")


def test_missing_bubblewrap_is_refused_before_any_plaintext_is_used(world, monkeypatch) -> None:
    world.setup_assets({"weights.txt": "w"})
    world.add_app(["python", "-c", COPY])
    world.accept_contract("collab1")
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    with pytest.raises(AccessDeniedError, match="--insecure-no-sandbox"):
        world.runtime().run("collab1")
    assert not any((world.runtime_state / "mounts").iterdir())
    types = world.event_types("collab1")
    assert "failed" in types and "key_released" not in types  # refused before any key left
    outcome = world.runtime(insecure_no_sandbox=True).run("collab1")
    assert outcome.exit_codes == {"app": 0}
    running = [e for e in world.events("collab1") if e["type"] == "running"]
    assert running[-1]["data"]["sandbox"] == "none (INSECURE)"
