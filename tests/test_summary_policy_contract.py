"""The summariser's output caps are voted: declared on the application, measured with the spec,
and handed to the workload by the runtime (CLEANROOM_SUMMARY_POLICY), never by a party's own file."""

from __future__ import annotations

import json
from pathlib import Path

from containers.summariser.policy import load_policy
from core.config.fragment import load_fragment
from core.config.merge import merge_fragments
from core.config.summary_policy import SUMMARY_POLICY_ENV, SummaryPolicy
from core.keys.measurement import policy_hash
from core.runtime.deployment import deployment_spec
from tests.cli_runner import cleanroom

CAPS = {"max_sentences": 3, "max_ratio": 0.3, "max_document_bytes": 100_000}


def _add(tmp_path: Path, workspace: Path, name: str, caps: dict[str, object] | str) -> object:
    policy = tmp_path / f"{name}.json"
    policy.write_text(caps if isinstance(caps, str) else json.dumps(caps))
    return cleanroom(
        "-w", workspace, "config", "add-application", "--name", name, "--entrypoint", "containers/summariser",
        "--command", "python -m containers.summariser --serve", "--summary-policy", policy, "-o", "json",
    )  # fmt: skip


def test_the_voted_caps_reach_the_workload_through_the_measured_spec(tmp_path: Path, monkeypatch) -> None:
    hoster = tmp_path / "W" / "hoster"
    assert cleanroom("-w", hoster, "config", "init", "--persona", "hoster").code == 0
    added = _add(tmp_path, hoster, "summariser", CAPS)
    assert added.code == 0, added.stderr
    assert json.loads(added.stdout)["summaryPolicy"] == CAPS

    spec = deployment_spec("summaries", merge_fragments([load_fragment(hoster)]).document())
    (app,) = spec["applications"]
    assert app["summary_policy"] == CAPS
    assert SummaryPolicy.model_validate_json(app["env"][SUMMARY_POLICY_ENV]) == SummaryPolicy(**CAPS)
    # what the workload reads from that environment is exactly the voted caps
    monkeypatch.setenv(SUMMARY_POLICY_ENV, app["env"][SUMMARY_POLICY_ENV])
    caps = load_policy(None)
    assert (caps.max_sentences, caps.max_ratio, caps.max_document_bytes) == (3, 0.3, 100_000)

    looser = json.loads(json.dumps(spec))
    looser["applications"][0]["summary_policy"]["max_ratio"] = 0.9
    assert policy_hash(looser) != policy_hash(spec)  # loosening a cap is a different clean room


def test_caps_out_of_range_or_unreadable_are_refused_and_nothing_is_added(tmp_path: Path) -> None:
    hoster = tmp_path / "W" / "hoster"
    assert cleanroom("-w", hoster, "config", "init", "--persona", "hoster").code == 0
    too_loose = _add(tmp_path, hoster, "a", {**CAPS, "max_ratio": 1.5})
    assert too_loose.code == 2 and "max_ratio" in too_loose.stderr
    broken = _add(tmp_path, hoster, "b", "{")
    assert broken.code == 2 and "summary policy in --summary-policy file" in broken.stderr
    assert load_fragment(hoster).applications == []
