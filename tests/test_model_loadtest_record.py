"""`cleanroom model loadtest --record NAME@VERSION` through the real CLI, a sandboxed clean room
behind its TLS ingress and the governance service: the report lands in the version's ``loadtest``
field as the consumer's signed record, and `cleanroom model show` draws it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.cli_runner import cleanroom
from tests.test_loadtest import serving  # noqa: F401  (the fixture: a served model behind the TLS ingress)


def test_a_recorded_load_test_is_the_members_signed_report_on_the_version(serving: Any) -> None:  # noqa: F811
    digest = hashlib.sha256(b"tiny").hexdigest()
    serving.clients["provider"].onboard_model("tiny", "1", package_hash=digest, wrapper_hash=digest)
    consumer = serving.parties["consumer"].root
    args = ["-w", consumer, "model", "loadtest", "--contract", "inference1", "--mode", "per-rps", "--steps", "4"]
    args += ["--duration", "1", "--slo-ms", "60000"]

    unknown = cleanroom(*args, "--record", "tiny@9")
    assert unknown.code == 3 and "model 'tiny' has no version '9'" in unknown.stderr
    assert "4 rps:" not in unknown.stderr  # refused before anything was sent
    malformed = cleanroom(*args, "--record", "tiny")
    assert malformed.code == 2 and "--record 'tiny' is not NAME@VERSION" in malformed.stderr
    assert serving.clients["consumer"].model("tiny")["versions"]["1"]["loadtest"] is None

    outcome = cleanroom(*args, "--record", "tiny@1", "-o", "json")
    assert outcome.code == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    writer = serving.clients["consumer"].identity.member_id
    assert document["recorded"]["model"] == "tiny" and document["recorded"]["writer"] == writer
    recorded = serving.clients["hoster"].model("tiny")["versions"]["1"]["loadtest"]
    assert recorded["writer"] == writer and recorded["contractId"] == "inference1"
    assert recorded["steps"] == document["steps"] and recorded["knee"] == document["knee"]

    shown = cleanroom("-w", serving.parties["hoster"].root, "model", "show", "tiny")
    assert shown.code == 0, shown.stderr
    assert "version 1 load test through contract inference1" in shown.stdout
    assert "knee (p99 <= 60000 ms, no failures): 4 rps" in shown.stdout
