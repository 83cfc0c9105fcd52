"""Blue/green: how a contract's traffic is divided between its serving applications.

A contract may accept several serving applications (a base model and a fine-tuned one) behind
one endpoint. Moving traffic onto a version changes what every caller's data meets, so the
split is a runtime option every member votes (``set_traffic_split``). Moving all of it back to
one version the members already accepted only narrows what runs, so any member may do that
alone when a new version misbehaves, as with the kill switch; the signed rollback request is
kept in the ledger (``traffic.rollback``) so everyone can see who did it and when.

The runtime reads the result as ``{"version", "split", "rolledBackTo"}``; ``version`` grows by
one with every change, so an ingress polling it can tell a new split from the one it has.
An empty split means none was voted yet (the ingress then divides traffic evenly: every
serving application was accepted by every member, and no order among them was voted).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from core.config.canonical import canonical_json
from core.errors import ConflictError, InvalidInputError
from core.governance.models import ContractState

SCHEMA = """
CREATE TABLE IF NOT EXISTS traffic_splits (contract_id TEXT PRIMARY KEY, split TEXT NOT NULL,
    rolled_back_to TEXT, version INTEGER NOT NULL, proposal_id TEXT, seqno INTEGER NOT NULL);
"""


def serving_applications(contract: dict[str, Any]) -> list[str]:
    """Names of the contract's applications that serve (declare ports), in contract order."""
    data = contract.get("data")
    applications = data.get("applications", []) if isinstance(data, dict) else []
    return [
        str(app["name"])
        for app in applications
        if isinstance(app, dict) and isinstance(app.get("name"), str) and app.get("ports")
    ]


def _accepted_serving(contract: dict[str, Any]) -> list[str]:
    if contract["state"] != ContractState.ACCEPTED:
        raise ConflictError(
            f"contract '{contract['id']}' is {contract['state']}, so its traffic cannot be split yet",
            hint="get the contract accepted first (`cleanroom governance contract vote`)",
        )
    serving = serving_applications(contract)
    if len(serving) < 2:
        raise ConflictError(
            f"contract '{contract['id']}' has {len(serving)} serving application(s); a traffic split needs two",
            hint="accept a contract with two applications that declare --ports",
        )
    return serving


def check_split(contract: dict[str, Any], split: object) -> dict[str, int]:
    """The split as {application: percent}, or a one-line refusal naming what to fix.

    Percentages are whole numbers summing to 100 over serving applications of the accepted
    contract; a serving application left out gets none of the traffic (it can still be pinned)."""
    serving = _accepted_serving(contract)
    if not isinstance(split, dict) or not split:
        raise InvalidInputError(
            "traffic split must map application names to percentages", hint="e.g. --split base=90,tuned=10"
        )
    for name, percent in split.items():
        if name not in serving:
            raise InvalidInputError(
                f"application {str(name)[:64]!r} is not a serving application of contract '{contract['id']}'",
                hint=f"use one of: {', '.join(serving)}",
            )
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise InvalidInputError(
                f"traffic percentage of '{name}' is {percent!r}, not a whole number from 0 to 100",
                hint="e.g. --split base=90,tuned=10",
            )
    total = sum(split.values())
    if total != 100:
        raise InvalidInputError(f"traffic split percentages sum to {total}, not 100", hint="make them add up to 100")
    return {str(name): int(percent) for name, percent in split.items()}


def check_rollback(contract: dict[str, Any], application: object) -> str:
    """The application a rollback sends all traffic to, if it is one of the contract's serving ones."""
    serving = _accepted_serving(contract)
    if not isinstance(application, str) or application not in serving:
        raise InvalidInputError(
            f"application {str(application)[:64]!r} is not a serving application of contract '{contract['id']}'",
            hint=f"roll back to one of: {', '.join(serving)}",
        )
    return application


def feed(db: sqlite3.Connection, contract_id: str) -> dict[str, Any]:
    """What the ingress polls: ``{"version", "split", "rolledBackTo"}`` (version 0: never set)."""
    row = db.execute(
        "SELECT split, rolled_back_to, version FROM traffic_splits WHERE contract_id=?", (contract_id,)
    ).fetchone()
    if row is None:
        return {"version": 0, "split": {}, "rolledBackTo": None}
    return {"version": row[2], "split": json.loads(row[0]), "rolledBackTo": row[1]}


def store(
    db: sqlite3.Connection,
    contract_id: str,
    split: dict[str, int],
    *,
    seqno: int,
    proposal_id: str | None = None,
    rolled_back_to: str | None = None,
) -> None:
    """Replace the contract's split (inside the caller's governance transaction)."""
    version = int(feed(db, contract_id)["version"]) + 1
    db.execute(
        "INSERT OR REPLACE INTO traffic_splits VALUES (?,?,?,?,?,?)",
        (contract_id, canonical_json(split).decode(), rolled_back_to, version, proposal_id, seqno),
    )


def parse_split(text: str) -> dict[str, int]:
    """``base=90,tuned=10`` as ``{"base": 90, "tuned": 10}`` (the CLI's and the scenarios' form)."""
    split: dict[str, int] = {}
    for part in text.split(","):
        name, sep, percent = part.strip().partition("=")
        if not sep or not name.strip() or not percent.strip().isdigit():
            raise InvalidInputError(
                f"traffic split part {part.strip()!r} is not NAME=PERCENT", hint="e.g. base=90,tuned=10"
            )
        if name.strip() in split:
            raise InvalidInputError(f"traffic split names '{name.strip()}' twice", hint="name each application once")
        split[name.strip()] = int(percent)
    return split
