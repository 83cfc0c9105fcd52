"""The onboarding steps: one model version from ``downloaded`` to ``verified`` (or why not).

Each step ends in the status the registry's state machine allows next (core.governance.
model_registry.TRANSITIONS), with a details record saying what was checked or why it failed:

* **downloaded**: the mounted package is readable and its digest (every file, link and special
  file; core.onboarding.package_digest) equals the ``packageHash`` the contract pins.
* **scanning** -> **vulnerable**: the allow-list scan (core.onboarding.scan, run by
  ``check_package``) refused a file; the findings are the details.
* **environmentCreated**: what the clean room can satisfy offline, checked exactly: the
  settings' python ``3.X`` is the running interpreter's; every ``name==version`` requirement is
  installed here at that version (the image is built from pinned hashes; pip keeps no wheel hash
  of an installed distribution, so the version is what can be checked in place); every
  ``privatepkgs/`` wheel is present with the hash its requirement pins (checked byte for byte by
  the scan); the image packages a wrapper may import (onnxruntime, tokenizers, numpy) import; and
  the wrapper source's digest equals the contract's ``wrapperHash``.
* **deployed**: the wrapper is loaded through the hash-checked loader (only the scanned bytes run).
* **verified** | **verifyFailed** | **toBeRetried**: the sample post data is valid under the
  wrapper's input schema, one inference and one batch of two run, and every output is valid
  under its output schema. A transient error (timeout, connection, interrupted call) is
  ``toBeRetried`` with the attempt number and backoff, and the version is downloaded again,
  up to ``max_attempts``; the last one fails as ``verifyFailed``.

Every other failure after ``scanning`` is ``verifyFailed`` with its reason: a package check
problem outside the scan (settings, requirements, wrapper class), the wrapper's digest not the
pinned one, an environment the clean room cannot provide (all from ``scanning``), a wrapper that
does not load (from ``environmentCreated``), or a failed verification (from ``deployed``). Only
a package that cannot be read, or whose bytes are not the registered ones, raises
:class:`OnboardingStuck`: nothing about this version was checked, so it stays ``created`` and the
workload exits 2 with one line saying why.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containers.onboarding.status_report import StatusReport
from core.onboarding.package import IMAGE_PACKAGES, PackageReport, check_package
from core.onboarding.package_digest import package_sha256
from core.onboarding.request_schema import RecordSchema
from core.onboarding.workload_env import (
    ONBOARD_ENV_NAMES,
    ONBOARD_MODEL_ENV,
    ONBOARD_PACKAGE_HASH_ENV,
    ONBOARD_VERSION_ENV,
    ONBOARD_WRAPPER_HASH_ENV,
)
from core.onboarding.wrapper import ModelWrapper, load_wrapper

TRANSIENT = (TimeoutError, ConnectionError, InterruptedError, BlockingIOError)
REASON_CHARS = 300


class OnboardingStuck(Exception):
    """Nothing about the version could be checked (no env, unreadable or other bytes): no status moves."""


class _Failed(Exception):
    """The version failed for good: the reason becomes the verifyFailed details."""


class _Transient(Exception):
    """Inference failed in a way a retry may cure (``TRANSIENT``): toBeRetried, then again."""


@dataclass(frozen=True)
class Target:
    """The model version the contract onboards, pinned by both hashes."""

    model: str
    version: str
    package_hash: str
    wrapper_hash: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Target:
        missing = [name for name in ONBOARD_ENV_NAMES if not env.get(name)]
        if missing:
            raise OnboardingStuck(
                f"the contract's onboarding application sets no {', '.join(missing)}; "
                "generate it with `cleanroom model onboard`"
            )
        return cls(
            env[ONBOARD_MODEL_ENV],
            env[ONBOARD_VERSION_ENV],
            env[ONBOARD_PACKAGE_HASH_ENV],
            env[ONBOARD_WRAPPER_HASH_ENV],
        )


def onboard(
    package_dir: Path,
    target: Target,
    report: StatusReport,
    *,
    max_attempts: int = 3,
    backoff_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Walk the version through its statuses; the final status reached."""
    attempt = 1
    while True:
        try:
            checked = _download_and_scan(package_dir, target, report, attempt)
            if checked is None:
                return "vulnerable"
            wrapper = _deploy(checked, target, report)
            details = _verify(wrapper, checked)
        except _Failed as failed:
            report.status("verifyFailed", {"reason": str(failed), "attempt": attempt})
            return "verifyFailed"
        except _Transient as transient:
            reason = str(transient)
            if attempt >= max_attempts:
                report.status("verifyFailed", {"reason": f"{reason} (still failing after {attempt} attempts)"})
                return "verifyFailed"
            backoff = backoff_seconds * 2 ** (attempt - 1)
            report.status("toBeRetried", {"attempt": attempt, "backoffSeconds": backoff, "reason": reason})
            sleep(backoff)
            attempt += 1
            continue
        report.status("verified", details | {"attempt": attempt})
        return "verified"


def _download_and_scan(package_dir: Path, target: Target, report: StatusReport, attempt: int) -> PackageReport | None:
    try:
        digest = package_sha256(package_dir)
    except Exception as exc:  # unreadable: not downloaded, so no status moves
        raise OnboardingStuck(f"model package '{package_dir}' cannot be read ({_reason(exc)})") from exc
    if digest != target.package_hash:
        raise OnboardingStuck(
            f"model package '{package_dir}' has digest {digest[:16]}…, not the packageHash "
            f"{target.package_hash[:16]}… the contract pins; mount the registered package"
        )
    report.status("downloaded", {"packageHash": digest, "attempt": attempt})
    report.status("scanning", {"scanner": "allow-list (core.onboarding.scan)", "attempt": attempt})
    started = time.monotonic()
    checked = check_package(package_dir)
    if checked.scan.findings:
        report.status(
            "vulnerable",
            {
                "findings": [finding.one_line() for finding in checked.scan.findings],
                "reasons": sorted({finding.reason for finding in checked.scan.findings}),
                "files": len(checked.scan.files),
            },
        )
        return None
    if checked.problems:
        raise _Failed(
            "the package fails its check outside the scan: " + "; ".join(f.one_line() for f in checked.problems)
        )
    if checked.source_sha256 != target.wrapper_hash:
        raise _Failed(
            f"the wrapper source digest {checked.source_sha256[:16]}… is not the wrapperHash "
            f"{target.wrapper_hash[:16]}… the contract pins"
        )
    report.status("environmentCreated", _environment(checked) | {"scanSeconds": round(time.monotonic() - started, 3)})
    return checked


def _environment(checked: PackageReport) -> dict[str, Any]:
    """What the clean room provides offline, checked one by one (see the module docstring)."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if str(checked.settings.get("python")) != running:
        raise _Failed(f"the package needs python {checked.settings.get('python')}, the clean room runs {running}")
    installed: dict[str, str] = {}
    wheels: list[str] = []
    for requirement in checked.requirements:
        if requirement.endswith(".whl"):
            wheels.append(requirement.removeprefix("./"))  # present and hash-pinned: check_package passed
            continue
        name, _, version = requirement.partition("==")
        name = name.split("[")[0]
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise _Failed(f"requirement {requirement} is not installed in the clean room's image") from None
        if found != version:
            raise _Failed(f"requirement {requirement} is pinned, but the clean room's image has {name} {found}")
        installed[name] = found
    image: dict[str, str] = {}
    for name in IMAGE_PACKAGES:
        if importlib.util.find_spec(name) is None:
            raise _Failed(f"the clean room's image lacks {name}, which wrappers may import")
        image[name] = importlib.metadata.version(name)
    return {
        "python": running,
        "requirements": installed,
        "privateWheels": wheels,
        "imagePackages": image,
        "wrapperHash": checked.source_sha256,
    }


def _deploy(checked: PackageReport, target: Target, report: StatusReport) -> ModelWrapper:
    try:
        wrapper = load_wrapper(checked)
    except Exception as exc:
        raise _Failed(f"the wrapper did not load ({_reason(exc)})") from exc
    report.status("deployed", {"wrapperClass": checked.wrapper_class, "wrapperHash": target.wrapper_hash})
    return wrapper


def _verify(wrapper: ModelWrapper, checked: PackageReport) -> dict[str, Any]:
    """Sample in, inference and a batch of two, outputs checked; ``_Failed`` names what broke."""
    name = checked.wrapper_class
    try:
        inputs = RecordSchema(wrapper.input_schema(), name=f"{name}.input_schema")
        outputs = RecordSchema(wrapper.output_schema(), name=f"{name}.output_schema")
    except Exception as exc:
        raise _Failed(_reason(exc)) from exc
    sample = checked.settings.get("sample_post_data")
    problem = inputs.problem(sample, "sample_post_data")
    if problem is not None or not isinstance(sample, dict):
        raise _Failed(f"{problem or 'sample_post_data is not an object'} (the wrapper's input schema)")
    started = time.monotonic()
    try:
        one = wrapper.inference(sample)
        latency_ms = (time.monotonic() - started) * 1000
        batch = wrapper.inference_batch([sample, sample])
    except TRANSIENT as exc:
        raise _Transient(_reason(exc)) from exc
    except Exception as exc:
        raise _Failed(f"inference raised {_reason(exc)}") from exc
    if not isinstance(batch, list) or len(batch) != 2:
        raise _Failed("inference_batch of 2 records did not return a list of 2 outputs")
    for where, output in (("output", one), ("batch output[0]", batch[0]), ("batch output[1]", batch[1])):
        # names only the keyword: a faulty output's keys are never quoted
        problem = outputs.problem(output, where, quote_names=False)
        if problem is not None:
            raise _Failed(f"{problem} (the wrapper's output schema)")
    return {
        "sampleValid": True,
        "outputFields": sorted(one) if isinstance(one, dict) else [],
        "latencyMs": round(latency_ms, 2),
        "batch": len(batch),
        "cpus": len(os.sched_getaffinity(0)),
    }


def _reason(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"
