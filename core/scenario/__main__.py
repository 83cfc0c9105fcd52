"""`python -m core.scenario isolation --root DIR --persona P --attempt NAME`: one isolation proof
of a scenario root, by hand.

No `cleanroom` verb mounts an attack (a self-made attestation, another party's blobs tried with
one's own DEKs, a scan of the hoster's stores), so a scenario's isolation steps narrate these
lines and perform exactly them (``core.scenario.proofs``). Run by hand, it needs the scenario's
services up (`cleanroom demo --keep-running`); it prints the checks as JSON and exits 1 if any
attempt was not refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import CleanroomError, NotFoundError


def parser() -> argparse.ArgumentParser:
    """The command line the isolation steps narrate (tests parse every narrated line with it)."""
    from core.scenario.proofs import ATTEMPTS

    top = argparse.ArgumentParser(prog="python -m core.scenario")
    verbs = top.add_subparsers(dest="verb", required=True)
    isolation = verbs.add_parser("isolation", help="try to reach the other parties' assets")
    isolation.add_argument("--root", required=True, type=Path, help="the scenario root (W in narration)")
    isolation.add_argument("--persona", required=True, help="whose workspace and keys the attempt uses")
    isolation.add_argument("--attempt", required=True, choices=sorted(ATTEMPTS), help="what it tries")
    return top


def main(argv: list[str] | None = None) -> int:
    from core.scenario import STATE_FILE, Scenario, ScenarioState, scenario_definition
    from core.scenario.proofs import isolation_checks

    args = parser().parse_args(argv)
    root = args.root.expanduser().resolve()
    try:
        if not (root / STATE_FILE).is_file():
            raise NotFoundError(f"{root} holds no scenario", hint="pass the folder `cleanroom demo -w` ran in")
        name = ScenarioState.load(root / STATE_FILE).scenario
        scenario = Scenario.open(root, definition=scenario_definition(name))
        try:
            checks = isolation_checks(scenario, args.persona, [args.attempt])
        finally:
            scenario.release()
    except CleanroomError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(checks, indent=2, sort_keys=True))
    return 0 if all(check["passed"] for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
