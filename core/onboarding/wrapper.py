"""The wrapper protocol a model package implements, and the loader for packages that passed the scan.

A package's ``src/inference.py`` is the only code of a package that runs. It is not sealed like
the weights: the contract pins it *in clear* by its hash (``PackageReport.source_sha256``), so
every member can read the exact code they vote for. The loader therefore runs only what was
scanned: it reads ``src/inference.py`` once, without following a link, checks its bytes against
the digest the scan recorded and executes those bytes, in process (the clean room's sandbox is
the isolation; a subprocess here would add none).
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.errors import AccessDeniedError, IntegrityError, InvalidInputError

if TYPE_CHECKING:
    from core.onboarding.package import PackageReport

WRAPPER_FILE = "src/inference.py"
# What a wrapper class must define; package.check_package looks for them statically (no import).
WRAPPER_METHODS = (
    "init",
    "convert_input",
    "convert_output",
    "inference",
    "inference_batch",
    "input_schema",
    "output_schema",
)


@runtime_checkable
class ModelWrapper(Protocol):
    """What the inference server calls. ``convert_input`` turns one request record (valid under
    ``input_schema``) into the model's input; ``convert_output`` turns one raw model output into a
    response record (valid under ``output_schema``). The schemas are JSON Schema documents, so the
    server can refuse a bad request before the model sees it, and a load test can build the
    largest valid payload of the task."""

    def init(self, model_dir: Path) -> None: ...

    def convert_input(self, record: Mapping[str, Any]) -> Any: ...

    def convert_output(self, raw: Any) -> dict[str, Any]: ...

    def inference(self, record: Mapping[str, Any]) -> dict[str, Any]: ...

    def inference_batch(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...

    def input_schema(self) -> dict[str, Any]: ...

    def output_schema(self) -> dict[str, Any]: ...


def load_wrapper(report: PackageReport) -> ModelWrapper:
    """Instantiate and ``init`` the wrapper of a package that passed ``check_package``."""
    root = Path(report.root)
    if not report.ok or report.wrapper_class is None:
        raise AccessDeniedError(
            f"model package '{root}' did not pass its check ({len(report.findings)} finding(s)); its code is not run",
            hint="run `cleanroom model package check` and fix each finding",
        )
    source = _read_regular(root / WRAPPER_FILE)
    digest = hashlib.sha256(source).hexdigest()
    scanned = {f.path: f.sha256 for f in report.scan.files}.get(WRAPPER_FILE)
    if digest != scanned:
        raise IntegrityError(
            f"{WRAPPER_FILE} of '{root}' changed after it was checked",
            hint="check the package again; only the checked bytes are run",
        )
    name = f"cleanroom_model_wrapper_{digest[:16]}"
    module = types.ModuleType(name)
    module.__file__ = str(root / WRAPPER_FILE)
    sys.modules[name] = module  # dataclasses and typing look the module up while it executes
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    except Exception as exc:
        del sys.modules[name]
        raise InvalidInputError(
            f"{WRAPPER_FILE} of '{root}' failed to import ({type(exc).__name__}: {exc})",
            hint="run it locally with the clean room's packages and fix the error",
        ) from exc
    wrapper = getattr(module, report.wrapper_class)()
    if not isinstance(wrapper, ModelWrapper):
        raise InvalidInputError(
            f"class {report.wrapper_class} in {WRAPPER_FILE} does not implement ModelWrapper",
            hint=f"define {', '.join(WRAPPER_METHODS)}",
        )
    wrapper.init(root / "model")
    return wrapper


def _read_regular(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise IntegrityError(f"'{path}' is not a regular file", hint="check the package again")
        return handle.read()
