"""The endpoints scenario as data: a client application scores through a clean room, blue/green.

Three members, every one a voter:

- **provider** prepares the shipped MiniLM classifier (`model prepare`: fp32 and int8 ONNX) and
  uploads the ONNX folder encrypted. Nothing is trained: the two versions served are the same
  model, full precision (``base``) and quantised (``int8``).
- **hoster** adds two serving applications over that one datasource behind one endpoint, and
  the routes the contract allows: ``POST /score`` and the Open Inference Protocol v2 surface.
- **consumer** owns the client application ``scorer``, registered by a proposal every member
  votes on (contract, routes, rate limit, its public key; the private key never leaves the
  consumer's workspace).

1. The contract, its deployment and CA voted by all; the hoster starts the clean room.
2. ``scorer`` is registered by every member's vote.
3. The application gets tokens by client credentials with private_key_jwt: the docs' stock
   authlib client (`docs/oauth2_client.py`) scores through ``POST /score``; OIP v2 health,
   metadata and inference answer too.
4. A 90/10 split voted by all; the split observed over the requests sent; a request pinned to
   ``int8`` by header; a rollback to ``base`` by the provider alone.
5. A burst past the voted rate limit gets 429 with Retry-After; the provider alone revokes the
   application and the ingress refuses its held token with 403 (the delay is measured); the
   clean room stops and the usage record governance received is read back.

Quick and full runs are the same: nothing here depends on a data set's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.governance.models import Action
from core.runtime.deployment import socket_path
from core.runtime.rate_limit import CallerRateLimits
from core.scenario import endpoints_client, endpoints_operations
from core.scenario.operations import perform_each
from core.scenario.steps import (
    Invocation,
    Perform,
    Phase,
    ScenarioDefinition,
    Step,
    cleanroom,
    consortium_setup,
    consortium_step_keys,
    python_module,
)
from core.scenario.three_personas import _contract_steps

if TYPE_CHECKING:
    from core.scenario.run import Scenario

NAME = "endpoints"
PERSONAS = ("hoster", "provider", "consumer")
PHASES = (
    Phase("setup", "Setup: a hoster, a model provider and a consumer; one consortium"),
    Phase("serving", "1. Two versions of the model behind one endpoint, voted by all"),
    Phase("application", "2. The consumer's scoring application, registered by every member's vote"),
    Phase("scoring", "3. Tokens by client credentials; POST /score and Open Inference Protocol v2"),
    Phase("blue-green", "4. Blue/green: a voted 90/10 split, a pinned request, a rollback by one member"),
    Phase("refusals", "5. Rate limit, revocation by one member, the usage record"),
)

CONTRACT = "endpoints"
APPLICATION = "scorer"
MODEL_NAME = "minilm"  # what /v2/models/{name} answers to
DATASOURCE = "minilm-onnx"
MODEL_FOLDER = "W/provider/model"
KEY_FILE = "W/consumer/scorer.pem"
CA_FILE = "W/consumer/ca.crt"
MOUNT = "/mnt/remote/model"
VERSIONS = {"base": (), "int8": ("--int8",)}  # serving application -> its extra server flags
ROUTES = ("POST /score", "GET /v2/health/ready", "GET /v2/models/{name}", "POST /v2/models/{name}/infer")
SPLIT = {"base": 90, "int8": 10}
SPLIT_REQUESTS = 200  # the split observed over this many requests
PINNED_REQUESTS = 10
ROLLBACK_REQUESTS = 20
# Every call the application makes before its burst fits in one full bucket of its voted limit,
# so no request of the split is refused; the burst is twice a full bucket, sent at once.
RATE_LIMIT_PER_MINUTE = 1800
BURST_REQUESTS = int(2 * CallerRateLimits().capacity(RATE_LIMIT_PER_MINUTE))
BURST_CONCURRENCY = 16
CLIENT = endpoints_client.__name__
STOCK_CLIENT = "docs/oauth2_client.py"


def _application_token() -> Invocation:
    """The token the application holds for its next calls, through the environment (never argv)."""
    return cleanroom(
        "consumer",
        "governance",
        "app",
        "token",
        "--key",
        KEY_FILE,
        "--contract",
        CONTRACT,
        APPLICATION,  # the name last: a step finds the line by the words before its options
        export=endpoints_client.TOKEN_ENV,
    )


def _call(call: str, *args: str) -> Invocation:
    """One of the application's narrated calls (``python -m core.scenario.endpoints_client``)."""
    return python_module(CLIENT, call, "--ingress", "URL", "--ingress-ca", CA_FILE, *args)


def _ingress_lines() -> tuple[Invocation, Invocation]:
    """The contract's CA into ``CA_FILE`` and the ingress URL from the clean room's events."""
    return (
        cleanroom(
            "consumer", "governance", "ca", "show", "--contract-id", CONTRACT, "--query", "caCert", stdout=CA_FILE
        ),
        cleanroom("consumer", "governance", "contract", "event", "list", "--id", CONTRACT),
    )


def _vote_steps(key: str, phase: str, title: str, perform: Perform) -> list[Step]:
    """Every member reads the open proposals and accepts the one this phase opened."""
    return [
        Step(
            f"{key}:vote:{persona}",
            phase,
            persona,
            title,
            (
                cleanroom(persona, "governance", "proposal", "list", "--state", "Open"),
                cleanroom(persona, "governance", "proposal", "vote", "--proposal-id", "ID", "--action", "accept"),
            ),
            perform,
        )
        for persona in (*(p for p in PERSONAS if p != "hoster"), "hoster")
    ]


def _serving_steps() -> list[Step]:
    applications = [
        cleanroom(
            "hoster",
            "config",
            "add-application",
            "--name",
            name,
            "--entrypoint",
            "containers/inference_server",
            "--command",
            " ".join(
                [
                    "python -m containers.inference_server",
                    f"--model-dir {MOUNT} --model-name {MODEL_NAME}",
                    *flags,
                    f"--uds {socket_path(name)}",
                ]
            ),
            "--mounts",
            f"src={DATASOURCE},dst={MOUNT}",
            "--ports",
            "8000",
        )
        for name, flags in VERSIONS.items()
    ]
    steps = [
        Step(
            "model-prepare",
            "serving",
            "provider",
            "prepare the shipped MiniLM (fp32 and int8 ONNX); nothing is trained",
            (cleanroom("provider", "model", "prepare", "--output-dir", MODEL_FOLDER),),
            perform_each,
        ),
        Step(
            "upload-model",
            "serving",
            "provider",
            "encrypt and upload the ONNX folder",
            (
                cleanroom("provider", "config", "add-datasource", "--name", DATASOURCE),
                cleanroom(
                    "provider", "datasource", "upload", "--name", DATASOURCE, "--dataset-folder", f"{MODEL_FOLDER}/onnx"
                ),
            ),
            perform_each,
        ),
        Step(
            "add-versions",
            "serving",
            "hoster",
            "add two serving applications (base: fp32, int8: quantised) and the routes they serve",
            (
                *applications,
                cleanroom(
                    "hoster", "config", "set-network-policy", *(word for route in ROUTES for word in ("--allow", route))
                ),
            ),
            perform_each,
        ),
    ]
    steps += _contract_steps(
        "serving", CONTRACT, list(VERSIONS), serves=True, data_owners=["provider"], personas=PERSONAS
    )
    steps.append(
        Step(
            f"{CONTRACT}:start",
            "serving",
            "hoster",
            "start the clean room (attest, key release, both versions behind one TLS ingress)",
            (cleanroom("hoster", "deployment", "start", "--contract-id", CONTRACT, services=True),),
            perform_each,
        )
    )
    return steps


def _application_steps() -> list[Step]:
    register = cleanroom(
        "consumer",
        "governance",
        "app",
        "register",
        "--name",
        APPLICATION,
        "--contract",
        CONTRACT,
        *(word for route in ROUTES for word in ("--route", route)),
        "--rate-limit",
        str(RATE_LIMIT_PER_MINUTE),
        "--generate-key",
        KEY_FILE,
    )
    return [
        Step(
            "register-app",
            "application",
            "consumer",
            f"propose registering '{APPLICATION}' ({RATE_LIMIT_PER_MINUTE} requests a minute); its key stays here",
            (register,),
            endpoints_operations.register_application,
        ),
        *_vote_steps(
            "register-app",
            "application",
            f"review and accept registering '{APPLICATION}'",
            endpoints_operations.vote_on(Action.REGISTER_CLIENT_APP, name=APPLICATION),
        ),
    ]


def _scoring_steps() -> list[Step]:
    score_line = Invocation(
        (
            STOCK_CLIENT,
            "--workspace",
            "W/consumer",
            "--app",
            APPLICATION,
            "--key",
            KEY_FILE,
            "--contract",
            CONTRACT,
            "--ingress",
            "URL",
            "--ingress-ca",
            CA_FILE,
            "--data",
            '[{"text": "a moving, funny film"}]',
        ),
        program="python",
    )
    return [
        Step(
            "score",
            "scoring",
            "consumer",
            "wait for both versions; score with the docs' stock OAuth2 client; call OIP v2",
            (
                *_ingress_lines(),
                _application_token(),
                _call("ready", *(word for name in VERSIONS for word in ("--version", name))),
                score_line,
                _call("oip-v2", "--model", MODEL_NAME),
            ),
            endpoints_operations.score,
        )
    ]


def _blue_green_steps() -> list[Step]:
    split = ",".join(f"{name}={percent}" for name, percent in SPLIT.items())
    steps = [
        Step(
            "propose-split",
            "blue-green",
            "hoster",
            f"propose the traffic split {split}",
            (cleanroom("hoster", "governance", "traffic", "propose", "--contract", CONTRACT, "--split", split),),
            endpoints_operations.propose_split,
        ),
        *_vote_steps(
            "split",
            "blue-green",
            f"review and accept the split {split}",
            endpoints_operations.vote_on(Action.SET_TRAFFIC_SPLIT, contract_id=CONTRACT),
        ),
        Step(
            "observe-split",
            "blue-green",
            "consumer",
            f"once the ingress applied it, send {SPLIT_REQUESTS} requests; then {PINNED_REQUESTS} pinned to int8",
            (
                cleanroom("consumer", "governance", "traffic", "show", "--contract", CONTRACT),
                cleanroom("consumer", "governance", "contract", "event", "list", "--id", CONTRACT),
                _application_token(),
                _call("score", "--requests", str(SPLIT_REQUESTS)),
                _call("score", "--requests", str(PINNED_REQUESTS), "--pin", "int8"),
            ),
            endpoints_operations.observe_split,
        ),
        Step(
            "rollback",
            "blue-green",
            "provider",
            "roll back to base on its own signature; the application's requests all land on base",
            (
                cleanroom("provider", "governance", "traffic", "rollback", "--contract", CONTRACT, "--to", "base"),
                cleanroom("consumer", "governance", "contract", "event", "list", "--id", CONTRACT),
                _application_token(),
                _call("score", "--requests", str(ROLLBACK_REQUESTS)),
            ),
            endpoints_operations.rollback,
        ),
    ]
    return steps


def _refusal_steps() -> list[Step]:
    return [
        Step(
            "burst",
            "refusals",
            "consumer",
            f"send {BURST_REQUESTS} requests at once, twice a full bucket of its voted limit",
            (
                _application_token(),
                _call("burst", "--requests", str(BURST_REQUESTS), "--concurrency", str(BURST_CONCURRENCY)),
            ),
            endpoints_operations.burst,
        ),
        Step(
            "revoke",
            "refusals",
            "provider",
            f"revoke '{APPLICATION}' alone; the ingress refuses the token the application still holds",
            (
                _application_token(),
                cleanroom("provider", "governance", "app", "revoke", APPLICATION),
                _call("until-refused"),
            ),
            endpoints_operations.revoke,
        ),
        Step(
            "usage",
            "refusals",
            "hoster",
            "stop the clean room; read the usage record governance received",
            (
                cleanroom("hoster", "deployment", "stop", "--contract-id", CONTRACT, services=True),
                cleanroom(
                    "consumer",
                    "governance",
                    "contract",
                    "event",
                    "list",
                    "--id",
                    CONTRACT,
                    "--query",
                    'events[?type==`"usage"`].data',
                ),
            ),
            endpoints_operations.usage,
        ),
    ]


def build_steps() -> list[Step]:
    steps = consortium_setup(PERSONAS, perform_each) + _serving_steps() + _application_steps()
    return steps + _scoring_steps() + _blue_green_steps() + _refusal_steps()


def summarise(scenario: Scenario) -> dict[str, Any]:
    """The results part of ``cleanroom demo --scenario endpoints --output json`` (camelCase): what
    each step saw, as the ingress and governance answered it."""
    results: dict[str, Any] = scenario.state.results.get("endpoints", {})
    return {
        "contract": CONTRACT,
        "application": results.get("application"),
        "ready": results.get("ready"),
        "score": results.get("score"),
        "openInference": results.get("openInference"),
        "split": results.get("split"),
        "pinned": results.get("pinned"),
        "rollback": results.get("rollback"),
        "rateLimit": results.get("rateLimit"),
        "revocation": results.get("revocation"),
        "usage": results.get("usage"),
    }


ENDPOINTS = ScenarioDefinition(
    name=NAME,
    personas=PERSONAS,
    phases=PHASES,
    steps=tuple(build_steps()),
    contracts=(CONTRACT,),
    consortium_steps=consortium_step_keys(PERSONAS),
    summarise=summarise,
)
