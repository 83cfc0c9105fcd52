"""Command line: ``python -m containers.onboarding --package-dir /mnt/remote/package``.

The version to verify and its two hashes come from the contract's voted env
(``CLEANROOM_ONBOARD_MODEL``, ``_VERSION``, ``_PACKAGE_SHA256``, ``_WRAPPER_SHA256``), never from
an argument a hoster could change unseen. Exit codes: 0 a final status was reached (verified,
verifyFailed or vulnerable: the registry holds the verdict, with its reason); 2 nothing could be
checked (no onboarding env, an unreadable package, or other bytes than the registered ones: the
version stays created; one line says why); 1 anything else.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from containers.onboarding.status_report import StatusReport
from containers.onboarding.steps import OnboardingStuck, Target, onboard
from containers.trainer.__main__ import EXIT_BAD_INPUT, TELEMETRY_ENV


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m containers.onboarding",
        description="Verify one model version in the clean room: download, scan, environment, deploy, verify.",
        epilog="The version comes from $CLEANROOM_ONBOARD_* (set by the runtime from the contract).",
    )
    parser.add_argument("--package-dir", type=Path, required=True, help="the model package mount (read-only)")
    parser.add_argument(
        "--status-file", type=Path, default=None, help=f"model_status JSON lines (default: ${TELEMETRY_ENV} if set)"
    )
    parser.add_argument("--max-attempts", type=int, default=3, help="attempts before a transient error fails it")
    parser.add_argument("--backoff-seconds", type=float, default=1.0, help="first retry's backoff (doubles each time)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    status_file = args.status_file or (Path(os.environ[TELEMETRY_ENV]) if os.environ.get(TELEMETRY_ENV) else None)
    try:
        target = Target.from_env(os.environ)
    except OnboardingStuck as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = StatusReport(status_file, model=target.model, version=target.version)
    try:
        final = onboard(
            args.package_dir,
            target,
            report,
            max_attempts=max(1, args.max_attempts),
            backoff_seconds=max(0.0, args.backoff_seconds),
        )
    except OnboardingStuck as exc:
        last = report.statuses[-1][0] if report.statuses else "created"
        print(f"error: {target.model} {target.version} stays {last}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        report.close()
    print(f"{target.model} {target.version}: final status {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
