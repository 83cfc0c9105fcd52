"""`cleanroom governance app ...` and `governance keys ...`: client applications and token keys.

An application (a program, not a person) calls a clean room's routes with short-lived tokens it
gets from governance by OAuth2 client credentials, proving itself with its own key
(private_key_jwt). Registering one is a proposal every member votes on; revoking one is any
member's act alone, as is rotating the key governance signs tokens with.
"""

from __future__ import annotations

from pathlib import Path

import click

from core.engine import PersonaEngine
from core.workspace import Workspace
from tui.output import Result, verb_output

APP_COLUMNS = ("name", "owner", "contracts", "routes", "rateLimitPerMinute", "keyType", "status")


def _engine(ctx: click.Context) -> PersonaEngine:
    return PersonaEngine(Workspace.open(ctx.obj["workspace"]))


@click.group("app")
def app_group() -> None:
    """Client applications: programs calling a clean room's routes with OAuth2 tokens.

    \b
    Example (the consumer registers its scorer; every party votes; the scorer gets a token):
      cleanroom -w W/consumer governance app register --name scorer --contract inference-initial \\
          --route "POST /score" --rate-limit 600 --generate-key scorer.pem
      cleanroom -w W/hoster governance proposal vote --proposal-id <proposal id> --action accept
      cleanroom -w W/consumer governance app token scorer --key scorer.pem --contract inference-initial
    """


@app_group.command("register")
@click.option("--name", required=True, help="The application's name (never reused, even after revocation).")
@click.option("--owner", default=None, help="The owning member's id (default: this workspace's member).")
@click.option("--contract", "contracts", multiple=True, required=True, help="A contract it may call (repeatable).")
@click.option("--route", "routes", multiple=True, required=True, help="A route it may call, e.g. 'POST /score'.")
@click.option("--rate-limit", type=int, required=True, help="Requests per minute the ingress lets it make.")
@click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path), help="Its public key (PEM or JWK).")
@click.option(
    "--generate-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a fresh EC P-384 private key here (0600) and register its public half.",
)
@verb_output
@click.pass_context
def app_register(
    ctx: click.Context,
    name: str,
    owner: str | None,
    contracts: tuple[str, ...],
    routes: tuple[str, ...],
    rate_limit: int,
    public_key: Path | None,
    generate_key: Path | None,
) -> Result:
    """Propose registering a client application (register_client_app); every member votes.

    \b
    Example:
      cleanroom -w W/consumer governance app register --name scorer --contract inference-initial \\
          --route "POST /score" --route "POST /v2/models/{name}/infer" --rate-limit 600 --public-key scorer.pub.pem
    """
    with _engine(ctx) as engine:
        proposal = engine.register_client_app(
            name,
            owner=owner,
            contracts=list(contracts),
            routes=list(routes),
            rate_limit_per_minute=rate_limit,
            public_key_file=public_key,
            generate_key=generate_key,
        )
    text = f"proposal {proposal['proposalId']} ({proposal['proposalState']}) registers client application '{name}'"
    if proposal["privateKeyFile"] is not None:
        text += f"; its private key is in {generate_key}"
    return Result(proposal, text=text)


@app_group.command("list")
@verb_output
@click.pass_context
def app_list(ctx: click.Context) -> Result:
    """List registered client applications (metadata only; keys are never shown).

    \b
    Example:
      cleanroom -w W/hoster governance app list --query "[?status=='active'].name"
    """
    with _engine(ctx) as engine:
        apps = engine.client_apps()
    return Result(apps, columns=APP_COLUMNS, title="client applications")


@app_group.command("revoke")
@click.argument("name")
@verb_output
@click.pass_context
def app_revoke(ctx: click.Context, name: str) -> Result:
    """Revoke a client application now: any member alone; the ingress refuses it within 2 s.

    \b
    Example:
      cleanroom -w W/provider governance app revoke scorer
    """
    with _engine(ctx) as engine:
        revoked = engine.revoke_client_app(name)
    already = " (it already was)" if revoked.get("idempotent") else ""
    return Result(revoked, text=f"client application '{name}' is revoked{already}")


@app_group.command("token")
@click.argument("name")
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--contract", "contract_id", required=True, help="The contract whose clean room it calls.")
@verb_output
@click.pass_context
def app_token(ctx: click.Context, name: str, key_file: Path, contract_id: str) -> Result:
    """Get an application's access token from /oauth2/token, as any OAuth2 client does.

    The key is the application's private key (PEM); the table output is the bare token (for
    $(...)); -o json is the OAuth2 answer (access_token, token_type, expires_in, scope).

    \b
    Example:
      export TOKEN=$(cleanroom -w W/consumer governance app token scorer --key scorer.pem --contract inference-initial)
    """
    with _engine(ctx) as engine:
        answer = engine.app_token(name, key_file, contract_id)
    return Result(answer, text=answer["access_token"])


@click.group("keys")
def keys_group() -> None:
    """The key governance signs access tokens with."""


@keys_group.command("rotate")
@verb_output
@click.pass_context
def keys_rotate(ctx: click.Context) -> Result:
    """Make a fresh token signing key current (any member alone).

    The previous key stays in /jwks until every token it signed has expired, so no valid token
    breaks; then it leaves.

    \b
    Example:
      cleanroom -w W/hoster governance keys rotate
    """
    with _engine(ctx) as engine:
        rotated = engine.rotate_token_key()
    published = len(rotated.get("keys", []))
    return Result(rotated, text=f"token key {rotated['kid']} is current ({published} keys published in /jwks)")
