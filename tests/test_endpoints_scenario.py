"""The endpoints scenario: what it narrates parses with the real command lines (the CLI's, the
application client's and the docs' stock OAuth2 client's), every member votes what the issue says
is voted and one member alone does what one member may, the application's calls refuse to run
without a token, and (smoke: the shipped MiniLM served twice in the sandbox) `cleanroom demo
--scenario endpoints --quick` runs end to end through the console script: a token by client
credentials with private_key_jwt, POST /score and OIP v2 answered, the voted split observed, a
pinned request, a rollback, 429 with Retry-After, 403 after revocation and the usage record.
"""

from __future__ import annotations

import json
import os
import runpy
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import AccessDeniedError, IntegrityError, InvalidInputError, NotFoundError
from core.runtime.rate_limit import CallerRateLimits
from core.scenario import Invocation, Step, endpoints_client, scenario_definition
from core.scenario.endpoints import (
    APPLICATION,
    BURST_REQUESTS,
    CONTRACT,
    ENDPOINTS,
    PERSONAS,
    PINNED_REQUESTS,
    RATE_LIMIT_PER_MINUTE,
    ROLLBACK_REQUESTS,
    ROUTES,
    SPLIT,
    SPLIT_REQUESTS,
    VERSIONS,
)
from core.scenario.endpoints_operations import _line, stock_client
from core.scenario.steps import SERVICES_HOME
from tests.ingress_endpoint_support import Endpoint
from tests.test_scenario_narration import parse

ROOT = Path(__file__).resolve().parents[1]
DEMO = (sys.executable, "-m", "tui.cli", "demo", "--scenario", "endpoints", "--quick", "--output", "json")
NARRATED = [(step, invocation) for step in ENDPOINTS.steps for invocation in step.invocations]
CLIENT_LINES = [i for _, i in NARRATED if i.program == "python" and i.args[:2] == ("-m", endpoints_client.__name__)]
STOCK_LINES = [i for _, i in NARRATED if i.program == "python" and i.args[0] == "docs/oauth2_client.py"]


def _step(key: str) -> Step:
    return next(step for step in ENDPOINTS.steps if step.key == key)


# -- narration ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "invocation"),
    [pytest.param(s, i, id=f"{s.key}:{' '.join(i.verb)}") for s, i in NARRATED if i.program == "cleanroom"],
)
def test_every_narrated_command_parses_with_the_real_command_tree(step: Step, invocation: Invocation) -> None:
    ctx = parse(invocation.argv())
    path = ctx.command_path.split()[1:]
    # a verb's name argument (`app revoke scorer`) is among the leading words, never an option
    assert list(invocation.verb[: len(path)]) == path
    assert not ctx.args, f"`{invocation.narration()}` leaves {ctx.args} unparsed"
    if invocation.persona is not None:
        assert ctx.find_root().params["workspace"] == Path(f"W/{invocation.persona}")


@pytest.mark.parametrize("invocation", [i for _, i in NARRATED], ids=lambda i: i.narration()[:70])
def test_every_narrated_line_reads_back_as_the_argv_it_runs(invocation: Invocation) -> None:
    line = invocation.narration()
    if invocation.export:
        prefix = f"export {invocation.export}=$("
        assert line.startswith(prefix) and line.endswith(")")
        line = line[len(prefix) : -1]
    words = shlex.split(line)
    if invocation.services:
        assert words.pop(0) == f"CLEANROOM_HOME={SERVICES_HOME}"
    if invocation.stdout:
        assert words[-2:] == [">", invocation.stdout]
        words = words[:-2]
    assert words == [invocation.program, *invocation.argv()]


@pytest.mark.parametrize("invocation", CLIENT_LINES, ids=lambda i: " ".join(i.args[2:4]))
def test_every_application_call_parses_with_the_clients_own_parser(invocation: Invocation) -> None:
    parsed = endpoints_client.parser().parse_args(list(invocation.args[2:]))
    assert parsed.ingress == "URL" and parsed.ingress_ca == Path("W/consumer/ca.crt")


def test_the_stock_client_line_is_what_the_docs_script_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs script parses the narrated line (argparse would exit 2) and only then fails on
    the placeholder workspace, which does not exist here."""
    (line,) = STOCK_LINES
    monkeypatch.setattr(sys, "argv", [line.args[0], *line.args[1:]])
    with pytest.raises(FileNotFoundError, match="W/consumer/workspace.json"):
        runpy.run_path(str(ROOT / line.args[0]), run_name="__main__")


# -- what is voted and what one member does alone ---------------------------------------------------
def test_the_scenario_is_registered_and_every_member_votes_the_contract_the_app_and_the_split() -> None:
    assert scenario_definition("endpoints") is ENDPOINTS
    assert ENDPOINTS.personas == PERSONAS == ("hoster", "provider", "consumer")
    for prefix in (f"{CONTRACT}:vote-contract:", f"{CONTRACT}:vote-deployment:", "register-app:vote:", "split:vote:"):
        assert sorted(s.persona for s in ENDPOINTS.steps if s.key.startswith(prefix)) == sorted(PERSONAS), prefix
    # the rollback and the revocation are the provider's acts alone: no vote follows them
    keys = [s.key for s in ENDPOINTS.steps]
    assert not [k for k in keys[keys.index("rollback") :] if ":vote" in k]
    assert _line(_step("rollback"), "governance", "traffic", "rollback").persona == "provider"
    assert _line(_step("revoke"), "governance", "app", "revoke").args[-1] == APPLICATION
    register = _line(_step("register-app"), "governance", "app", "register")
    assert register.values("--route") == list(ROUTES) and register.values("--contract") == [CONTRACT]
    policy = _line(_step("add-versions"), "config", "set-network-policy")
    assert policy.values("--allow") == list(ROUTES)  # the app may call no route the contract does not serve
    propose = _line(_step("propose-split"), "governance", "traffic", "propose")
    assert propose.value("--split") == "base=90,int8=10" and set(SPLIT) == set(VERSIONS)


def test_both_versions_serve_the_one_uploaded_model_and_only_int8_is_quantised() -> None:
    commands = {
        line.value("--name"): (line.value("--command"), line.values("--mounts"))
        for line in _step("add-versions").invocations_of("config", "add-application")
    }
    assert set(commands) == set(VERSIONS)
    assert all(mounts == ["src=minilm-onnx,dst=/mnt/remote/model"] for _, mounts in commands.values())
    assert "--int8" in commands["int8"][0].split() and "--int8" not in commands["base"][0].split()
    assert not [s for s in ENDPOINTS.steps if "train" in s.key]  # nothing is trained


def test_every_call_before_the_burst_fits_one_bucket_and_the_burst_is_twice_one() -> None:
    """No request of the split can meet the rate limit, and the burst must (its size is derived
    from the voted limit, not from what the ingress answered)."""
    capacity = CallerRateLimits().capacity(RATE_LIMIT_PER_MINUTE)
    before = len(VERSIONS) + 1 + 3 + SPLIT_REQUESTS + PINNED_REQUESTS + ROLLBACK_REQUESTS  # ready, score, OIP
    assert before <= capacity < BURST_REQUESTS == 2 * capacity
    (burst,) = [i for i in _step("burst").invocations if i.program == "python"]
    assert int(burst.values("--requests")[0]) == BURST_REQUESTS


# -- refusals that send nothing ---------------------------------------------------------------------
def test_an_application_call_without_a_token_is_a_one_line_error_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(endpoints_client.TOKEN_ENV, raising=False)
    # an ingress nothing listens on: any request sent would fail with a connection error instead
    code = endpoints_client.main(
        ["score", "--ingress", "https://127.0.0.1:9", "--ingress-ca", "ca.crt", "--requests", "1"]
    )
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err == (
        "error: $APP_TOKEN is empty; export APP_TOKEN=$(cleanroom -w W/consumer governance app token NAME --key K "
        "--contract C)\n"
    )


def test_a_step_whose_line_is_missing_is_refused_by_name() -> None:
    with pytest.raises(IntegrityError, match="step 'burst' runs `governance app revoke` 0 times, not once"):
        _line(_step("burst"), "governance", "app", "revoke")


def test_without_authlib_the_stock_client_step_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "authlib" or m.startswith("authlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "authlib", None)  # what `import authlib` meets when it is not installed
    with pytest.raises(NotFoundError, match="needs authlib, which is not installed") as refused:
        stock_client()
    assert refused.value.hint == "pip install 'authlib>=1.3,<2'"


# -- the application's calls against a real ingress (a recording workload, no model) ----------------
@pytest.fixture
def ingress(tmp_path: Path) -> Iterator[Endpoint]:
    endpoint = Endpoint(tmp_path)
    yield endpoint
    endpoint.close()


def _application(ingress: Endpoint, tmp_path: Path, **claims: Any) -> endpoints_client.Endpoint:
    routes = ("POST /score", "GET /v2/health/ready")
    token = ingress.issuer.app_token(APPLICATION, **{"routes": routes, **claims})
    return endpoints_client.Endpoint(ingress.proxy.url, tmp_path / "ingress_chain.pem", token)


def test_a_burst_past_the_limit_meets_429_with_retry_after_and_the_refused_reach_nobody(
    ingress: Endpoint, tmp_path: Path
) -> None:
    application = _application(ingress, tmp_path, rate_limit=60)  # a bucket of 10 requests
    seen = endpoints_client.burst(application, 30, 4)
    # the full bucket passes; the rest only as fast as it refills (one a second)
    assert seen["statuses"]["200"] >= 10 and seen["statuses"]["429"] > 0 and sum(seen["statuses"].values()) == 30
    assert seen["retryAfterSeconds"] and min(seen["retryAfterSeconds"]) >= 1
    assert seen["refusal"].startswith(f"caller 'app:{APPLICATION}' is over its limit of 60 requests a minute")
    assert len(ingress.workload.seen) == seen["statuses"]["200"]


def test_a_burst_of_nothing_is_refused_before_any_request(ingress: Endpoint, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--requests and --concurrency must be positive"):
        endpoints_client.burst(_application(ingress, tmp_path), 0, 4)
    assert ingress.workload.seen == []


def test_until_refused_times_the_revocation_of_the_token_the_application_holds(
    ingress: Endpoint, tmp_path: Path
) -> None:
    application = _application(ingress, tmp_path)
    assert endpoints_client.score(application, 2)["statuses"] == {"200": 2}
    revoked_at = ingress.issuer.revoke(APPLICATION)
    refused = endpoints_client.until_refused(application, since=revoked_at)
    assert refused["status"] == 403 and f"'{APPLICATION}' has been revoked" in refused["refusal"]
    assert refused["seconds"] >= 0
    assert len(ingress.workload.seen) == 2 + refused["answeredBefore"].get("200", 0)


def test_waiting_for_a_version_on_a_route_not_registered_is_refused_and_reaches_nobody(
    ingress: Endpoint, tmp_path: Path
) -> None:
    application = _application(ingress, tmp_path, routes=("POST /score",))
    with pytest.raises(AccessDeniedError, match="/v2/health/ready of 'base' answered 403: app 'scorer' may not call"):
        endpoints_client.wait_ready(application, ["base"])
    assert ingress.workload.seen == []


# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.smoke
@pytest.mark.timeout(600)
def test_quick_endpoints_end_to_end(tmp_path: Path) -> None:
    from core.runtime import sandbox

    if sandbox.bwrap_path() is None:
        pytest.skip("bubblewrap is not installed: the serving clean room runs in it")
    env = {**os.environ, "CLEANROOM_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop(endpoints_client.TOKEN_ENV, None)
    done = subprocess.run(
        [*DEMO, "--workspace", str(tmp_path / "demo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=560,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["status"] == "complete" and result["scenario"] == "endpoints"
    assert result["application"]["rateLimitPerMinute"] == RATE_LIMIT_PER_MINUTE

    score = result["score"]  # the docs' stock client: its own token, then POST /score
    assert score["tokenType"].lower() == "bearer" and score["scope"] == f"contract:{CONTRACT}"
    (prediction,) = score["answer"]["predictions"]
    assert prediction["label"] in ("neg", "pos") and 0.0 <= prediction["score"] <= 1.0

    oip = result["openInference"]
    assert oip["ready"] == {"status": 200, "body": {"ready": True}}
    assert oip["metadata"]["status"] == 200 and oip["metadata"]["body"]["name"] == "minilm"
    infer = oip["infer"]
    assert infer["status"] == 200 and infer["servedBy"] in VERSIONS
    assert [o["name"] for o in infer["body"]["outputs"]] == ["label", "score"]

    split = result["split"]
    assert split["voted"] == SPLIT and split["statuses"] == {"200": SPLIT_REQUESTS}
    assert sum(split["servedBy"].values()) == SPLIT_REQUESTS and set(split["servedBy"]) <= set(VERSIONS)
    assert result["pinned"]["servedBy"] == {"int8": PINNED_REQUESTS}
    rollback = result["rollback"]
    assert rollback["by"] == "provider" and rollback["servedBy"] == {"base": ROLLBACK_REQUESTS}
    assert rollback["version"] > split["version"]

    limited = result["rateLimit"]
    assert limited["statuses"]["429"] > 0 and sum(limited["statuses"].values()) == BURST_REQUESTS
    assert all(seconds >= 1 for seconds in limited["retryAfterSeconds"])
    assert f"over its limit of {RATE_LIMIT_PER_MINUTE} requests a minute" in limited["refusal"]

    revocation = result["revocation"]
    assert revocation["by"] == "provider" and revocation["status"] == 403
    assert "'scorer' has been revoked" in revocation["refusal"] and revocation["seconds"] >= 0

    usage = result["usage"]  # what the ingress counted, as governance recorded it
    assert usage["caller"] == f"app:{APPLICATION}"
    assert usage["refusals"]["429"] == limited["statuses"]["429"]
    assert usage["refusals"]["403"] >= 1
    forwarded = SPLIT_REQUESTS + PINNED_REQUESTS + ROLLBACK_REQUESTS + limited["statuses"]["200"]
    assert usage["requests"] >= forwarded and usage["rows"] >= forwarded
