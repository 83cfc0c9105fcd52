"""`cleanroom governance privacy ...`: the per-dataset privacy budgets governance enforces.

`show` and `history` read the service (members only); `verify` rebuilds the budgets from a ledger
export offline, recomputing every run's epsilon with opacus, and compares them with what the
service shows; `budget lower` is the owner's own signed act, `budget propose-raise` opens a
proposal every member must accept. Dataset ids are `OWNER/NAME`; a bare `NAME` works wherever it
names one dataset (for `lower`, the signer's own).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click

from core.engine import PersonaEngine, deployed_service
from core.engine.privacy_budget import fetch_signed_head
from core.errors import IntegrityError, InvalidInputError, NotFoundError, ServiceUnavailableError
from core.governance import ledger, privacy
from core.workspace import Workspace
from tui.output import Result, generic_table, verb_output

BUDGET_COLUMNS = ("name", "ownerName", "privacyUnit", "epsilonTotal", "spent", "reserved", "left", "delta")
HISTORY_COLUMNS = ("seqno", "kind", "names", "contractId", "runId", "epsilon", "status", "reason")


def _engine(ctx: click.Context) -> PersonaEngine:
    return PersonaEngine(Workspace.open(ctx.obj["workspace"]))


def _rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table cells to four decimals; ``-o json`` keeps the exact floats."""
    return [{k: round(v, 4) if isinstance(v, float) and k != "delta" else v for k, v in row.items()} for row in rows]


def _budgets_result(rows: list[dict[str, Any]], title: str) -> Result:
    table = _rounded(rows)

    def render(console: Any) -> None:
        console.print(generic_table(table, title=title, columns=BUDGET_COLUMNS))

    return Result(rows, render=render)


@click.group("privacy")
def privacy_group() -> None:
    """Per-dataset privacy budgets: what each run reserved and spent, verifiable offline.

    \b
    Example:
      cleanroom -w W/texts-provider governance privacy show
      cleanroom -w W/texts-provider governance privacy history --dataset texts
      cleanroom -w W/texts-provider governance ledger export --file ledger.jsonl
      cleanroom -w W/texts-provider governance privacy verify --file ledger.jsonl
    """


@privacy_group.command("show")
@verb_output
@click.pass_context
def privacy_show(ctx: click.Context) -> Result:
    """Every budgeted dataset: total, spent, reserved (runs in progress or crashed) and left.

    \b
    Example:
      cleanroom -w W/labels-provider governance privacy show --query "[?name=='labels'].left | [0]"
    """
    with _engine(ctx) as engine:
        rows = engine.privacy_budgets()
    return _budgets_result(rows, "privacy budgets (epsilon)")


@privacy_group.command("history")
@click.option("--dataset", default=None, help="Only this dataset (OWNER/NAME, or NAME if only one has it).")
@verb_output
@click.pass_context
def privacy_history(ctx: click.Context, dataset: str | None) -> Result:
    """Privacy ledger entries in ledger order: registrations, reservations, records, refusals, budget changes.

    \b
    Example:
      cleanroom -w W/hoster governance privacy history --dataset labels -o json
    """
    with _engine(ctx) as engine:
        rows = engine.privacy_history(dataset)
    table = [row | {"names": ", ".join(d.rsplit("/", 1)[-1] for d in row["datasets"])} for row in _rounded(rows)]
    return Result(rows, render=lambda console: _print_history(console, table))


def _print_history(console: Any, table: list[dict[str, Any]]) -> None:
    console.print(generic_table(table, title="privacy history", columns=HISTORY_COLUMNS))


@privacy_group.command("verify")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A ledger export (`governance ledger export`); default: export it from the service now.",
)
@click.option(
    "--against",
    default=None,
    metavar="FILE|URL|service|none",
    help="Signed head the export must reach: a file from `ledger head --file` or a saved receipt, a "
    "governance URL or `service` (fetch it now), or `none`. Default: service if the workspace has one, else none.",
)
@verb_output
@click.pass_context
def privacy_verify(ctx: click.Context, path: Path | None, against: str | None) -> Result:
    """Rebuild every budget from the ledger, recomputing each run's epsilon, and compare with the service.

    The export's hash chain and signed checkpoints are verified first (as `ledger verify` does),
    and the export must reach a head the governance service signed: an export cut at a checkpoint
    boundary (the last runs' spend missing), reordered or altered is refused, naming the first bad
    entry. With --file and no service, the recomputed budgets are printed without the comparison
    (and a warning says so).

    \b
    Example:
      cleanroom -w W/consumer governance ledger head --file head.json
      cleanroom -w W/consumer governance ledger export --file ledger.jsonl
      cleanroom -w W/consumer governance privacy verify --file ledger.jsonl --against head.json
    """
    workspace = _workspace_or_none(ctx)
    settings = (deployed_service(workspace) or {}) if workspace else {}
    pinned = settings.get("service_cert_pem")
    if path is None:
        if workspace is None or not settings:
            raise InvalidInputError(
                "no ledger export to verify and no governance service to export it from",
                hint="pass --file EXPORT (from `cleanroom governance ledger export`)",
            )
        with tempfile.TemporaryDirectory() as scratch, _engine(ctx) as engine:
            exported = Path(scratch) / "ledger.jsonl"
            engine.export_ledger(exported)
            lines = exported.read_text(encoding="utf-8").splitlines()
    else:
        if not path.is_file():
            raise NotFoundError(
                f"ledger export {path} does not exist",
                hint="create it with `cleanroom governance ledger export --file F`",
            )
        lines = path.read_text(encoding="utf-8").splitlines()
    if pinned is None:
        click.echo("warning: no pinned service certificate; trusting the one in the export", err=True)
    head = _signed_head(ctx, against or ("service" if settings else "none"), settings, lines)
    report, replayed = privacy.replay_export(lines, expected_service_cert_pem=pinned, against=head)
    if head is None:  # after the checks, so that a failure stays one line
        click.echo(
            "warning: not checked against a signed head, so an export cut at a checkpoint boundary would pass; "
            "pass --against service, URL or FILE (saved with `governance ledger head --file`)",
            err=True,
        )
    served = _served_budgets(ctx, settings)
    if served is not None:
        problems = privacy.compare(replayed.datasets(), served)
        if problems:
            raise IntegrityError(
                f"the service's privacy budgets differ from the ledger's: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                hint="the service shows budgets its own ledger does not support; do not trust them",
            )
    else:
        click.echo("warning: no service to compare with; showing the budgets recomputed from the export", err=True)
    recorded = sum(1 for item in replayed.history if item["kind"] == "record")
    document = {
        "ok": True,
        "entries": report.entries,
        "privacyEntries": len(replayed.history),
        "recordsRecomputed": recorded,
        "against": report.against,
        "headSeqno": report.head_seqno,
        "comparedWithService": served is not None,
        "datasets": replayed.datasets(),
    }

    def render(console: Any) -> None:
        compared = "matches the service" if served is not None else "not compared with a service"
        reached = f"reaches the signed head (entry {report.head_seqno})" if head is not None else "no signed head"
        console.print(
            f"privacy ledger OK: {len(replayed.history)} entries, {recorded} runs recomputed; {reached}; {compared}"
        )
        columns = [column for column in BUDGET_COLUMNS if column != "ownerName"]
        console.print(generic_table(_rounded(replayed.datasets()), title="recomputed budgets", columns=columns))

    return Result(document, render=render)


def _signed_head(
    ctx: click.Context, against: str, settings: dict[str, Any], lines: list[str]
) -> ledger.SignedHead | None:
    """Resolve ``--against``: ``none``, a head file (or saved receipt), or a head fetched now from
    the workspace's service or a governance URL.

    A fetched head is not trusted for being fetched: ``verify_export`` checks its signature with
    the export's service certificate, which must be the pinned one when the workspace pins one. A
    URL is reached over TLS pinned to that same certificate (the export's when nothing is pinned)."""
    if against == "none":
        return None
    if against == "service":
        if not settings:
            raise InvalidInputError(
                "--against service: this workspace has no governance service",
                hint="pass --against URL or --against FILE (saved with `governance ledger head --file`)",
            )
        endpoint, cert = str(settings["endpoint"]), str(settings["service_cert_pem"])
    elif "://" in against:
        if not against.startswith("https://"):
            raise InvalidInputError(
                f"--against {against}: the governance service is reached over TLS only",
                hint="pass its https:// URL",
            )
        endpoint, cert = against, settings.get("service_cert_pem") or _export_service_cert(lines)
    else:
        return ledger.load_signed_head(Path(against))
    return fetch_signed_head(endpoint, cert)


def _export_service_cert(lines: list[str]) -> str:
    """The service certificate an export's header names (checked again by ``verify_export``)."""
    try:
        return str(json.loads(lines[0])["service_cert"])
    except (IndexError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidInputError(
            "ledger export has no service certificate to reach the --against URL with",
            hint="export it again with `cleanroom governance ledger export --file F`",
        ) from exc


def _workspace_or_none(ctx: click.Context) -> Workspace | None:
    try:
        return Workspace.open(ctx.obj["workspace"])
    except NotFoundError:
        return None


def _served_budgets(ctx: click.Context, settings: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The service's budgets, or None when the workspace has no service or it is not reachable."""
    if not settings:
        return None
    try:
        with _engine(ctx) as engine:
            return engine.privacy_datasets()
    except ServiceUnavailableError:
        return None


@privacy_group.group("budget")
def budget_group() -> None:
    """Change a dataset's lifetime epsilon: its owner lowers it alone; raising needs every member."""


@budget_group.command("lower")
@click.option("--dataset", required=True, help="Your dataset: NAME or OWNER/NAME.")
@click.option("--epsilon-total", type=float, required=True, help="The new lifetime epsilon (below the current).")
@verb_output
@click.pass_context
def budget_lower(ctx: click.Context, dataset: str, epsilon_total: float) -> Result:
    """Lower your own dataset's budget, at once (never below what runs spent and reserved).

    \b
    Example:
      cleanroom -w W/texts-provider governance privacy budget lower --dataset texts --epsilon-total 6
    """
    with _engine(ctx) as engine:
        answer = engine.lower_privacy_budget(dataset, epsilon_total)
    return Result(
        answer,
        text=f"lowered '{answer['name']}' to epsilon {answer['epsilonTotal']:g} ({answer['left']:.2f} left)",
    )


@budget_group.command("propose-raise")
@click.option("--dataset", required=True, help="The dataset: OWNER/NAME, or NAME if only one has it.")
@click.option("--epsilon-total", type=float, required=True, help="The new lifetime epsilon (above the current).")
@verb_output
@click.pass_context
def budget_propose_raise(ctx: click.Context, dataset: str, epsilon_total: float) -> Result:
    """Propose raising a dataset's budget (set_privacy_budget); it passes when every member accepts.

    \b
    Example:
      cleanroom -w W/hoster governance privacy budget propose-raise --dataset labels --epsilon-total 15
      cleanroom -w W/labels-provider governance proposal vote --proposal-id ID --action accept
    """
    with _engine(ctx) as engine:
        proposal = engine.propose_privacy_budget_raise(dataset, epsilon_total)
    return Result(proposal, text=f"proposal {proposal['proposalId']} ({proposal['proposalState']})")
